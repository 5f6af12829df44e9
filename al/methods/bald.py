"""MC-dropout acquisition (Gal et al. 2017): BALD, max entropy or variation ratios.

T stochastic passes with the dropout layers on and everything else — BatchNorm in
particular — in eval mode, so scoring never moves the normalisation statistics. The dropout
is the model's (`model.dropout`), the same for every method of a comparison: a model without
any is refused before training starts, never given a layer the other methods lack.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from al.errors import ConfigError
from al.methods.entropy import entropy
from al.methods.selector import SelectionRequest, Selector
from al.models.backbone import dropout_layers


def max_entropy(mc_probs: torch.Tensor) -> torch.Tensor:
    """H[mean_t p_t] of (T, B, C) MC probabilities: the predictive entropy."""
    return entropy(mc_probs.mean(0))


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """H[mean_t p_t] − mean_t H[p_t]: mutual information between label and weights."""
    expected_entropy = torch.stack([entropy(p) for p in mc_probs]).mean(0)
    return max_entropy(mc_probs) - expected_entropy


def variation_ratios(mc_probs: torch.Tensor) -> torch.Tensor:
    """1 − (passes voting for the modal class) / T."""
    passes, _, classes = mc_probs.shape
    votes = F.one_hot(mc_probs.argmax(2), classes).sum(0)
    return 1.0 - votes.max(1).values.float() / passes


ACQUISITIONS = {"bald": bald, "max_entropy": max_entropy, "variation_ratios": variation_ratios}


class BaldSelector(Selector):
    """Scores each candidate from `passes` dropout samples with `acquisition`."""

    def __init__(self, passes: int = 20, acquisition: str = "bald") -> None:
        super().__init__()
        if acquisition not in ACQUISITIONS:
            raise ConfigError(f"acquisition={acquisition!r} is not one of {sorted(ACQUISITIONS)}")
        if passes < 2:
            raise ConfigError(f"passes={passes} must be at least 2 for MC dropout")
        self.passes = passes
        self.acquisition = ACQUISITIONS[acquisition]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Refuse a model without dropout before it trains."""
        mc_dropout_layers(pl_module)

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        layers = mc_dropout_layers(module)
        for layer in layers:
            layer.train()
        try:
            return super().select(module, request)
        finally:
            for layer in layers:
                layer.eval()

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        return self.acquisition(
            torch.stack([F.softmax(p.float(), 1) for p in self.passes_of(module, x)])
        )

    def passes_of(self, module: pl.LightningModule, x: torch.Tensor) -> list[torch.Tensor]:
        """`passes` logits of `x`. When the only dropout is the slot before the classifier,
        the deterministic features are computed once and only the head is resampled."""
        backbone = module.backbone
        if dropout_layers(module) == [backbone.dropout]:
            features, _ = backbone.embed(x)
            return [backbone.decode(features, x.shape[2:]) for _ in range(self.passes)]
        return [module(x) for _ in range(self.passes)]


def mc_dropout_layers(module: pl.LightningModule) -> list[torch.nn.Module]:
    """The dropout layers MC dropout samples, or the error naming the fix when there are none."""
    layers = dropout_layers(module)
    if not layers:
        raise ConfigError(
            "method=bald samples MC dropout, but the model has no dropout layer: set "
            "model.dropout=0.5, for every method it is compared with, so their task learners match"
        )
    return layers
