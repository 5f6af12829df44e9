"""A rich progress display: one bar for the stages, one for the epochs of the current stage."""

from __future__ import annotations

import pytorch_lightning as pl
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from al.runtime.distributed import is_global_zero


def stage_progress() -> Progress:
    """The display of one experiment; hidden on DDP ranks other than global rank 0."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not is_global_zero(),
    )


class EpochProgressCallback(pl.Callback):
    """Advances a progress task once per training epoch and shows the training loss."""

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress = progress
        self.description = description
        self.task = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.task = self.progress.add_task(self.description, total=trainer.max_epochs, status="")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("train/loss")
        status = "" if loss is None else f"loss {float(loss):.3f}"
        self.progress.update(self.task, advance=1, status=status)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.progress.update(self.task, status="selecting…")

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None
