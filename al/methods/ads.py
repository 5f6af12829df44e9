"""ADS, Agreement-Discrepancy-Selection (Fu et al., AAAI 2021; more-methods.md §5.1): a feature
extractor g (the backbone without its linear classifier) and two classifiers f1, f2 with
per-class sigmoid outputs ŷ¹, ŷ² ∈ [0, 1]^C, trained on the labeled and the unlabeled samples;
label the candidates of highest mean entropy E(u) (Eq. 3) of the two classifiers — by default
in the code's form, each classifier's outputs renormalised to sum to one (`mean_entropy`).

Algorithm 1 makes full passes per epoch (epoch 0: a pass over L; then an agreement pass over U,
a discrepancy pass over U with L, a pass over L). The datamodule serves one paired loader per
epoch, so here every step does the same updates in the same order on its labeled and unlabeled
batch: [epoch 0: the labeled BCE on g, f1, f2 (Eq. 1)]; agreement on the unlabeled batch, g
only (Eqs. 2-5); discrepancy on the unlabeled batch plus the labeled BCE, f1 and f2 only
(Eqs. 6-8); the labeled BCE on g, f1, f2 (Eq. 1). `unlabeled_steps=False` keeps only the
labeled BCE steps: the ablation, on the same batches.

`step_optimizer` says which optimizer takes each update. `sgd` (the paper's "using SGD"; the
code's SGD): the labeled BCE steps use the run's optimizer, the agreement and discrepancy steps
plain SGD (`step_sgd`), so their loss weights w_a, w_d scale their steps. `run`: one instance of
the run's optimizer takes every update, so under Adam each weight still scales its loss against
the labeled BCE it shares the moment estimates with. `separate`: the run's optimizer thrice, one
per update; Adam then normalises each update's loss scale away, and the g-only agreement step
moves g by a full step whatever w_a is.

The entropy weights are constants of each update (detached, as the code). The module is
tested on log mean(ŷ¹, ŷ²): its argmax is that of the mean prediction, its softmax the mean
renormalised to sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.core.optimizer import LightningOptimizer
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from al.data.datamodule import UnlabeledTraining
from al.errors import ConfigError
from al.methods.module import (
    ManualSteps,
    OptimizerFactory,
    SchedulerFactory,
    TaskModule,
    check_finite,
)
from al.methods.selector import Selector
from al.models.backbone import Backbone
from al.options import NonNegativeFloat, PositiveFloat, PositiveInt
from al.tasks import Task

HEADS = ("linear", "cosine_prototype")
ENTROPIES = ("paper", "code")
WEIGHTINGS = ("paper", "code")
CODE_WEIGHT_DIVISOR = 128  # the code's fixed divisor of the weights (its batch size)
# Which of configure_optimizers' optimizers takes the labeled, agreement and discrepancy step.
STEP_ROLES = {"sgd": (0, 1, 2), "run": (0, 0, 0), "separate": (0, 1, 2)}


@dataclass(frozen=True)
class StepSGD:
    """The agreement and discrepancy steps' SGD under `step_optimizer: sgd` (the code's lr 0.1
    and weight decay 5e-4; momentum 0: the code builds its SGD(momentum 0.9) afresh every
    minibatch, and a fresh buffer's first step is the plain gradient step)."""

    lr: float = 0.1
    momentum: float = 0.0
    weight_decay: float = 5.0e-4


class CosinePrototypeHead(nn.Module):
    """The code's classifier: σ(W h) (its 1×1 conv d → d, no bias, then a sigmoid), cosine
    similarity to `prototypes` learned vectors per class, the max over a class's prototypes,
    divided by the temperature α: pre-sigmoid class scores."""

    def __init__(self, dim: int, num_classes: int, prototypes: int, temperature: float) -> None:
        super().__init__()
        self.projection = nn.Linear(dim, dim, bias=False)
        self.prototypes = nn.Parameter(torch.randn(prototypes, num_classes, dim))
        self.temperature = temperature

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        projected = F.normalize(torch.sigmoid(self.projection(features)), dim=1)
        cosines = torch.einsum("bd,pcd->bpc", projected, F.normalize(self.prototypes, dim=2))
        return cosines.amax(1) / self.temperature


def build_head(
    head: str, dim: int, num_classes: int, prototypes: int, temperature: float
) -> nn.Module:
    """One classifier f_k: `linear` (the paper's, d → C) or `cosine_prototype` (the code's)."""
    if head not in HEADS:
        raise ConfigError(f"method.module.head={head!r} is not one of {', '.join(HEADS)}")
    if head == "linear":
        return nn.Linear(dim, num_classes)
    if isinstance(prototypes, bool) or not isinstance(prototypes, int) or prototypes < 1:
        raise ConfigError(f"method.module.prototypes={prototypes!r} must be a positive integer")
    if not temperature > 0:
        raise ConfigError(f"method.module.temperature={temperature!r} must be positive (0.05)")
    return CosinePrototypeHead(dim, num_classes, prototypes, temperature)


def prediction_discrepancy(probabilities: torch.Tensor) -> torch.Tensor:
    """La' (Eq. 2) of (2, B, C) sigmoid outputs: (1/C) Σ_c |ŷ¹_c − ŷ²_c| per sample; the
    discrepancy loss Ld' (Eq. 6) is 1 − La'."""
    return (probabilities[0] - probabilities[1]).abs().mean(1)


def mean_entropy(probabilities: torch.Tensor, variant: str = "paper") -> torch.Tensor:
    """E(u) of (2, B, C) sigmoid outputs. `paper` (Eq. 3): −½ Σ_k Σ_c ŷᵏ_c ln ŷᵏ_c of the
    sigmoid outputs as they are (−ŷ ln ŷ peaks at ŷ = 1/e: a sample no class fits, every
    ŷ ≈ 0, scores ≈ 0); `code`: each classifier's outputs renormalised to sum to one, entropy
    in bits, averaged over the two (every ŷ ≈ 0 renormalises to near uniform: the maximum)."""
    if variant == "code":
        renormalised = probabilities / probabilities.sum(2, keepdim=True)
        return -torch.special.xlogy(renormalised, renormalised).sum(2).mean(0) / math.log(2)
    return -torch.special.xlogy(probabilities, probabilities).sum(2).mean(0)


def entropy_weights(
    entropy: torch.Tensor, tau: float, weighting: str = "paper"
) -> tuple[torch.Tensor, torch.Tensor]:
    """(w_a, w_d) per sample: (1/n)(1 − σ(E − τ)) (Eq. 4) and (1/n) σ(E − τ) (Eq. 7), n the
    batch size, so Σ_i w_i L'_i is a weighted mean; `code` divides by 128·n instead (the code
    averages over the batch weights already divided by a fixed 128)."""
    divisor = len(entropy) * (CODE_WEIGHT_DIVISOR if weighting == "code" else 1)
    easy = torch.sigmoid(entropy - tau)
    return (1 - easy) / divisor, easy / divisor


def labeled_bce(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 1 on (2, B, C) pre-sigmoid scores: each classifier's BCE against one-hot labels,
    summed over classes (the code), averaged over the batch, summed over the two."""
    targets = F.one_hot(labels, scores.shape[2]).to(scores.dtype).expand_as(scores)
    losses = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")
    return losses.sum(2).mean(1).sum()


def mean_log_probabilities(scores: torch.Tensor) -> torch.Tensor:
    """log ½(σ(z¹) + σ(z²)) of (2, B, C) scores, computed in log space: the mean prediction as
    logits."""
    return torch.logsumexp(F.logsigmoid(scores), dim=0) - math.log(2)


class AdsModule(ManualSteps, TaskModule):
    """g = the backbone's features (through its `dropout` slot; its own linear classifier is
    unused, as ADS removes the FC layers), f1 and f2 = two `head`s; trained per step as the
    module docstring says, on labeled and unlabeled batches (`unlabeled_batch_size`,
    `epoch`: `UnlabeledTraining`). `tau` is τ of Eqs. 4 and 7, `entropy` and `weighting`
    the paper's or the code's E(u) and weight normalisation; `step_optimizer` and `step_sgd`
    which optimizer takes each update, `unlabeled_steps` whether the agreement and
    discrepancy steps run at all (module docstring)."""

    single_device = True  # Algorithm 1: three backward passes per step

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: PositiveInt,
        scheduler: SchedulerFactory | None = None,
        head: str = "linear",
        prototypes: PositiveInt = 3,
        temperature: PositiveFloat = 0.05,
        tau: NonNegativeFloat = 0.1,
        entropy: str = "code",
        weighting: str = "paper",
        step_optimizer: str = "sgd",
        step_sgd: Mapping | None = None,
        unlabeled_steps: bool = True,
        unlabeled_batch_size: int | None = 128,
        epoch: str = "longest",
        train_loss_prediction: bool = False,
        task: Task | None = None,
    ) -> None:
        check_options(entropy, weighting, step_optimizer)
        super().__init__(backbone, optimizer, num_classes, scheduler, task, train_loss_prediction)
        self.automatic_optimization = False
        dim = backbone.classifier.in_features
        self.heads = nn.ModuleList(
            build_head(head, dim, num_classes, prototypes, temperature) for _ in range(2)
        )
        self.tau, self.entropy, self.weighting = tau, entropy, weighting
        self.step_optimizer, self.step_sgd = step_optimizer, StepSGD(**(step_sgd or {}))
        self.unlabeled_steps = unlabeled_steps
        self.unlabeled_training = UnlabeledTraining(unlabeled_batch_size, epoch)
        self.classifier_test_acc = nn.ModuleList(
            MulticlassAccuracy(num_classes, average="micro") for _ in range(2)
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """g(x): the backbone's penultimate features, through its dropout slot."""
        return self.backbone.dropout(self.backbone.embed(x)[0])

    def head_scores(self, features: torch.Tensor) -> torch.Tensor:
        """(2, B, C) pre-sigmoid scores of f1 and f2."""
        return torch.stack([head(features) for head in self.heads])

    def classifier_probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(2, B, C) sigmoid outputs ŷ¹, ŷ² in float32."""
        return torch.sigmoid(self.head_scores(self.features(x)).float())

    def unlabeled_entropy(self, x: torch.Tensor) -> torch.Tensor:
        """E(u) (Eq. 3, or the code's variant): what the selector ranks by."""
        return mean_entropy(self.classifier_probabilities(x), self.entropy)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return mean_log_probabilities(self.head_scores(self.features(x)))

    def agreement_loss(self, x_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """La = Σ_i w_a,i La'_i (Eq. 5) on an unlabeled batch, with its mean E(u)."""
        probabilities = torch.sigmoid(self.head_scores(self.features(x_u)))
        entropy = mean_entropy(probabilities.detach(), self.entropy)
        weights, _ = entropy_weights(entropy, self.tau, self.weighting)
        return (weights * prediction_discrepancy(probabilities)).sum(), entropy.mean()

    def discrepancy_loss(
        self, x_u: torch.Tensor, x_l: torch.Tensor, y_l: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 8's terms on g's features held fixed: Ld = Σ_i w_d,i Ld'_i (Eqs. 6, 7) on the
        unlabeled batch, and the labeled BCE (Eq. 1) of f1, f2."""
        with torch.no_grad():
            features_u, features_l = self.features(x_u), self.features(x_l)
        probabilities = torch.sigmoid(self.head_scores(features_u))
        entropy = mean_entropy(probabilities.detach(), self.entropy)
        _, weights = entropy_weights(entropy, self.tau, self.weighting)
        discrepancy = (weights * (1 - prediction_discrepancy(probabilities))).sum()
        return discrepancy, labeled_bce(self.head_scores(features_l), y_l)

    def labeled_loss(
        self, x_l: torch.Tensor, y_l: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. 1 on g, f1, f2, with the batch's (2, B, C) scores."""
        scores = self.head_scores(self.features(x_l))
        return labeled_bce(scores, y_l), scores

    def update(
        self,
        optimizer: LightningOptimizer,
        loss: torch.Tensor,
        batch_idx: int,
        held: Iterable[nn.Parameter] = (),
    ) -> torch.Tensor:
        """One step of `optimizer` on `loss`, leaving the `held` parameters where they are
        (their gradients dropped: an optimizer skips a parameter without one); the loss,
        detached, for the epoch's log."""
        check_finite(loss, self.current_epoch, batch_idx)
        optimizer.zero_grad()
        self.manual_backward(loss)
        for parameter in held:
            parameter.grad = None
        optimizer.step()
        return loss.detach()

    def step_optimizers(self) -> tuple[LightningOptimizer, ...]:
        """The optimizers that take the labeled, the agreement and the discrepancy update."""
        optimizers = self.optimizer_list()
        return tuple(optimizers[role] for role in STEP_ROLES[self.step_optimizer])

    def training_step(self, batch: dict, batch_idx: int) -> None:
        """Algorithm 1's updates on one labeled and one unlabeled batch (module docstring)."""
        (x_l, y_l), (x_u, _) = batch["labeled"], batch["unlabeled"]
        labeled, agreement_step, discrepancy_step = self.step_optimizers()
        if self.current_epoch == 0:
            self.update(labeled, self.labeled_loss(x_l, y_l)[0], batch_idx)
        losses = {}
        if self.unlabeled_steps:
            agreement, entropy = self.agreement_loss(x_u)
            held = self.heads.parameters()
            losses["agreement"] = self.update(agreement_step, agreement, batch_idx, held)
            discrepancy, discrepancy_bce = self.discrepancy_loss(x_u, x_l, y_l)
            self.update(discrepancy_step, discrepancy + discrepancy_bce, batch_idx)
            losses["discrepancy"] = discrepancy.detach()
            losses["unlabeled_entropy"] = entropy
        bce, scores = self.labeled_loss(x_l, y_l)
        losses["labeled_bce"] = self.update(labeled, bce, batch_idx)
        terms = {**losses, "loss": losses["labeled_bce"]}
        self.track_epoch(terms, mean_log_probabilities(scores.detach()), y_l, batch_idx)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """The standard metrics of the mean prediction, and each classifier's accuracy
        (`test/classifier_acc/K`; the code reports their mean)."""
        super().test_step(batch, batch_idx)
        x, y = batch
        scores = self.head_scores(self.features(x))
        for k, accuracy in enumerate(self.classifier_test_acc, start=1):
            accuracy(scores[k - 1], y)
            self.log(f"test/classifier_acc/{k}", accuracy, batch_size=len(y))

    def configure_optimizers(self):
        """By `step_optimizer` (STEP_ROLES picks each update's): `sgd`: the configured
        optimizer over g, f1, f2 (Eq. 1), SGD over g alone (Eq. 5) and over f1, f2 alone
        (Eq. 8), with no scheduler (the code's SGD, rebuilt every minibatch, never reaches its
        milestone); `run`: the configured optimizer once, over g, f1, f2; `separate`: it
        thrice, over each update's parameters. The backbone's unused linear classifier is in
        none. Each configured optimizer gets its scheduler."""
        classifier = set(self.backbone.classifier.parameters())
        features = [p for p in self.backbone.parameters() if p not in classifier]
        classifiers = list(self.heads.parameters())
        run = [self.optimizer_factory([*features, *classifiers])]
        if self.step_optimizer == "separate":
            run += [self.optimizer_factory(features), self.optimizer_factory(classifiers)]
        steps = []
        if self.step_optimizer == "sgd":
            settings = self.step_sgd
            steps = [
                torch.optim.SGD(
                    group,
                    lr=settings.lr,
                    momentum=settings.momentum,
                    weight_decay=settings.weight_decay,
                )
                for group in (features, classifiers)
            ]
        if self.scheduler_factory is None:
            return [*run, *steps], []
        return [*run, *steps], [self.scheduler_factory(optimizer) for optimizer in run]


def check_options(entropy: str, weighting: str, step_optimizer: str) -> None:
    if entropy not in ENTROPIES:
        raise ConfigError(f"method.module.entropy={entropy!r} is not one of paper, code")
    if weighting not in WEIGHTINGS:
        raise ConfigError(f"method.module.weighting={weighting!r} is not one of paper, code")
    if step_optimizer not in STEP_ROLES:
        raise ConfigError(
            f"method.module.step_optimizer={step_optimizer!r} is not one of {', '.join(STEP_ROLES)}"
        )


class AdsSelector(Selector):
    """The highest mean entropy E(u) of the two classifiers first (ADS §Acquisition; the
    candidates are the budget's random `subset`, M = 10,000 as Beluch et al.)."""

    def check_module(self, module: pl.LightningModule) -> None:
        if not isinstance(module, AdsModule):
            raise ConfigError(
                f"AdsSelector reads the two classifiers of ADS's module, but the task module is "
                f"{type(module).__name__}: use method=ads"
            )

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        return module.unlabeled_entropy(x)
