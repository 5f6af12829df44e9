"""The interface every task learner exposes to methods."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BackboneOutput:
    """`logits` (B, classes); `features` (B, d), the input of the final linear layer;
    `stages` the intermediate outputs a loss-prediction module reads."""

    logits: torch.Tensor
    features: torch.Tensor
    stages: list[torch.Tensor]


class Backbone(nn.Module):
    """A feature extractor `embed` followed by one linear `classifier`."""

    classifier: nn.Linear

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the penultimate features and the intermediate stage outputs."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        features, stages = self.embed(x)
        return BackboneOutput(self.classifier(features), features, stages)
