"""Least-confidence sampling: label the candidates whose top class is least probable."""

from __future__ import annotations

import torch

from al.errors import ConfigError
from al.methods.selector import ProbabilitySelector


def least_confidence(probs: torch.Tensor) -> torch.Tensor:
    """1 − max_c p_c of each row."""
    return 1.0 - probs.max(dim=1).values


class LeastConfidenceSelector(ProbabilitySelector):
    def score_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        return least_confidence(probs)


MAXP_DIRECTIONS = ("highest", "lowest")


class MaxProbabilitySelector(ProbabilitySelector):
    """DAST-AL's Maxp ablation (Table 1): candidates ranked by their max probability, the
    `highest` first (the most confident) or the `lowest` first (= least confidence). The text
    ("select the unlabeled samples by its max prediction probability") leaves the end open."""

    def __init__(self, direction: str = "highest") -> None:
        super().__init__()
        if direction not in MAXP_DIRECTIONS:
            raise ConfigError(
                f"method.selector.direction={direction!r} is not one of "
                f"{', '.join(MAXP_DIRECTIONS)}"
            )
        self.direction = direction

    def score_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        top = probs.max(dim=1).values
        return top if self.direction == "highest" else 1.0 - top
