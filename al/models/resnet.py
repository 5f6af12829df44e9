"""ResNet-18 with the CIFAR stem (3×3 conv, stride 1, no max-pool) or the ImageNet stem."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models import resnet18

from al.errors import ConfigError
from al.models.backbone import Backbone, image_shape

STEMS = ("auto", "cifar", "imagenet")


class ResNet18(Backbone):
    """torchvision's ResNet-18 layers; stages = the outputs of layer1…layer4 (64…512 channels).

    `stem="auto"` picks the CIFAR stem for images of at most 64 px, else ImageNet's. ResNet-18
    has no dropout layer of its own; `dropout` > 0 puts one before `fc`.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        stem: str = "auto",
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dropout)
        channels, height, width = image_shape(input_shape, "resnet18")
        if stem not in STEMS:
            raise ConfigError(f"model.stem={stem!r} is not one of {STEMS}")
        if stem == "auto":
            stem = "cifar" if max(height, width) <= 64 else "imagenet"
        net = resnet18(weights=None, num_classes=num_classes)
        if stem == "cifar":
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        # the same initialisation torchvision gives every other convolution
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = net.fc
        self.stage_channels = [64, 128, 256, 512]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        stages = []
        for layer in self.layers:
            x = layer(x)
            stages.append(x)
        return self.pool(x).flatten(1), stages
