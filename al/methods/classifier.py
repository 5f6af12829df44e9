"""The standard task learner: a backbone trained with cross-entropy, tested with torchmetrics."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy

from al.errors import NonFiniteLossError
from al.models.backbone import Backbone

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class ClassifierModule(pl.LightningModule):
    """Trains `backbone` with cross-entropy; `forward` returns logits (what selectors score)."""

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: int,
        scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_balanced_acc = MulticlassAccuracy(num_classes, average="macro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).logits

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        check_finite(loss, self.current_epoch, batch_idx)
        self.train_acc(logits, y)
        self.log("train/loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        x, y = batch
        logits = self(x)
        self.test_acc(logits, y)
        self.test_balanced_acc(logits, y)
        self.log("test/loss", F.cross_entropy(logits, y), batch_size=len(y))
        self.log("test/acc", self.test_acc, batch_size=len(y))
        self.log("test/balanced_acc", self.test_balanced_acc, batch_size=len(y))

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}


def check_finite(loss: torch.Tensor, epoch: int, batch_idx: int) -> None:
    """Stop training at the first NaN or infinite loss, naming where it happened."""
    if not torch.isfinite(loss):
        raise NonFiniteLossError(
            f"training loss is {loss.item()} at epoch {epoch}, batch {batch_idx}; "
            "lower the learning rate (e.g. optimizer.lr=1e-4) or check the inputs for NaN"
        )
