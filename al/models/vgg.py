"""VGG-16 with batch norm (DAST-AL's second backbone), global-average-pooled to 512-d."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import vgg16_bn

from al.models.backbone import Backbone, image_shape


class VGG16(Backbone):
    """torchvision's VGG-16-BN convolutions in five blocks (stages = each block's output),
    then global average pooling and one linear classifier (the CIFAR variant: no 4096-d layers).

    Images smaller than 32 px keep only the max-pools their size allows (3 for 8×8 digits).
    torchvision's two Dropout(0.5) sit in the 4096-d classifier layers this variant drops, so
    no dropout layer is left; `dropout` > 0 puts one before the linear classifier.
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, dropout: float = 0.0) -> None:
        super().__init__(dropout)
        channels, height, width = image_shape(input_shape, "vgg16")
        features = vgg16_bn(weights=None).features
        if channels != 3:
            features[0] = nn.Conv2d(channels, 64, kernel_size=3, padding=1)
        block_ends = [i + 1 for i, layer in enumerate(features) if isinstance(layer, nn.MaxPool2d)]
        for end in block_ends[int(math.log2(min(height, width))) :]:
            features[end - 1] = nn.Identity()
        starts = [0, *block_ends[:-1]]
        self.blocks = nn.ModuleList(
            features[start:end] for start, end in zip(starts, block_ends, strict=True)
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(512, num_classes)
        self.stage_channels = [64, 128, 256, 512, 512]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for block in self.blocks:
            x = block(x)
            stages.append(x)
        return self.pool(x).flatten(1), stages
