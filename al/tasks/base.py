"""What a task decides for the loop, the task modules and the selectors: the loss, the test
metrics and their record keys, the curve a run plots, how labels are counted and how per-element
acquisition scores reduce to one score per sample. What single methods need beyond this core
lives in `al.tasks.extensions`.

The loop, pool, store, resume, sinks and launchers never branch on the task: they call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection

from al.errors import ConfigError


class Task:
    """The contract every task implements. `name` is what methods and backbones list in
    their `tasks`; `primary_metric` the record key curves, tables and comparisons use."""

    name: str
    primary_metric: str
    primary_label: str
    one_label_per_sample: bool

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The training objective of one batch (a scalar)."""
        raise NotImplementedError

    def sample_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """One loss per sample (B,): what a loss prediction module learns to rank."""
        raise NotImplementedError

    def test_metrics(self, num_classes: int) -> MetricCollection:
        """The test metrics, named as their record keys after `test/`."""
        raise NotImplementedError

    def train_metric(self, num_classes: int) -> Metric:
        """The metric logged as `val/acc` (what `eval_model=best_val` keeps); `train/acc` is
        the same value from `prediction_hits`."""
        raise NotImplementedError

    def prediction_hits(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(correct, counted) predictions of one batch as a 2-vector on its device: what the
        epoch's `train/acc` divides (the same value as `train_metric`, a few kernels)."""
        raise NotImplementedError

    def table_columns(self) -> list[tuple[str, str]]:
        """(record key, header) of the metrics the printed table shows, in percent."""
        raise NotImplementedError

    def class_counts(self, targets: Any, indices: Sequence[int], num_classes: int) -> list[int]:
        """How many labels of each class the samples `indices` of `targets` (the pool's
        labels) hold."""
        raise NotImplementedError

    def pick_labels(self, targets: Any, indices: Sequence[int]) -> list:
        """What the picks `indices` revealed, one entry per pick, for `picks/`."""
        raise NotImplementedError

    def stratify_labels(self, targets: Any) -> Any:
        """What a stratified split of the pool stratifies on, or None (a random split)."""
        raise NotImplementedError

    def reduce_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """One acquisition score per sample (B,) from per-element scores (B, …)."""
        raise NotImplementedError


def supported_tasks(cls: type) -> tuple[str, ...]:
    """The tasks a method's module or selector class declares (`tasks`; classification when
    it declares none)."""
    return tuple(getattr(cls, "tasks", ("classification",)))


def check_supported(task: Task, part: str, cls: type, fix: str) -> None:
    """Refuse a module, selector or backbone class that does not support `task`."""
    tasks = supported_tasks(cls)
    if task.name not in tasks:
        raise ConfigError(
            f"{part} {cls.__name__} supports {', '.join(tasks)}, not the dataset's task "
            f"{task.name}: {fix}"
        )
