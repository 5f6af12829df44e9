"""What single methods need of a task beyond its core contract (`al.tasks.base.Task`). A task
offers an extension by deriving from it; the method that needs one asks at start-up
(`require`) and refuses a task without it in one line, so a new task implements only the core
and the extensions of the methods it should run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from al.errors import ConfigError
from al.models.backbone import BackboneOutput


class SampleLabels:
    """Sample-level labels of labeled samples, for selectors that learn from them (SRAAL's
    classifier head, the M2 latent selectors' anchors)."""

    def sample_labels(self, targets: Any, indices: Sequence[int], num_classes: int) -> torch.Tensor:
        """A class each (B,), or the classes each sample holds (B, classes) multi-hot."""
        raise NotImplementedError

    def sample_label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The loss of a sample-level classifier's `logits` (B, classes) on `sample_labels`."""
        raise NotImplementedError


class IsdaTerms:
    """ISDA's training terms (DAST-AL's task learner, `isda.enabled=true`)."""

    def feature_pairs(
        self, out: BackboneOutput, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(features (N, d), labels (N,)) of one batch for ISDA's class covariance."""
        raise NotImplementedError

    def augmented_logits(
        self, logits: torch.Tensor, quadratic: torch.Tensor, targets: torch.Tensor, strength: float
    ) -> torch.Tensor:
        """ISDA's surrogate logits (Wang et al. 2019, Eq. 11 of the TPAMI version):
        z̃_j = z_j + (λ/2)·(w_j − w_y)ᵀ Σ_y (w_j − w_y), with y each element's label."""
        raise NotImplementedError


class LogScoreReduction:
    """Per-element scores reduced in log space (EPMCM's log Ē)."""

    def reduce_log_scores(self, log_scores: torch.Tensor) -> torch.Tensor:
        """The log of `reduce_scores` of exp(`log_scores`), computed in log space."""
        raise NotImplementedError


def require(task: object, extension: type, needed_by: str) -> None:
    """Refuse `task` unless it offers `extension`, naming who needs it."""
    if not isinstance(task, extension):
        raise ConfigError(
            f"{needed_by} needs the task's {extension.__name__}, which the dataset's task "
            f"{type(task).__name__} does not offer: choose a dataset of a task that does "
            "(docs/tasks.md), or another method"
        )
