"""Self-supervised objectives on two views, as LightningModules around a `Backbone`'s `embed`:
SimCLR (Chen et al. 2020, Eq. 1, NT-Xent) and BYOL (Grill et al. 2020, Eq. 2). Heads and
losses are lightly's; the optimizer is SGD with momentum and a cosine schedule to 0 over the
run (both papers use LARS at large batch; SGD is what lightly's and SCAN's CIFAR recipes run)."""

from __future__ import annotations

import copy
import math

import pytorch_lightning as pl
import torch
from lightly.loss import NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead, SimCLRProjectionHead
from lightly.models.utils import deactivate_requires_grad, update_momentum

from al.models.backbone import Backbone


class TwoViewObjective(pl.LightningModule):
    """The backbone's penultimate features of each view, through the objective's heads; SGD
    with momentum and cosine decay over `trainer.max_epochs`."""

    def __init__(self, backbone: Backbone, lr: float, momentum: float, weight_decay: float):
        super().__init__()
        self.backbone = backbone
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.embed(x)[0]

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(
            self.parameters(), self.lr, momentum=self.momentum, weight_decay=self.weight_decay
        )
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        return [optimizer], [{"scheduler": schedule, "interval": "step"}]


class SimClr(TwoViewObjective):
    """NT-Xent (Eq. 1) between the projections z = g(h) of two views, at `temperature`; g is
    the paper's two-layer MLP (hidden width = feature width, §B.9 for CIFAR: output 128)."""

    def __init__(
        self,
        backbone: Backbone,
        feature_dim: int,
        projection_dim: int,
        temperature: float,
        lr: float,
        momentum: float,
        weight_decay: float,
    ) -> None:
        super().__init__(backbone, lr, momentum, weight_decay)
        self.projection = SimCLRProjectionHead(feature_dim, feature_dim, projection_dim)
        self.loss = NTXentLoss(temperature=temperature)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int):
        first, second = batch
        loss = self.loss(
            self.projection(self.features(first)), self.projection(self.features(second))
        )
        self.log("pretrain/loss", loss, on_step=False, on_epoch=True)
        return loss


class Byol(TwoViewObjective):
    """BYOL's loss (Eq. 2, symmetrised as the paper's Eq. 3: 2 − 2·cos, here −cos) between the
    online network's prediction of one view and the target network's projection of the other;
    the target is an EMA of the online network whose rate τ rises from `momentum_base` to 1 on
    a cosine (§3.2)."""

    def __init__(
        self,
        backbone: Backbone,
        feature_dim: int,
        projection_dim: int,
        hidden_dim: int,
        momentum_base: float,
        lr: float,
        momentum: float,
        weight_decay: float,
    ) -> None:
        super().__init__(backbone, lr, momentum, weight_decay)
        self.projection = BYOLProjectionHead(feature_dim, hidden_dim, projection_dim)
        self.prediction = BYOLPredictionHead(projection_dim, hidden_dim, projection_dim)
        self.target_backbone = copy.deepcopy(backbone)
        self.target_projection = copy.deepcopy(self.projection)
        deactivate_requires_grad(self.target_backbone)
        deactivate_requires_grad(self.target_projection)
        self.momentum_base = momentum_base
        self.loss = NegativeCosineSimilarity()

    def target(self, x: torch.Tensor) -> torch.Tensor:
        return self.target_projection(self.target_backbone.embed(x)[0]).detach()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _index: int):
        tau = self.target_rate()
        update_momentum(self.backbone, self.target_backbone, tau)
        update_momentum(self.projection, self.target_projection, tau)
        first, second = batch
        online = [self.prediction(self.projection(self.features(x))) for x in (first, second)]
        loss = 0.5 * (
            self.loss(online[0], self.target(second)) + self.loss(online[1], self.target(first))
        )
        self.log("pretrain/loss", loss, on_step=False, on_epoch=True)
        return loss

    def target_rate(self) -> float:
        """τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2 at step k of K (§3.2)."""
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        progress = min(self.global_step / steps, 1.0)
        return 1 - (1 - self.momentum_base) * (math.cos(math.pi * progress) + 1) / 2
