"""Least-confidence sampling: label the candidates whose top class is least probable."""

from __future__ import annotations

import torch

from al.methods.selector import ProbabilitySelector


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 − max_c p_c of each row."""
    return 1.0 - probs.max(dim=1).values


class LeastConfidenceSelector(ProbabilitySelector):
    def score_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        return least_confidence(probs)
