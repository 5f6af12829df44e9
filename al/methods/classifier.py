"""The standard task learner: a backbone trained with its task's loss (cross-entropy, per
sample or per pixel), tested with the task's torchmetrics.

Options shared by many methods: a jointly trained loss prediction module (Learning Loss;
TA-VAAL's ranker) and implicit semantic data augmentation (ISDA; DAST-AL). Dropout belongs
to the backbone (`model.dropout`), the same for every method of a comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytorch_lightning as pl
import torch

from al.errors import ConfigError, NonFiniteLossError
from al.models.backbone import Backbone, BackboneOutput
from al.models.isda import COVARIANCES, ClassCovariance, IsdaSettings, isda_strength
from al.models.loss_prediction import (
    LossPredictionModule,
    LossPredictionSettings,
    hinge_pair_loss,
    ranking_pair_loss,
)
from al.tasks import Classification, Task

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]
PAIR_LOSSES = {"hinge": hinge_pair_loss, "ranking": ranking_pair_loss}


class ClassifierModule(pl.LightningModule):
    """Trains `backbone` with `task`'s loss (Classification when None); `forward` returns
    logits (what selectors score; per pixel for segmentation). `tasks`: every task it trains.

    `loss_prediction` (LossPredictionSettings) with
    `train_loss_prediction: true` trains a loss prediction module jointly:
    `mean(CE) + η·L_pair` (Yoo & Kweon Eq. 3), `pair_loss` hinge (their Eq. 2) or
    ranking (TA-VAAL Eq. 1); after the last joint epoch the module is detached from the
    backbone or frozen (`loss_prediction.schedule`).
    `isda` (IsdaSettings) with `enabled: true` trains on ISDA's augmented logits, keeping
    the class-conditional feature covariance in `self.covariance` for selectors (of per-pixel
    features for segmentation).
    """

    tasks = ("classification", "segmentation")

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        loss_prediction: Mapping | None = None,
        train_loss_prediction: bool = False,
        pair_loss: str = "hinge",
        isda: Mapping | None = None,
        task: Task | None = None,
    ) -> None:
        super().__init__()
        self.task = task or Classification()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        if pair_loss not in PAIR_LOSSES:
            raise ConfigError(f"pair_loss={pair_loss!r} is not one of {sorted(PAIR_LOSSES)}")
        self.pair_loss = pair_loss
        self.lpm = LossPredictionSettings(**(loss_prediction or {}))
        self.loss_predictor = None
        if train_loss_prediction:
            self.loss_predictor = LossPredictionModule(
                backbone.stage_channels, self.lpm.hidden, self.lpm.stages
            )
        self.isda = IsdaSettings(**(isda or {}))
        self.covariance = None
        if self.isda.enabled:
            if self.isda.covariance not in COVARIANCES:
                raise ConfigError(f"isda.covariance={self.isda.covariance!r} not in {COVARIANCES}")
            self.covariance = ClassCovariance(
                num_classes, backbone.classifier.in_features, self.isda.covariance == "diagonal"
            )
        self.val_acc = self.task.train_metric(num_classes)
        self.epoch_means = EpochMeans()
        self.test_metrics = self.task.test_metrics(num_classes).clone(prefix="test/")

    def on_train_epoch_start(self) -> None:
        self.epoch_means = EpochMeans()

    def on_fit_start(self) -> None:
        """Each stage's ISDA statistics start empty, warm-started weights or not."""
        if self.covariance is not None:
            for buffer in self.covariance.buffers():
                buffer.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).logits

    def predicted_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The loss prediction module's output for each sample of `x`."""
        if self.loss_predictor is None:
            raise ConfigError(
                "this method scores by predicted loss but its module trains no loss prediction "
                "module: set method.module.train_loss_prediction=true"
            )
        return self.loss_predictor(self.backbone(x).stages)

    def training_step(
        self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int
    ) -> torch.Tensor:
        x, y = batch
        out = self.backbone(x)
        losses = self.training_losses(out, y, self.current_epoch, self.trainer.max_epochs)
        loss = sum(losses.values())
        check_finite(loss, self.current_epoch, batch_idx)
        self.track_epoch({**losses, "loss": loss}, out.logits, y, batch_idx)
        return loss

    def track_epoch(
        self,
        values: Mapping[str, torch.Tensor],
        logits: torch.Tensor,
        y: torch.Tensor,
        batch_idx: int,
    ) -> None:
        """Add one training batch to the epoch's `train/*` means: each of `values` and `acc`
        (`logits` against `y`); logged at the epoch's last batch, before the callbacks'
        `on_train_epoch_end` reads them."""
        self.epoch_means.add(values, len(y), self.task.prediction_hits(logits.detach(), y))
        trainer = self._trainer  # None for a step called by hand: nothing to log to
        if trainer is not None and (
            trainer.is_last_batch or batch_idx + 1 == trainer.num_training_batches
        ):
            self.log_epoch_means()

    def log_epoch_means(self) -> None:
        """`train/*`: each loss term's batch-weighted mean over the epoch and the epoch's
        `train/acc`, over every DDP rank, logged once, at the epoch's last batch (a `self.log`
        per term and step would cost each step Lightning's result collection)."""
        means = self.epoch_means.means(lambda sums: self.trainer.strategy.reduce(sums, None, "sum"))
        for name, value in means.items():
            # Equal on every rank already: sync_dist keeps Lightning from warning under DDP.
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, sync_dist=True)

    def training_losses(
        self, out: BackboneOutput, y: torch.Tensor, epoch: int, max_epochs: int
    ) -> dict[str, torch.Tensor]:
        """The weighted terms of the training loss: `ce` (on ISDA's augmented logits when
        enabled) and, with loss prediction, `pair`."""
        logits = out.logits
        if self.covariance is not None:
            self.covariance.update(*self.task.feature_pairs(out, y))
            quadratic = self.covariance.quadratic_terms(self.backbone.classifier.weight)
            strength = isda_strength(self.isda.lambda0, epoch, max_epochs)
            logits = self.task.augmented_logits(logits, quadratic, y, strength)
        losses = {"ce": self.task.loss(logits, y)}
        joint = self.loss_predictor is not None and epoch <= self.lpm.last_joint_epoch(max_epochs)
        if self.loss_predictor is not None and (joint or self.lpm.schedule == "detach"):
            stages = out.stages if joint else [stage.detach() for stage in out.stages]
            predicted = self.loss_predictor(stages)
            sample_losses = self.task.sample_losses(logits, y)
            pair = PAIR_LOSSES[self.pair_loss](predicted, sample_losses, margin=self.lpm.margin)
            losses["pair"] = self.lpm.eta * pair
        return losses

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        self.val_acc(self(x), y)
        self.log("val/acc", self.val_acc, batch_size=len(y))

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_metrics.update(logits, y)
        self.log("test/loss", self.task.loss(logits, y), batch_size=len(y), sync_dist=True)
        self.log_dict(self.test_metrics, batch_size=len(y))

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


class EpochMeans:
    """An epoch's running sums on the device, no sync per step: each named scalar weighted by
    its batch's size (one stacked add) and the task's (correct, counted) predictions (exact
    integers: a segmentation epoch counts more pixels than float32 holds exactly)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.sums: torch.Tensor | None = None
        self.hits: torch.Tensor | None = None
        self.samples = 0

    def add(self, values: Mapping[str, torch.Tensor], batch_size: int, hits: torch.Tensor) -> None:
        weighted = torch.stack(list(values.values())).detach().float() * batch_size
        if self.sums is None:
            self.sums, self.hits = weighted, hits
        else:
            self.sums, self.hits = self.sums + weighted, self.hits + hits
        self.names = list(values)
        self.samples += batch_size

    def means(self, reduce: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each scalar's mean and `acc` (correct / counted) from the sums totalled by `reduce`
        (over the DDP ranks)."""
        if self.sums is None:
            return {}
        correct, counted, samples = reduce(
            torch.cat([self.hits, self.hits.new_tensor([self.samples])])
        )
        weighted = reduce(self.sums) / samples
        means = dict(zip(self.names, weighted, strict=True))
        return {**means, "acc": correct / counted.clamp(min=1)}


def check_finite(loss: torch.Tensor, epoch: int, batch_idx: int) -> None:
    """Stop training at the first NaN or infinite loss, naming where it happened."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(
            f"training loss is {loss.item()} at epoch {epoch}, batch {batch_idx}; "
            "lower the learning rate (e.g. optimizer.lr=1e-4) or check the inputs for NaN"
        )
