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
    """A feature extractor `embed`, a `dropout` slot and one linear `classifier`.
    `stage_channels[i]` is the channel count of `stages[i]`.

    `dropout` (`model.dropout`): the rate of a Dropout before the classifier, the same for
    every method of a comparison; 0 leaves the slot an identity (no dropout layer at all).
    """

    classifier: nn.Linear
    stage_channels: list[int]

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout: nn.Module = dropout_slot(dropout)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the penultimate features and the intermediate stage outputs."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        features, stages = self.embed(x)
        return BackboneOutput(self.classifier(self.dropout(features)), features, stages)


def dropout_slot(rate: float) -> nn.Module:
    """Dropout(rate) for 0 < rate < 1, an identity for 0; any other value is refused."""
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate < 1:
        raise ConfigError(
            f"model.dropout={rate!r} must be a rate in [0, 1): e.g. model.dropout=0.5, "
            "or model.dropout=0 for none"
        )
    return nn.Dropout(rate) if rate > 0 else nn.Identity()


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
