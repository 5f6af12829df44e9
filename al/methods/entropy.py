"""Entropy sampling: label the candidates whose predictive distribution is most uncertain."""

from __future__ import annotations

import torch

from al.methods.selector import ProbabilitySelector


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Shannon entropy −Σ_c p_c log p_c of each row (nats; 0·log 0 = 0)."""
    return -torch.special.xlogy(probs, probs).sum(dim=1)


class EntropySelector(ProbabilitySelector):
    def score_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        return entropy(probs)
