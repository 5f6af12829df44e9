"""The interface every task learner exposes to methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from al.errors import ConfigError


@dataclass
class BackboneOutput:
    """`logits` (B, classes); `features` (B, d), the penultimate feature; `stages` the
    intermediate outputs (B, C_i, …) a loss-prediction module reads."""

    logits: torch.Tensor
    features: torch.Tensor
    stages: list[torch.Tensor]


class Backbone(nn.Module):
    """A feature extractor `embed`, a `dropout` slot (identity unless a method sets one)
    and one linear `classifier`. `stage_channels[i]` is the channel count of `stages[i]`."""

    classifier: nn.Linear
    stage_channels: list[int]

    def __init__(self) -> None:
        super().__init__()
        self.dropout: nn.Module = nn.Identity()

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the penultimate features and the intermediate stage outputs."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        features, stages = self.embed(x)
        return BackboneOutput(self.classifier(self.dropout(features)), features, stages)


def dropout_layers(module: nn.Module) -> list[nn.Module]:
    """Every dropout layer inside `module`."""
    return [m for m in module.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]


def image_shape(input_shape: Sequence[int], model: str) -> tuple[int, int, int]:
    """(channels, height, width) of an image dataset, or the error for vector data."""
    if len(input_shape) != 3:
        raise ConfigError(
            f"model={model} needs image input (channels, height, width), got input_shape="
            f"{list(input_shape)}; use model=mlp for vector data"
        )
    channels, height, width = input_shape
    return channels, height, width
