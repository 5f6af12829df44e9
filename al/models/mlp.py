"""Multi-layer perceptron for vector inputs (TA-VAAL's toy task learner is a 3-layer MLP)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from al.errors import ConfigError
from al.models.backbone import Backbone


class MLP(Backbone):
    """Flatten → (Linear → ReLU) per hidden width → [Dropout] → Linear(classes); no dropout
    layer of its own, only the slot (`dropout` > 0)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__(dropout)
        if not hidden:
            raise ConfigError("MLP needs at least one hidden layer: set model.hidden=[64]")
        widths = [math.prod(input_shape), *hidden]
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(w_in, w_out), nn.ReLU())
            for w_in, w_out in itertools.pairwise(widths)
        )
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.stage_channels = list(hidden)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = x.flatten(1)
        stages = []
        for layer in self.layers:
            h = layer(h)
            stages.append(h)
        return h, stages
