"""Classification: one class label per sample, cross-entropy, accuracy."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from al.models.backbone import BackboneOutput
from al.models.isda import augmented_logits
from al.tasks.base import Task
from al.tasks.extensions import IsdaTerms, LogScoreReduction, SampleLabels


class Classification(Task, SampleLabels, IsdaTerms, LogScoreReduction):
    """Records `test/acc` (micro), `test/balanced_acc` (macro: the mean per-class recall) and
    `test/loss`; per-sample scores are already one per sample."""

    name = "classification"
    primary_metric = "test/acc"
    primary_label = "test accuracy (%)"
    one_label_per_sample = True

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets)

    def sample_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, targets, reduction="none")

    def test_metrics(self, num_classes: int) -> MetricCollection:
        return MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "balanced_acc": MulticlassAccuracy(num_classes, average="macro"),
            }
        )

    def train_metric(self, num_classes: int) -> Metric:
        """Accuracy, without torchmetrics' per-update input checks (the loss already read
        these targets)."""
        return MulticlassAccuracy(num_classes, average="micro", validate_args=False)

    def prediction_hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        correct = (logits.argmax(1) == targets).sum()
        return torch.stack([correct, torch.full_like(correct, len(targets))])

    def table_columns(self) -> list[tuple[str, str]]:
        return [("test/acc", "test acc"), ("test/balanced_acc", "balanced acc")]

    def class_counts(self, targets: np.ndarray, indices, num_classes: int) -> list[int]:
        labels = np.asarray(targets[indices], dtype=np.int64)
        return np.bincount(labels, minlength=num_classes).tolist()

    def pick_labels(self, targets: np.ndarray, indices) -> list[int]:
        return np.asarray(targets[indices], dtype=np.int64).tolist()

    def sample_labels(self, targets: np.ndarray, indices, num_classes: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(targets[indices], dtype=np.int64))

    def sample_label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    def stratify_labels(self, targets: np.ndarray) -> np.ndarray:
        return targets

    def feature_pairs(
        self, out: BackboneOutput, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return out.features, targets

    def augmented_logits(
        self, logits: torch.Tensor, quadratic: torch.Tensor, targets: torch.Tensor, strength: float
    ) -> torch.Tensor:
        return augmented_logits(logits, quadratic, targets, strength)

    def reduce_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores

    def reduce_log_scores(self, log_scores: torch.Tensor) -> torch.Tensor:
        return log_scores
