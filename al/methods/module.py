"""The task-module base every method's LightningModule derives from, and the helper for the
modules that step their own optimizers (manual optimisation).

`TaskModule` owns what every task learner has: the backbone and the optimizer and scheduler
factories, the task (its loss, metrics and record keys), the epoch means of `train/*`,
validation and test, `configure_optimizers`, and the capabilities the loop reads, declared
here with their defaults:

- `tasks`: the tasks the module trains (a dataset of another task is refused at start-up);
- `unlabeled_training`: an `UnlabeledTraining` to be served unlabeled batches beside the
  labeled ones (None: labeled batches only);
- `labeled_sample_ids`: labeled batches carry their samples' global indices;
- `stores_synthetic`: the module makes synthetic pairs from each stage's picks
  (`synthesize`), kept in the run state;
- `single_device`: the training step cannot run data-parallel (refused under DDP);
- `training_callbacks()`: callbacks for each stage's Trainer, run before the selector's;
- `trains_loss_prediction`: the module can train a loss prediction module jointly
  (`lpm_on_all_methods=true`); the others refuse that switch in one line.

The loop sets `stage`, the AL stage the module trains for (0: before the first acquisition),
before fitting it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import ClassVar

import pytorch_lightning as pl
import torch

from al.data.datamodule import UnlabeledTraining
from al.errors import ConfigError, NonFiniteLossError
from al.models.backbone import Backbone, load_backbone_weights
from al.tasks import Classification, Task

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class TaskModule(pl.LightningModule):
    """A backbone trained on its task; `forward` returns the backbone's logits (what
    score-based selectors read). Subclasses write `training_step`."""

    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    trains_loss_prediction: ClassVar[bool] = False
    unlabeled_training: UnlabeledTraining | None = None
    labeled_sample_ids: bool = False
    stores_synthetic: bool = False
    single_device: bool = False
    stage: int = 0

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
        task: Task | None = None,
        train_loss_prediction: bool = False,
    ) -> None:
        super().__init__()
        if train_loss_prediction and not self.trains_loss_prediction:
            raise ConfigError(
                f"{type(self).__name__} has its own training regime and trains no loss "
                "prediction module: set lpm_on_all_methods=false"
            )
        self.task = task or Classification()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.num_classes = num_classes
        self.val_acc = self.task.train_metric(num_classes)
        self.epoch_means = EpochMeans()
        self.test_metrics = self.task.test_metrics(num_classes).clone(prefix="test/")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).logits

    def on_train_epoch_start(self) -> None:
        self.epoch_means = EpochMeans()

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
            # Equal on every rank already: sync_dist keeps Lightning from warning under DDP;
            # logged once an epoch, so the batch size that would weigh it is moot.
            self.log(
                f"train/{name}", value, on_step=False, on_epoch=True, sync_dist=True, batch_size=1
            )

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

    def load_pretrained(self, weights: Mapping[str, torch.Tensor]) -> None:
        """Start the task learner from pretrained `weights` (all but the classifier)."""
        load_backbone_weights(self.backbone, weights)

    def training_callbacks(self) -> list[pl.Callback]:
        """Callbacks each stage's Trainer runs for this module, before the selector's (an
        EMA of the weights that selection and testing then use); none by default."""
        return []

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        """The configured optimizer over every parameter, with the configured scheduler."""
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


class ManualSteps:
    """For a TaskModule with `automatic_optimization = False`: its optimizers as a list, one
    update on a loss, and its schedulers stepped once per epoch (as automatic optimisation
    steps them)."""

    def optimizer_list(self) -> list:
        optimizers = self.optimizers()
        return optimizers if isinstance(optimizers, list) else [optimizers]

    def apply_update(self, loss: torch.Tensor, *optimizers) -> None:
        """Zero the gradients of `optimizers`, backpropagate `loss`, step them alone."""
        for optimizer in optimizers:
            optimizer.zero_grad()
        self.manual_backward(loss)
        for optimizer in optimizers:
            optimizer.step()

    def on_train_epoch_end(self) -> None:
        """Every scheduler steps once per epoch (Lightning's own steps them when the module
        optimises automatically)."""
        if self.automatic_optimization:
            return
        schedulers = self.lr_schedulers()
        for scheduler in schedulers if isinstance(schedulers, list) else [schedulers]:
            if scheduler is not None:
                scheduler.step()


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
