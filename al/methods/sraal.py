"""SRAAL (Zhang et al. 2020): state-relabeling adversarial active learning, as its code.

A unified representation generator (VAE encoder whose latent splits in halves: the first
feeds the reconstructor, the second a classifier trained on the labeled samples) and a
5-layer state discriminator on μ. The discriminator learns labeled → 0 and each unlabeled
sample → its online uncertainty indicator (OUI) from the task learner; the generator pushes
both pools towards 1. Label the candidates with the highest D first (the code's convention).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from al.errors import ConfigError
from al.methods.fitting import fit_network
from al.methods.rank_split import split_across_ranks, split_for_scoring
from al.methods.selector import SelectionRequest, Selector, collect
from al.methods.vaal import DISCRIMINATOR_BATCHES, PoolsAdversary, check_choices
from al.models.vae import (
    DECODERS,
    INITS,
    Discriminator,
    build_vae,
    initialise,
    reparameterize,
    vae_loss,
)
from al.options import NonNegativeFloat, PositiveFloat, PositiveInt, Probability
from al.tasks.extensions import SampleLabels, require

VARIANCES = ("population", "unbiased")


def oui(probs: torch.Tensor, variance: str = "population") -> torch.Tensor:
    """SRAAL's OUI = 1 − m·minvar(m)/var(V) of softmax rows V with maximum m, where
    minvar(m) is the smallest variance of any distribution whose maximum is m. One-hot rows
    give 0; a uniform row (0/0) gives 1. `unbiased` divides var(V) by C − 1 (the code)."""
    classes = probs.shape[1]
    top = probs.max(dim=1).values
    spread = (1 / classes - (1 - top) / (classes - 1)).square()
    least_variance = ((1 / classes - top).square() + (classes - 1) * spread) / classes
    variance_of_row = probs.var(dim=1, unbiased=variance == "unbiased")
    uniform = variance_of_row <= 1e-12
    ratio = least_variance / torch.where(uniform, torch.ones_like(variance_of_row), variance_of_row)
    return torch.where(uniform, torch.ones_like(top), 1 - top * ratio)


class StateClassifier(nn.Module):
    """SRAAL's supervised target learner on the classifier half of the latent code."""

    def __init__(self, inputs: int, classes: int, hidden: Sequence[int] = (1024, 256)) -> None:
        super().__init__()
        widths = [inputs, *hidden]
        layers = [m for a, b in itertools.pairwise(widths) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(*layers, nn.Linear(widths[-1], classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class SraalSelector(Selector):
    """Weights of the generator loss as the code: `recon_weight` 5, KL β 1, `ce_weight` 5,
    `lambda_adv` 1; `vae_steps` generator steps per discriminator step; both Adam
    learning rates ×`lr_decay` every 1/30 of the iterations; `oui_variance`;
    `discriminator_batch` as VAAL's (`shared`: the code's); `init` of all three nets as
    VAAL's (`code`: the code's); `decoder`, the VAE decoder's layer order (`sraal`: the
    code's; `vaal`: VAAL's).

    Segmentation: a candidate's state is its pixels' mean OUI, and the classifier head learns
    which classes each labeled image holds (multi-label, the task's `sample_label_loss`)."""

    tasks = ("classification", "segmentation")

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: PositiveInt,
        latent_dim: PositiveInt = 32,
        beta: NonNegativeFloat = 1.0,
        recon_weight: NonNegativeFloat = 5.0,
        ce_weight: NonNegativeFloat = 5.0,
        lambda_adv: NonNegativeFloat = 1.0,
        lr: PositiveFloat = 5e-4,
        lr_decay: Probability = 0.85,
        epochs_v: PositiveFloat = 100,
        batch_size: PositiveInt = 250,
        vae_steps: PositiveInt = 2,
        oui_variance: str = "population",
        image_size: PositiveInt = 32,
        channels: Sequence[int] = (128, 256, 512, 1024),
        mlp_hidden: PositiveInt = 64,
        discriminator_hidden: PositiveInt = 512,
        classifier_hidden: Sequence[int] = (1024, 256),
        discriminator_batch: str = "shared",
        init: str = "code",
        decoder: str = "sraal",
    ) -> None:
        super().__init__()
        check_choices(
            oui_variance=(oui_variance, VARIANCES),
            discriminator_batch=(discriminator_batch, DISCRIMINATOR_BATCHES),
            init=(init, INITS),
            decoder=(decoder, tuple(DECODERS)),
        )
        if latent_dim % 2:
            raise ConfigError(f"latent_dim={latent_dim} must be even: SRAAL splits it in halves")
        self.input_shape, self.num_classes, self.latent_dim = (
            list(input_shape),
            num_classes,
            latent_dim,
        )
        self.weights = {"beta": beta, "recon": recon_weight, "ce": ce_weight, "adv": lambda_adv}
        self.lr, self.lr_decay, self.epochs_v = lr, lr_decay, epochs_v
        self.batch_size, self.vae_steps, self.oui_variance = batch_size, vae_steps, oui_variance
        self.vae_sizes = {"image_size": image_size, "channels": channels, "hidden": mlp_hidden}
        self.discriminator_hidden, self.classifier_hidden = discriminator_hidden, classifier_hidden
        self.discriminator_batch, self.init, self.decoder = discriminator_batch, init, decoder

    def check_module(self, module: pl.LightningModule) -> None:
        require(module.task, SampleLabels, "SRAAL's classifier head")

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(request.seed)
        self.task = module.task
        device = module.device
        half = self.latent_dim // 2
        vae = build_vae(
            self.input_shape, self.latent_dim, False, half, self.decoder, **self.vae_sizes
        )
        nets = nn.ModuleDict(
            {
                "vae": vae,
                "classifier": StateClassifier(half, self.num_classes, self.classifier_hidden),
                "discriminator": Discriminator(
                    self.latent_dim, self.discriminator_hidden, linear_layers=5
                ),
            }
        )
        for network in nets.values():
            initialise(network, self.init)
        nets = nets.to(device)
        _, labeled = collect(request.labeled, vae.prepare, device)
        candidate_ids, candidates = collect(request.candidates, vae.prepare, device)
        _, states = collect(
            request.candidates,
            lambda x: module.task.reduce_scores(
                oui(F.softmax(module(x).float(), 1), self.oui_variance)
            ),
            device,
        )
        with torch.enable_grad():
            self.train_adversary(
                nets, labeled, request.labeled_labels.to(device), candidates, states
            )
        nets.eval()
        encoder = split_for_scoring(vae, ("encode",))
        discriminator = split_for_scoring(nets["discriminator"])
        with torch.no_grad():
            scores = torch.cat(
                [
                    discriminator(encoder.encode(chunk)[0])
                    for chunk in candidates.split(self.batch_size)
                ]
            ).cpu()
        return self.ties.top_k(candidate_ids, scores, request.query)

    def train_adversary(self, nets, labeled, labels, candidates, states) -> None:
        """`epochs_v` passes, each iteration `vae_steps` generator steps and one state
        discriminator step, fitted with the stage's Trainer settings (`fitting_like`)."""
        adversary = SraalAdversary(self, nets, labeled, labels, candidates, states)
        fit_network(adversary, adversary.steps(), self.fitting_like)

    def generator_loss(self, nets, x_l, y_l, x_u) -> torch.Tensor:
        """5·MSE + KL on both pools, 5·CE of the classifier half on labeled (the task's
        sample-label loss), BCE(D, 1) on both."""
        vae, w = nets["vae"], self.weights
        total = 0.0
        mus = []
        for x in (x_l, x_u):
            mu, logvar = vae.encode(x)
            z = reparameterize(mu, logvar)
            total = total + vae_loss(
                vae.decode(z, None), x, mu, logvar, w["beta"], "batchmean", w["recon"]
            )
            mus.append((mu, z))
        (mu_l, z_l), (mu_u, _) = mus
        total = total + w["ce"] * self.task.sample_label_loss(
            nets["classifier"](z_l[:, vae.decoder_dims :]), y_l
        )
        states = [nets["discriminator"](mu) for mu in (mu_l, mu_u)]
        return total + w["adv"] * sum(F.binary_cross_entropy(s, torch.ones_like(s)) for s in states)

    def discriminator_loss(self, nets, x_l, x_u, states_u) -> torch.Tensor:
        """BCE(D(μ_L), 0) + BCE(D(μ_U), OUI(x_U)), μ without gradient."""
        with torch.no_grad():
            mu_l, mu_u = nets["vae"].encode(x_l)[0], nets["vae"].encode(x_u)[0]
        predicted_l, predicted_u = nets["discriminator"](mu_l), nets["discriminator"](mu_u)
        return F.binary_cross_entropy(predicted_l, torch.zeros_like(predicted_l)) + (
            F.binary_cross_entropy(predicted_u, states_u)
        )


class SraalAdversary(PoolsAdversary):
    """The networks of a `SraalSelector` (its losses, learning rates and batch settings), one
    update per training step; both learning rates decay every 1/30 of the iterations."""

    def __init__(self, selector: SraalSelector, nets, labeled, labels, candidates, states) -> None:
        super().__init__(selector, labeled, candidates)
        self.nets, self.labels, self.states = nets, labels, states

    def split_networks(self, rank: int, world: int) -> None:
        methods = {"vae": ("encode", "decode")}
        self.nets = nn.ModuleDict(
            {
                name: split_across_ranks(net, rank, world, methods.get(name, ()))
                for name, net in self.nets.items()
            }
        )

    def training_step(self, step_index: int, batch_idx: int) -> None:
        selector = self.selector
        _, step, _ = self.draw(batch_idx)
        ids_l, ids_u = self.ids
        generator_optimizer, discriminator_optimizer = self.optimizers()
        if step < selector.vae_steps:
            x_l, y_l, x_u = self.labeled[ids_l], self.labels[ids_l], self.candidates[ids_u]
            self.update(selector.generator_loss(self.nets, x_l, y_l, x_u), generator_optimizer)
            return
        x_l, x_u, states_u = self.labeled[ids_l], self.candidates[ids_u], self.states[ids_u]
        loss = selector.discriminator_loss(self.nets, x_l, x_u, states_u)
        self.update(loss, discriminator_optimizer)
        for scheduler in self.lr_schedulers():
            scheduler.step()

    def configure_optimizers(self):
        generator = [*self.nets["vae"].parameters(), *self.nets["classifier"].parameters()]
        optimizers = [
            torch.optim.Adam(generator, lr=self.selector.lr),
            torch.optim.Adam(self.nets["discriminator"].parameters(), lr=self.selector.lr),
        ]
        step_size = max(1, self.iterations // 30)
        schedulers = [
            torch.optim.lr_scheduler.StepLR(optimizer, step_size, self.selector.lr_decay)
            for optimizer in optimizers
        ]
        return optimizers, schedulers
