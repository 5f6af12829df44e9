"""Evaluate and select with the epoch that did best on validation (VAAL's protocol)."""

from __future__ import annotations

import copy
import logging

import pytorch_lightning as pl

log = logging.getLogger(__name__)


class BestValidationWeights(pl.Callback):
    """Keeps a copy of the weights of the epoch with the highest `val/acc` and restores them
    in `on_train_end`, before any selector that follows it in the callback list fires."""

    def __init__(self) -> None:
        self.best_accuracy = float("-inf")
        self.best_epoch = -1
        self.best_state: dict | None = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        accuracy = float(trainer.callback_metrics["val/acc"])
        if accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, trainer.current_epoch
            self.best_state = copy.deepcopy(pl_module.state_dict())

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.best_state is None:
            return
        pl_module.load_state_dict(self.best_state)
        log.info("Using epoch %d (val/acc %.4f)", self.best_epoch, self.best_accuracy)
