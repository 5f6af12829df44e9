"""MC-dropout passes (Gal et al. 2017): T stochastic passes of a module's logits, the
deterministic trunk computed once per batch when only the head is stochastic.

While MC dropout samples, the module is in eval mode but for its dropout layers of positive
rate (train mode under `bald`, fixed masks under `batchbald`): they are its only stochastic
layers, since stochastic depth, DropBlock and functional dropout follow `training` and are
off. When the only one is the backbone's `dropout` slot, which follows the penultimate
feature, and the module's logits are its backbone's (`embed`, then `decode`), every pass has
the same features: `embed` runs once per batch and `decode` (the slot, the classifier and a
segmentation head's upsampling) T times. The slot then sees the same features, in the same
order, as in T full passes, so it draws the same masks from the same generator (the device's
default one, seeded per batch, under `bald`; the seed's under `batchbald`) and the passes are
equal. Any other model takes T full passes, said once in the log. Memory: a batch's features
and one pass's logits at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytorch_lightning as pl
import torch
from torch import nn

from al.errors import ConfigError
from al.methods.module import TaskModule
from al.models.backbone import Backbone, SegmentationBackbone, dropout_layers

log = logging.getLogger(__name__)

# A backbone's forward that is `decode(embed(x))`: the split the cached passes take.
EMBED_THEN_DECODE = (Backbone.forward, SegmentationBackbone.forward)


def stochastic(layer: nn.Module) -> bool:
    """A dropout layer of positive rate (a rate of 0 is an identity that draws nothing)."""
    return isinstance(layer, nn.modules.dropout._DropoutNd) and layer.p > 0


def mc_dropout_layers(module: nn.Module) -> list[nn.Module]:
    """The dropout layers MC dropout samples, or the error naming the fix when there are none."""
    layers = [layer for layer in dropout_layers(module) if stochastic(layer)]
    if not layers:
        raise ConfigError(
            "MC dropout needs a dropout layer, and the model has none: set model.dropout=0.5, "
            "for every method it is compared with, so their task learners match"
        )
    return layers


def full_pass_reason(module: pl.LightningModule) -> str | None:
    """Why every MC pass of `module` must run the whole network, or None when only the
    backbone's dropout slot, after the penultimate feature, is stochastic."""
    backbone = getattr(module, "backbone", None)
    if not isinstance(backbone, Backbone) or type(module).forward is not TaskModule.forward:
        return f"the logits of {type(module).__name__} are not its backbone's"
    if type(backbone).forward not in EMBED_THEN_DECODE:
        return f"{type(backbone).__name__}.forward is not embed, then decode"
    others = [
        name
        for name, layer in module.named_modules()
        if stochastic(layer) and layer is not backbone.dropout
    ]
    if others:
        return f"dropout besides the slot before the classifier: {', '.join(others)}"
    return None


class McPasses:
    """`passes` MC-dropout logits of a batch, one pass at a time: only the head resampled when
    `full_pass_reason` finds nothing and `cache_features` is on, else full passes (said once)."""

    def __init__(self, passes: int, cache_features: bool = True) -> None:
        self.passes = passes
        self.cache_features = cache_features
        self.said_full_passes = False

    def logits(self, module: pl.LightningModule, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """The logits of `x`, pass after pass, with the module's dropout layers as they are set
        (in train mode, or fixed masks)."""
        reason = full_pass_reason(module) if self.cache_features else "cache_features=false"
        if reason is None:
            backbone = module.backbone
            features, _ = backbone.embed(x)
            return (backbone.decode(features, x.shape[2:]) for _ in range(self.passes))
        if not self.said_full_passes:
            log.info("MC dropout: %d full forward passes per batch (%s)", self.passes, reason)
            self.said_full_passes = True
        return (module(x) for _ in range(self.passes))
