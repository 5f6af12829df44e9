"""A linear probe: the classifier alone, on features computed elsewhere (embedding mode)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from al.models.backbone import Backbone
from al.options import PositiveInt


class LinearProbe(Backbone):
    """Flatten → [Dropout] → Linear(classes): the features it is given are its penultimate
    features (what Core-set and BADGE read) and its one stage output."""

    def __init__(
        self, input_shape: Sequence[int], num_classes: PositiveInt, dropout: float = 0.0
    ) -> None:
        super().__init__(dropout)
        width = math.prod(input_shape)
        self.classifier = nn.Linear(width, num_classes)
        self.stage_channels = [width]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = x.flatten(1)
        return features, [features]
