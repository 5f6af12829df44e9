"""Semantic segmentation: a class label per pixel (`ignore_index` for unlabeled pixels),
per-pixel cross-entropy, mIoU and pixel accuracy; per-pixel acquisition scores reduce to
their mean over the image's pixels."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from al.data.segmentation import MaskTargets
from al.models.backbone import BackboneOutput
from al.tasks.base import Task
from al.tasks.extensions import IsdaTerms, LogScoreReduction, SampleLabels


class Segmentation(Task, SampleLabels, IsdaTerms, LogScoreReduction):
    """Records `test/miou` (torchmetrics' Jaccard index over the classes, macro: classes
    absent from both prediction and labels are left out, as Cityscapes' evaluation does),
    `test/pixel_acc` and `test/loss`, all over the pixels not labeled `ignore_index`.

    A pixel's label is hidden from selectors like an image's, so an acquisition score is the
    mean over all of the image's pixels (`reduce_scores`)."""

    name = "segmentation"
    primary_metric = "test/miou"
    primary_label = "test mIoU (%)"
    one_label_per_sample = False

    def __init__(self, ignore_index: int = 255) -> None:
        self.ignore_index = ignore_index

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the batch's labeled pixels (0 when it has none)."""
        per_pixel = self.pixel_losses(logits, targets)
        valid = (targets != self.ignore_index).sum()
        return per_pixel.sum() / valid.clamp(min=1)

    def sample_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Each image's mean cross-entropy over its labeled pixels."""
        per_pixel = self.pixel_losses(logits, targets).flatten(1)
        valid = (targets != self.ignore_index).flatten(1).sum(1)
        return per_pixel.sum(1) / valid.clamp(min=1)

    def pixel_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(
            logits.float(), targets, ignore_index=self.ignore_index, reduction="none"
        )

    def test_metrics(self, num_classes: int) -> MetricCollection:
        return MetricCollection(
            {
                "miou": MulticlassJaccardIndex(
                    num_classes, average="macro", ignore_index=self.ignore_index
                ),
                "pixel_acc": MulticlassAccuracy(
                    num_classes, average="micro", ignore_index=self.ignore_index
                ),
            }
        )

    def train_metric(self, num_classes: int) -> Metric:
        """Pixel accuracy, without torchmetrics' per-update input checks."""
        return MulticlassAccuracy(
            num_classes, average="micro", ignore_index=self.ignore_index, validate_args=False
        )

    def prediction_hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Correct and counted pixels, over those not labeled `ignore_index`."""
        valid = targets != self.ignore_index
        correct = ((logits.argmax(1) == targets) & valid).sum()
        return torch.stack([correct, valid.sum()])

    def table_columns(self) -> list[tuple[str, str]]:
        return [("test/miou", "test mIoU"), ("test/pixel_acc", "pixel acc")]

    def class_counts(self, targets: MaskTargets, indices, num_classes: int) -> list[int]:
        """Labeled pixels per class of the masks at `indices`."""
        return targets.pixel_counts(indices, num_classes).tolist()

    def pick_labels(self, targets: MaskTargets, indices) -> list[str]:
        """The classes each picked mask holds, space-separated (e.g. `0 2 3`)."""
        counts = [targets.pixel_counts([index], 256) for index in indices]
        return [" ".join(map(str, np.flatnonzero(c))) for c in counts]

    def sample_labels(self, targets: MaskTargets, indices, num_classes: int) -> torch.Tensor:
        """Which classes each mask holds, (B, classes) multi-hot."""
        present = [targets.pixel_counts([index], num_classes) > 0 for index in indices]
        return torch.from_numpy(np.stack(present)).float()

    def sample_label_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Binary cross-entropy per class: a multi-label image classifier."""
        return F.binary_cross_entropy_with_logits(logits, labels)

    def stratify_labels(self, targets: MaskTargets) -> None:
        return None

    def feature_pairs(
        self, out: BackboneOutput, targets: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every labeled pixel of the per-pixel features (at the output stride), with the
        label of the nearest pixel of the full-size mask (ISDA's segmentation code)."""
        features = out.pixel_features
        labels = F.interpolate(targets[:, None].float(), size=features.shape[2:], mode="nearest")
        labels = labels[:, 0].long().flatten()
        flat = features.movedim(1, -1).reshape(-1, features.shape[1])
        valid = labels != self.ignore_index
        return flat[valid], labels[valid]

    def augmented_logits(
        self, logits: torch.Tensor, quadratic: torch.Tensor, targets: torch.Tensor, strength: float
    ) -> torch.Tensor:
        """Per pixel, with y the pixel's label (ignored pixels get any class's term: their
        loss is not counted)."""
        labels = targets.masked_fill(targets == self.ignore_index, 0)
        return logits + 0.5 * strength * quadratic[labels].movedim(-1, 1)

    def reduce_scores(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.reshape(len(scores), -1).mean(1)

    def reduce_log_scores(self, log_scores: torch.Tensor) -> torch.Tensor:
        flat = log_scores.reshape(len(log_scores), -1)
        return torch.logsumexp(flat, dim=1) - math.log(flat.shape[1])
