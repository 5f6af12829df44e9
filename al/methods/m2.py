"""M2 (Kingma et al. 2014) as a task module: the backbone is the classifier q(y|x), trained
with M2's generative networks on the labeled and the unlabeled samples of each stage, and
optionally with M2-VAAL's discriminator on the latent [z, y′] (the M2-VAAL slides).

Per step, the objective J^α of Kingma et al. Eq. 9 divided by the N training points:
(N_L/N)·mean L(x, y) + (N_U/N)·mean U(x) + α/N·mean[−log q(y|x)] over a labeled and an
unlabeled batch, plus, with `adversarial`, λ·[BCE(D(ℓ_L), 1) + BCE(D(ℓ_U), 1)] (the slides'
L_VAE^adv); and the discriminator's L_D = BCE(D(ℓ_L), 1) + BCE(D(ℓ_U), 0). Here
ℓ = [μ_z(x, y′), y′] with y′ = q(y|x) for both pools, so D never sees a true label.

Both updates come from one backward pass, so every parameter takes part in it (DDP needs
no unused-parameter search): the fooling term reads D with its weights detached (it moves M2
only), L_D reads the latents detached (it moves D only). That is the alternating scheme of
VAAL's code with the discriminator judging this step's latents, before M2's update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from al.data.datamodule import UnlabeledTraining
from al.errors import ConfigError, DataError
from al.methods.coreset import exact_distance_blocks
from al.methods.module import (
    ManualSteps,
    OptimizerFactory,
    SchedulerFactory,
    TaskModule,
    check_finite,
)
from al.methods.selector import SelectionRequest, Selector, collect
from al.models.backbone import Backbone
from al.models.m2 import build_m2
from al.models.vae import Discriminator
from al.tasks import Task
from al.tasks.extensions import SampleLabels, require


@dataclass(frozen=True)
class AdversarySettings:
    """M2-VAAL's discriminator: `layers` linear layers of width `hidden` (VAAL's code: 3 ×
    512), its Adam learning rate `lr` (VAAL's 5e-4) and the adversarial weight `lambda_adv`."""

    hidden: int = 512
    layers: int = 3
    lr: float = 5e-4
    lambda_adv: float = 1.0


class M2Module(ManualSteps, TaskModule):
    """Trains q(y|x) (the backbone, what is tested and what score-based selectors read) with
    M2's q(z|x,y) and p(x|y,z) (`build_m2` sizes, `likelihood` gaussian or bernoulli) on
    labeled and unlabeled batches (`unlabeled_batch_size`, `epoch`: `UnlabeledTraining`);
    `alpha` is α/N (the paper's α = 0.1·N). `discriminator` (AdversarySettings, or None)
    adds M2-VAAL's discriminator, trained every step; `adversarial` adds its fooling term to
    the M2 loss (false: the slides' "classifier part only", D is trained but the M2 loss
    carries no discriminator term). `weight_prior`: `normal` adds log p(θ) of N(0, 1) priors
    on every weight of q(y|x) and M2's networks to J^α (Kingma et al.'s code:
    0.5·Σθ²/N a step), `none` leaves it out."""

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: int,
        input_shape: Sequence[int],
        scheduler: SchedulerFactory | None = None,
        latent_dim: int = 50,
        hidden: int = 512,
        conv_channels: Sequence[int] = (32, 64),
        mlp_hidden: int = 500,
        likelihood: str = "gaussian",
        alpha: float = 0.1,
        unlabeled_batch_size: int | None = 128,
        epoch: str = "longest",
        discriminator: Mapping | None = None,
        adversarial: bool = False,
        weight_prior: Literal["none", "normal"] = "none",
        task: Task | None = None,
        train_loss_prediction: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, num_classes, scheduler, task, train_loss_prediction)
        self.automatic_optimization = False
        self.generative = build_m2(
            input_shape, num_classes, latent_dim, hidden, conv_channels, mlp_hidden, likelihood
        )
        self.unlabeled_training = UnlabeledTraining(unlabeled_batch_size, epoch)
        self.alpha, self.adversarial = alpha, adversarial
        if weight_prior not in ("none", "normal"):
            raise ConfigError(f"weight_prior={weight_prior!r} is not one of none, normal")
        self.weight_prior = weight_prior
        self.adversary = None if discriminator is None else AdversarySettings(**discriminator)
        if adversarial and self.adversary is None:
            raise ConfigError(
                "adversarial=true needs a discriminator: set method.module.discriminator "
                "(e.g. as conf/method/m2_vaal.yaml) or adversarial=false"
            )
        self.discriminator = None
        if self.adversary is not None:
            self.discriminator = Discriminator(
                latent_dim + num_classes, self.adversary.hidden, False, self.adversary.layers
            )
        self.pool_weights = (1.0, 1.0)
        self.training_points = 1

    def on_fit_start(self) -> None:
        """The pools' shares of the N training points weigh their bounds (J^α / N)."""
        super().on_fit_start()
        datamodule = self.trainer.datamodule
        total = datamodule.labeled_count + datamodule.unlabeled_count
        self.pool_weights = (datamodule.labeled_count / total, datamodule.unlabeled_count / total)
        self.training_points = total

    def m2_parameters(self) -> list[torch.nn.Parameter]:
        """q(y|x)'s and M2's generative networks' parameters (not the discriminator's)."""
        return [*self.backbone.parameters(), *self.generative.parameters()]

    def negative_log_prior(self) -> torch.Tensor:
        """−log p(θ)/N for N(0, 1) priors on M2's weights, up to a constant: 0.5·Σθ²/N."""
        squares = sum(parameter.square().sum() for parameter in self.m2_parameters())
        return 0.5 * squares / self.training_points

    def latent_code(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ_z(x, y′), y′) with y′ = q(y|x): where x sits in M2's latent space."""
        probabilities = F.softmax(self(x), dim=1)
        return self.generative.latent(x, probabilities), probabilities

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D([μ_z, y′]): the discriminator's probability that x is labeled."""
        if self.discriminator is None:
            raise ConfigError(
                "this M2 module has no discriminator: set method.module.discriminator"
            )
        return self.discriminator(torch.cat(self.latent_code(x), dim=1))

    def m2_losses(
        self, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The weighted terms of J^α/N (and the adversarial term), with the labeled batch's
        logits and both batches' latents ℓ for the discriminator step."""
        logits_l, logits_u = self(x_l), self(x_u)
        q_l, q_u = F.softmax(logits_l, dim=1), F.softmax(logits_u, dim=1)
        one_hot = F.one_hot(y_l, q_l.shape[1]).to(x_l.dtype)
        weight_l, weight_u = self.pool_weights
        losses = {
            "labeled_bound": weight_l * self.generative.labeled_bound(x_l, one_hot).mean(),
            "unlabeled_bound": weight_u * self.generative.unlabeled_bound(x_u, q_u).mean(),
            "ce": self.alpha * F.cross_entropy(logits_l, y_l),
        }
        if self.weight_prior == "normal":
            losses["weight_prior"] = self.negative_log_prior()
        latent_l = torch.cat([self.generative.latent(x_l, q_l), q_l], dim=1)
        latent_u = torch.cat([self.generative.latent(x_u, q_u), q_u], dim=1)
        if self.adversarial:
            fooled = bce_to(self.frozen_discriminator(latent_l), 1.0) + bce_to(
                self.frozen_discriminator(latent_u), 1.0
            )
            losses["adversarial"] = self.adversary.lambda_adv * fooled
        return losses, logits_l, (latent_l, latent_u)

    def frozen_discriminator(self, latent: torch.Tensor) -> torch.Tensor:
        """D(ℓ) with D's weights detached: a gradient for ℓ (so for M2) and none for D."""
        weights = {name: p.detach() for name, p in self.discriminator.named_parameters()}
        return torch.func.functional_call(self.discriminator, weights, (latent,))

    def discriminator_loss(self, latent_l: torch.Tensor, latent_u: torch.Tensor) -> torch.Tensor:
        """L_D on latents detached from M2: labeled → 1, unlabeled → 0."""
        judged_l = self.discriminator(latent_l.detach())
        judged_u = self.discriminator(latent_u.detach())
        return bce_to(judged_l, 1.0) + bce_to(judged_u, 0.0)

    def training_step(self, batch: dict, batch_idx: int) -> None:
        (x_l, y_l), (x_u, _) = batch["labeled"], batch["unlabeled"]
        if batch_idx == 0 and self.current_epoch == 0:
            self.check_input_range(x_l)
        losses, logits_l, latents = self.m2_losses(x_l, y_l, x_u)
        loss = sum(losses.values())
        check_finite(loss, self.current_epoch, batch_idx)
        both = loss
        if self.discriminator is not None:
            losses["discriminator"] = self.discriminator_loss(*latents)
            both = loss + losses["discriminator"]
        self.apply_update(both, *self.optimizer_list())
        self.track_epoch({**losses, "loss": loss}, logits_l, y_l, batch_idx)

    def check_input_range(self, x: torch.Tensor) -> None:
        """A Bernoulli likelihood models inputs in [0, 1] only."""
        low, high = x.min().item(), x.max().item()
        if self.generative.likelihood == "bernoulli" and (low < 0 or high > 1):
            raise DataError(
                f"likelihood=bernoulli needs inputs in [0, 1], but this dataset's lie in "
                f"[{low:.2f}, {high:.2f}] (normalised): set method.module.likelihood=gaussian"
            )

    def configure_optimizers(self):
        """The configured optimizer over q(y|x) and M2's networks; Adam for D."""
        optimizer = self.optimizer_factory(self.m2_parameters())
        optimizers = [optimizer]
        if self.discriminator is not None:
            optimizers.append(
                torch.optim.Adam(self.discriminator.parameters(), lr=self.adversary.lr)
            )
        schedulers = [] if self.scheduler_factory is None else [self.scheduler_factory(optimizer)]
        return optimizers, schedulers


@dataclass
class LatentPools:
    """M2's latent μ_z of the labeled samples and the candidates, with q(y|x) of both and the
    known labels of the labeled ones (what the latent-distance selectors read)."""

    candidate_indices: torch.Tensor
    candidate_latents: torch.Tensor
    candidate_probabilities: torch.Tensor
    labeled_latents: torch.Tensor
    labeled_predictions: torch.Tensor
    labeled_labels: torch.Tensor

    def anchors(self, label: int) -> torch.Tensor:
        """The slides' anchor points of class `label`: labeled samples of that class the model
        classifies correctly; with none, every labeled sample (the farthest-from-all rule)."""
        correct = (self.labeled_labels == label) & (self.labeled_predictions == label)
        return self.labeled_latents[correct] if correct.any() else self.labeled_latents


class LatentSelector(Selector):
    """A selector that reads M2's latent space (`latent_pools`)."""

    def check_module(self, module: pl.LightningModule) -> None:
        if not isinstance(module, M2Module):
            raise ConfigError(
                f"this selector reads M2's latent space, but the task module is "
                f"{type(module).__name__}: use the M2 module (conf/task_module/m2.yaml)"
            )
        require(module.task, SampleLabels, f"{type(self).__name__}'s class anchors")


def latent_pools(module: pl.LightningModule, request: SelectionRequest) -> LatentPools:
    """Encode the request's labeled samples and candidates with the M2 module's `latent_code`."""

    def encode(x: torch.Tensor) -> torch.Tensor:
        return torch.cat(module.latent_code(x), dim=1)

    _, labeled = collect(request.labeled, encode, module.device)
    candidate_indices, candidates = collect(request.candidates, encode, module.device)
    classes = labeled.shape[1] - module.generative.latent_dim
    return LatentPools(
        candidate_indices=candidate_indices,
        candidate_latents=candidates[:, :-classes],
        candidate_probabilities=candidates[:, -classes:],
        labeled_latents=labeled[:, :-classes],
        labeled_predictions=labeled[:, -classes:].argmax(1),
        labeled_labels=request.labeled_labels.to(module.device),
    )


def distance_sums(points: torch.Tensor, anchors: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Σ_a ‖p − a‖ for every point p: exact Euclidean distances in chunk × chunk blocks, so
    memory stays O(chunk²) however many points and anchors."""
    sums = torch.zeros(len(points), device=points.device)
    for rows, distances in exact_distance_blocks(points, anchors, chunk):
        sums[rows] += distances.sum(1)
    return sums


def bce_to(probability: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy(probability, torch.full_like(probability, target))
