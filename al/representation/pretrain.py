"""`representation=NAME`: pretrain the run's backbone on the whole pool with a self-supervised
objective, once per (dataset, model, representation, seed), cached under `paths.cache`, and
resumable from its last finished epoch."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import SingleDeviceStrategy
from torch.utils.data import DataLoader, Sampler

from al.data import ALData
from al.errors import ConfigError
from al.models.backbone import Backbone
from al.pool import stage_rng
from al.representation.views import Augmentation, TwoViews
from al.runtime import signals

log = logging.getLogger(__name__)


@dataclass
class Pretraining:
    """`objective(backbone=, feature_dim=)` builds the LightningModule (al.representation.
    objectives); `epochs` passes over the pool in batches of `batch_size` pairs of views."""

    name: str
    objective: Callable[..., pl.LightningModule]
    epochs: int
    batch_size: int
    augmentation: Augmentation

    def pretrain(
        self, backbone: Backbone, data: ALData, seed: int, like: pl.Trainer, resume: Path
    ) -> dict[str, torch.Tensor]:
        """Train `backbone` on `data`'s pool (its inputs only) from `seed`; return its weights
        without the classifier. `resume` holds the last finished epoch's checkpoint."""
        stats = data.pool.pixel_stats
        if stats is None:
            raise ConfigError(
                f"representation={self.name} augments images, and this dataset's inputs are "
                "not images: use representation=none"
            )
        shape = data.input_shape()
        augment = self.augmentation.transform(shape[1:], shape[0])
        views = TwoViews(data.pool.unlabeled(range(len(data.pool))), stats, augment, seed)
        sampler = EpochSampler(len(views), seed)
        loader = DataLoader(views, self.batch_size, sampler=sampler, drop_last=True)
        objective = self.objective(backbone=backbone, feature_dim=backbone.classifier.in_features)
        trainer = pretraining_trainer(like, self.epochs, resume)
        signals.enter(f"pretraining ({self.name})")
        trainer.fit(objective, loader, ckpt_path=resume if resume.exists() else None)
        resume.unlink(missing_ok=True)
        state = backbone.state_dict()
        return {k: v.cpu() for k, v in state.items() if not k.startswith("classifier.")}


class EpochSampler(Sampler[int]):
    """A permutation of the pool drawn from (seed, epoch) alone, each position offered as
    `epoch · n + position` so that its views are drawn from (seed, epoch, position) too: the
    pretraining resumed after any epoch repeats the uninterrupted one."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:  # called by Lightning before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[int]:
        rng = stage_rng(self.seed, self.epoch, "pretraining order")
        yield from (self.epoch * self.size + int(p) for p in rng.permutation(self.size))


class EpochCheckpoint(pl.Callback):
    """The objective, optimizer and schedule after every epoch, written whole (atomically,
    signals held)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_train_epoch_end(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        with signals.deferred():
            partial = self.path.with_name(self.path.name + ".partial")
            trainer.save_checkpoint(partial, weights_only=False)  # with the optimizer
            os.replace(partial, self.path)


class EpochReport(pl.Callback):
    """One log line per pretraining epoch: its number and mean loss."""

    def on_train_epoch_end(self, trainer: pl.Trainer, _module: pl.LightningModule) -> None:
        loss = trainer.callback_metrics.get("pretrain/loss")
        log.info(
            "Pretraining epoch %d/%d: loss %.4f",
            trainer.current_epoch + 1,
            trainer.max_epochs,
            float("nan") if loss is None else float(loss),
        )


def pretraining_trainer(like: pl.Trainer, epochs: int, resume: Path) -> pl.Trainer:
    """`epochs` on one device of the run's Trainer, in its precision; no logging of its own."""
    return pl.Trainer(
        strategy=SingleDeviceStrategy(device=like.strategy.root_device),
        accelerator=like.strategy.root_device.type,
        precision=like.precision,
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
        callbacks=[EpochReport(), EpochCheckpoint(resume)],
    )
