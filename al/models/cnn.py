"""A small convolutional network for small images (digits, MNIST-sized inputs)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from al.models.backbone import Backbone, image_shape, through_stages


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.MaxPool2d(2),
    )


class SmallCNN(Backbone):
    """(Conv3×3 → BN → ReLU → MaxPool) per width, pool to 2×2, Linear → ReLU → [Dropout] →
    Linear; no dropout layer of its own, only the slot (`dropout` > 0)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (32, 64),
        hidden: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dropout)
        widths = [image_shape(input_shape, "cnn")[0], *channels]
        self.blocks = nn.ModuleList(
            conv_block(c_in, c_out) for c_in, c_out in itertools.pairwise(widths)
        )
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * 4, hidden), nn.ReLU())
        self.classifier = nn.Linear(hidden, num_classes)
        self.stage_channels = list(channels)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x, stages = through_stages(self.blocks, x)
        return self.head(self.pool(x)), stages
