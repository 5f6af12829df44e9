"""Margin sampling: label the candidates whose two most probable classes are closest."""

from __future__ import annotations

import torch

from al.methods.selector import ProbabilitySelector


def margin(probs: torch.Tensor) -> torch.Tensor:
    """−(p_(1) − p_(2)), the negated gap between the two largest probabilities of each row."""
    top_two = probs.topk(2, dim=1).values
    return top_two[:, 1] - top_two[:, 0]


class MarginSelector(ProbabilitySelector):
    def score_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        return margin(probs)
