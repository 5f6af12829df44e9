"""The standard task learner: a backbone trained with its task's loss (cross-entropy, per
sample or per pixel), tested with the task's torchmetrics.

Options shared by many methods: a jointly trained loss prediction module (Learning Loss;
TA-VAAL's ranker) and implicit semantic data augmentation (ISDA; DAST-AL). Dropout belongs
to the backbone (`model.dropout`), the same for every method of a comparison.
"""

from __future__ import annotations

from collections.abc import Mapping

import pytorch_lightning as pl
import torch

from al.errors import ConfigError
from al.methods.module import OptimizerFactory, SchedulerFactory, TaskModule, check_finite
from al.models.backbone import Backbone, BackboneOutput
from al.models.isda import COVARIANCES, ClassCovariance, IsdaSettings, isda_strength
from al.models.loss_prediction import (
    LossPredictionModule,
    LossPredictionSettings,
    hinge_pair_loss,
    ranking_pair_loss,
)
from al.semi.ema import EmaWeights
from al.semi.protocol import FixMatch, UnlabeledTerm
from al.tasks import Task
from al.tasks.extensions import IsdaTerms, require

PAIR_LOSSES = {"hinge": hinge_pair_loss, "ranking": ranking_pair_loss}


class ClassifierModule(TaskModule):
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
    trains_loss_prediction = True

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
        semi: FixMatch | None = None,
    ) -> None:
        super().__init__(backbone, optimizer, num_classes, scheduler, task, train_loss_prediction)
        self.unlabeled_term = None
        if semi:
            check_semi_supervisable(self.task)
            self.unlabeled_term = UnlabeledTerm(semi, num_classes)
            self.unlabeled_training = semi.unlabeled_training()
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
            require(self.task, IsdaTerms, "isda.enabled=true")
            if self.isda.covariance not in COVARIANCES:
                raise ConfigError(f"isda.covariance={self.isda.covariance!r} not in {COVARIANCES}")
            self.covariance = ClassCovariance(
                num_classes, backbone.classifier.in_features, self.isda.covariance == "diagonal"
            )

    def on_fit_start(self) -> None:
        """Each stage's ISDA statistics and FlexMatch's learning status start empty,
        warm-started weights or not."""
        if self.covariance is not None:
            for buffer in self.covariance.buffers():
                buffer.zero_()
        if self.unlabeled_term is not None:
            data = self.trainer.datamodule
            self.unlabeled_term.start(len(data.pool), data.unlabeled_indices, self.device)

    def training_callbacks(self) -> list[pl.Callback]:
        """Under `semi`, the EMA of the weights that evaluation and selection use."""
        if self.unlabeled_term is None:
            return []
        settings = self.unlabeled_term.settings
        return [EmaWeights(settings.ema_decay, settings.ema_warmup)]

    def predicted_loss(self, x: torch.Tensor) -> torch.Tensor:
        """The loss prediction module's output for each sample of `x`."""
        if self.loss_predictor is None:
            raise ConfigError(
                "this method scores by predicted loss but its module trains no loss prediction "
                "module: set method.module.train_loss_prediction=true"
            )
        return self.loss_predictor(self.backbone(x).stages)

    def training_step(self, batch: tuple | dict, batch_idx: int) -> torch.Tensor:
        if self.unlabeled_term is None:
            x, y = batch
            out = self.backbone(x)
            losses = self.training_losses(out, y, self.current_epoch, self.trainer.max_epochs)
        else:
            x, y = batch["labeled"]
            out, losses = self.semi_supervised_losses(x, y, *batch["unlabeled"])
        loss = sum(losses.values())
        check_finite(loss, self.current_epoch, batch_idx)
        self.track_epoch({**losses, "loss": loss}, out.logits, y, batch_idx)
        return loss

    def semi_supervised_losses(
        self, x: torch.Tensor, y: torch.Tensor, weak: torch.Tensor, strong: torch.Tensor, index
    ) -> tuple[BackboneOutput, dict[str, torch.Tensor]]:
        """The labeled terms and the unlabeled one, from one forward pass over the labeled
        batch and both views of the unlabeled one (BatchNorm sees them together, as in
        FixMatch's code)."""
        out = self.backbone(torch.cat([x, weak, strong]))
        labeled = first_rows(out, len(x))
        losses = self.training_losses(labeled, y, self.current_epoch, self.trainer.max_epochs)
        weak_logits, strong_logits = out.logits[len(x) :].chunk(2)
        losses["unlabeled"], share = self.unlabeled_term(weak_logits, strong_logits, index)
        self.log("train/confident", share, on_step=False, on_epoch=True, batch_size=len(index))
        return labeled, losses

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


def first_rows(out: BackboneOutput, rows: int) -> BackboneOutput:
    """The outputs of the first `rows` samples of a batch."""
    return BackboneOutput(
        out.logits[:rows], out.features[:rows], [stage[:rows] for stage in out.stages]
    )


def check_semi_supervisable(task: Task) -> None:
    if not task.one_label_per_sample:
        raise ConfigError(
            f"semi-supervised training pseudo-labels whole samples; {task.name} labels pixels: "
            "use semi=none"
        )
