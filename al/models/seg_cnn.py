"""A small dilated fully-convolutional network for small images (shapes_seg): the DRN idea
(stride, then dilation instead of more downsampling) at a size that trains in seconds on a CPU."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from al.models.backbone import SegmentationBackbone, image_shape, through_stages


def dilated_block(c_in: int, c_out: int, stride: int, dilation: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class SmallSegNet(SegmentationBackbone):
    """Conv3×3 blocks of `channels` widths: the first at stride 1, the second at stride 2
    (output stride 2), the rest dilated 2, 4, 8, …; stages = every block's output; a per-pixel
    linear classifier after the `dropout` slot, upsampled bilinearly to the input's size."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 32, 64, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dropout)
        widths = [image_shape(input_shape, "seg_cnn")[0], *channels]
        blocks = []
        for i, (c_in, c_out) in enumerate(itertools.pairwise(widths)):
            stride, dilation = (1, 1) if i == 0 else (2, 1) if i == 1 else (1, 2 ** (i - 1))
            blocks.append(dilated_block(c_in, c_out, stride, dilation))
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.stage_channels = list(channels)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return through_stages(self.blocks, x)
