"""MC-dropout acquisition (Gal et al. 2017): BALD, max entropy or variation ratios.

T stochastic passes with the dropout layers on and everything else — BatchNorm in
particular — in eval mode, so scoring never moves the normalisation statistics. The dropout
is the model's (`model.dropout`), the same for every method of a comparison: a model without
any is refused before training starts, never given a layer the other methods lack. When the
only dropout is the slot before the classifier, the features are computed once per batch and
only the head is resampled (al.methods.mc_dropout), with the same masks as full passes.
Each batch's masks come from the default generators seeded by (the stage's selection seed, the
batch's first global index), so a batch scores the same wherever it is computed: on one
process, or on its rank's shard under DDP (al.methods.shards).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from al.errors import ConfigError
from al.methods.entropy import entropy
from al.methods.mc_dropout import McPasses, mc_dropout_layers
from al.methods.selector import SelectionRequest, Selector
from al.options import PositiveInt


@dataclass
class McMoments:
    """What the three acquisitions need of T passes' probabilities, accumulated pass by
    pass (memory of one pass, not T): mean_t p_t, mean_t H[p_t] and the votes for each class."""

    mean_probs: torch.Tensor
    mean_entropy: torch.Tensor
    votes: torch.Tensor
    passes: int


def mc_moments(prob_passes: Iterable[torch.Tensor]) -> McMoments:
    """The moments of probabilities (B, C, …) given one pass at a time."""
    total = total_entropy = votes = None
    passes = 0
    for probs in prob_passes:
        vote = F.one_hot(probs.argmax(1), probs.shape[1]).movedim(-1, 1)
        if total is None:
            total, total_entropy, votes = probs.clone(), entropy(probs), vote
        else:
            total += probs
            total_entropy += entropy(probs)
            votes += vote
        passes += 1
    return McMoments(total / passes, total_entropy / passes, votes, passes)


def max_entropy_of(moments: McMoments) -> torch.Tensor:
    """H[mean_t p_t]: the predictive entropy."""
    return entropy(moments.mean_probs)


def bald_of(moments: McMoments) -> torch.Tensor:
    """H[mean_t p_t] − mean_t H[p_t]: mutual information between label and weights."""
    return entropy(moments.mean_probs) - moments.mean_entropy


def variation_ratios_of(moments: McMoments) -> torch.Tensor:
    """1 − (passes voting for the modal class) / T."""
    return 1.0 - moments.votes.max(1).values.float() / moments.passes


def max_entropy(mc_probs: torch.Tensor) -> torch.Tensor:
    """max_entropy_of (T, B, C, …) MC probabilities."""
    return max_entropy_of(mc_moments(mc_probs))


def bald(mc_probs: torch.Tensor) -> torch.Tensor:
    """bald_of (T, B, C, …) MC probabilities."""
    return bald_of(mc_moments(mc_probs))


def variation_ratios(mc_probs: torch.Tensor) -> torch.Tensor:
    """variation_ratios_of (T, B, C, …) MC probabilities."""
    return variation_ratios_of(mc_moments(mc_probs))


ACQUISITIONS = {
    "bald": bald_of,
    "max_entropy": max_entropy_of,
    "variation_ratios": variation_ratios_of,
}


class BaldSelector(Selector):
    """Scores each candidate from `passes` dropout samples with `acquisition`;
    `cache_features`: the trunk once per batch where only the head is stochastic (false:
    always full passes, for a model whose randomness no dropout layer shows)."""

    tasks = ("classification", "segmentation")
    stochastic_scores = True

    def __init__(
        self, passes: PositiveInt = 20, acquisition: str = "bald", cache_features: bool = True
    ) -> None:
        super().__init__()
        if acquisition not in ACQUISITIONS:
            raise ConfigError(f"acquisition={acquisition!r} is not one of {sorted(ACQUISITIONS)}")
        if passes < 2:
            raise ConfigError(f"passes={passes} must be at least 2 for MC dropout")
        self.passes = passes
        self.acquisition = ACQUISITIONS[acquisition]
        self.mc_passes = McPasses(passes, cache_features)

    def check_module(self, module: pl.LightningModule) -> None:
        """Refuse a model without dropout."""
        mc_dropout_layers(module)

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
        probs = (F.softmax(logits.float(), 1) for logits in self.passes_of(module, x))
        return self.acquisition(mc_moments(probs))

    def passes_of(self, module: pl.LightningModule, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """`passes` logits of `x`, one at a time; only the head is resampled when the slot
        before the classifier is the only dropout (`McPasses`)."""
        return self.mc_passes.logits(module, x)
