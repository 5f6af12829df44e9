"""The interface every task learner exposes to methods."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from al.errors import ConfigError


@dataclass
class BackboneOutput:
    """`logits` (B, classes) — per pixel (B, classes, H, W) for segmentation, at the input's
    size; `features` (B, d), the penultimate feature (pooled over pixels for segmentation:
    what Core-set reads); `stages` the intermediate outputs (B, C_i, …) a loss-prediction
    module reads; `pixel_features` (B, d, h, w), the classifier's per-pixel input at the
    network's output stride (segmentation only: ISDA's features)."""

    logits: torch.Tensor
    features: torch.Tensor
    stages: list[torch.Tensor]
    pixel_features: torch.Tensor | None = None


class Backbone(nn.Module):
    """A feature extractor `embed`, a `dropout` slot and one linear `classifier`; `decode`
    maps embedded features to logits through both. `stage_channels[i]` is the channel count
    of `stages[i]`; `tasks` the tasks whose targets its logits fit.

    `dropout` (`model.dropout`): the rate of a Dropout before the classifier, the same for
    every method of a comparison; 0 leaves the slot an identity (no dropout layer at all).
    """

    classifier: nn.Linear
    stage_channels: list[int]
    tasks: tuple[str, ...] = ("classification",)

    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.dropout: nn.Module = dropout_slot(dropout)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return the penultimate features and the intermediate stage outputs."""
        raise NotImplementedError

    def decode(self, features: torch.Tensor, size: torch.Size) -> torch.Tensor:
        """Logits of embedded `features` (through the dropout slot) for inputs of spatial
        `size`; a classifier ignores the size."""
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        features, stages = self.embed(x)
        return BackboneOutput(self.decode(features, x.shape[2:]), features, stages)


class SegmentationBackbone(Backbone):
    """A per-pixel classifier: `embed` returns the per-pixel features (B, d, h, w) at the
    network's output stride and the stage outputs; `classifier` (d → classes) acts on every
    pixel (a 1×1 convolution, kept as a Linear so its weight is (classes, d) as for every
    other backbone), after the `dropout` slot; its logits are upsampled bilinearly to the
    input's size (DRNSeg's ×8 upsampling, fyu/drn `segment.py`). `features` are the per-pixel
    features averaged over pixels."""

    tasks = ("segmentation",)

    def decode(self, features: torch.Tensor, size: torch.Size) -> torch.Tensor:
        coarse = self.classifier(self.dropout(features).movedim(1, -1)).movedim(-1, 1)
        return F.interpolate(coarse, size=tuple(size), mode="bilinear", align_corners=False)

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        pixel_features, stages = self.embed(x)
        logits = self.decode(pixel_features, x.shape[2:])
        return BackboneOutput(logits, pixel_features.mean(dim=(2, 3)), stages, pixel_features)


def through_stages(blocks: nn.ModuleList, x: torch.Tensor) -> tuple[torch.Tensor, list]:
    """`x` through `blocks` in turn: the last output and every block's output (the stages)."""
    stages = []
    for block in blocks:
        x = block(x)
        stages.append(x)
    return x, stages


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


def load_backbone_weights(backbone: Backbone, weights: dict[str, torch.Tensor]) -> Backbone:
    """`weights` (everything but the classifier) into `backbone`; any other mismatch is a bug."""
    missing, unexpected = backbone.load_state_dict(weights, strict=False)
    if unexpected or any(not name.startswith("classifier.") for name in missing):
        raise RuntimeError(f"pretrained weights do not fit: missing {missing}, extra {unexpected}")
    return backbone
