"""VAAL (Sinha et al. 2019): a β-VAE and a discriminator trained adversarially on the labeled
samples and the candidates; label the candidates the discriminator finds least "labeled".

The VAE/discriminator pair is trained by the selector, after the task learner, on the
test-time-transformed images the selection request serves (labeled ∪ candidates), with its
own two Adam optimizers stepped in the paper's order: `vae_steps` VAE steps, then one
discriminator step, per iteration. It is a LightningModule (`VaalAdversary`) fitted with the
run's accelerator, precision and strategy (`al.methods.fitting`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from al.errors import ConfigError
from al.methods.discriminator import DISCRIMINATOR_METRICS, discriminator_metrics
from al.methods.fitting import StepNetwork, fit_network
from al.methods.rank_split import split_across_ranks, split_for_scoring
from al.methods.selector import (
    SelectionRequest,
    Selector,
    collect,
)
from al.models.vae import INITS, Discriminator, build_vae, initialise, reconstruct, vae_loss
from al.options import NonNegativeFloat, PositiveFloat, PositiveInt

KL_REDUCTIONS = ("sum", "mean", "batchmean")
DISCRIMINATOR_BATCHES = ("shared", "fresh")


class VaalSelector(Selector):
    """`latent_dim`, `beta` (β), `lambda_adv` (λ), learning rates, `epochs_v` passes over
    labeled ∪ candidates in `batch_size` batches, `vae_steps` per discriminator step, `kl`
    sum (VAAL code) or mean (TA-VAAL code); the VAE's `image_size`, conv `channels`,
    `mlp_hidden` (vector data) and the discriminator's `discriminator_hidden` width and
    `discriminator_layers` linear layers (3 in both codes; TA-VAAL §4.1's toy: 2); `init`
    of both nets (`code`, `kaiming` or PyTorch's `default`: see `al.models.vae.initialise`);
    `discriminator_batch`: `shared` (both codes: the discriminator step reuses the last VAE
    step's batch and its U(0, 1) draw) or `fresh` (its own)."""

    tasks = ("classification", "segmentation")

    rank_conditioned = False
    reported_metrics = DISCRIMINATOR_METRICS

    def __init__(
        self,
        input_shape: Sequence[int],
        latent_dim: PositiveInt = 32,
        beta: NonNegativeFloat = 1.0,
        lambda_adv: NonNegativeFloat = 1.0,
        lr_vae: PositiveFloat = 5e-4,
        lr_discriminator: PositiveFloat = 5e-4,
        epochs_v: PositiveFloat = 100,
        batch_size: PositiveInt = 128,
        vae_steps: PositiveInt = 2,
        kl: str = "sum",
        image_size: PositiveInt = 32,
        channels: Sequence[int] = (128, 256, 512, 1024),
        mlp_hidden: PositiveInt = 64,
        discriminator_hidden: PositiveInt = 512,
        discriminator_layers: PositiveInt = 3,
        init: str = "code",
        discriminator_batch: str = "shared",
    ) -> None:
        super().__init__()
        check_choices(
            kl=(kl, KL_REDUCTIONS),
            init=(init, INITS),
            discriminator_batch=(discriminator_batch, DISCRIMINATOR_BATCHES),
        )
        if discriminator_layers < 2:
            raise ConfigError(
                f"discriminator_layers={discriminator_layers}: the discriminator needs at least "
                "2 linear layers (one hidden layer)"
            )
        self.input_shape, self.latent_dim = list(input_shape), latent_dim
        self.beta, self.lambda_adv, self.kl = beta, lambda_adv, kl
        self.lr_vae, self.lr_discriminator = lr_vae, lr_discriminator
        self.epochs_v, self.batch_size, self.vae_steps = epochs_v, batch_size, vae_steps
        self.vae_sizes = {"image_size": image_size, "channels": channels, "hidden": mlp_hidden}
        self.discriminator_hidden = discriminator_hidden
        self.discriminator_layers = discriminator_layers
        self.init, self.discriminator_batch = init, discriminator_batch

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        torch.manual_seed(request.seed)
        vae = build_vae(self.input_shape, self.latent_dim, self.rank_conditioned, **self.vae_sizes)
        discriminator = Discriminator(
            self.latent_dim,
            self.discriminator_hidden,
            self.rank_conditioned,
            self.discriminator_layers,
        )
        initialise(vae, self.init)
        initialise(discriminator, self.init)
        vae, discriminator = vae.to(module.device), discriminator.to(module.device)
        _, labeled = collect(request.labeled, vae.prepare, module.device)
        candidate_ids, candidates = collect(request.candidates, vae.prepare, module.device)
        ranks = self.ranks(module, request)
        with torch.enable_grad():
            self.train_adversary(vae, discriminator, labeled, candidates, ranks)
        labeled_probability = self.discriminate(vae, discriminator, candidates, ranks)
        self.keep_diagnostics(vae, discriminator, labeled, ranks, request, candidate_ids)
        self.diagnostics["candidate_discriminator"] = labeled_probability.numpy()
        self.metrics = discriminator_metrics(
            torch.from_numpy(self.diagnostics["labeled_discriminator"]), labeled_probability
        )
        return self.ties.top_k(candidate_ids, 1.0 - labeled_probability, request.query)

    def keep_diagnostics(self, vae, discriminator, labeled, ranks, request, candidate_ids):
        """D(μ) of the labeled samples too (TA-VAAL Fig. 8: labeled vs unlabeled likelihood),
        and, where there is a ranker, everyone's predicted loss (Fig. 7b), with indices."""
        labeled_ids = torch.cat([indices for _, indices in request.labeled])
        self.diagnostics["labeled_index"] = labeled_ids.numpy()
        self.diagnostics["candidate_index"] = candidate_ids.cpu().numpy()
        self.diagnostics["labeled_discriminator"] = self.discriminate(
            vae, discriminator, labeled, ranks, labeled=True
        ).numpy()
        if ranks is not None:
            self.diagnostics["labeled_predicted_loss"] = ranks[0].detach().cpu().numpy()
            self.diagnostics["candidate_predicted_loss"] = ranks[1].detach().cpu().numpy()

    def ranks(self, module: pl.LightningModule, request: SelectionRequest):
        """Per-sample conditioning of (labeled, candidates); VAAL has none."""
        return None

    def iteration_conditions(self, iteration, ranks, labeled_batch, candidate_batch):
        """(decoder, discriminator) conditions of (labeled, candidate) batches; VAAL: none."""
        return (None, None), (None, None)

    def train_adversary(
        self,
        vae: nn.Module,
        discriminator: nn.Module,
        labeled: torch.Tensor,
        candidates: torch.Tensor,
        ranks,
    ) -> None:
        """`epochs_v` passes over labeled ∪ candidates, each iteration `vae_steps` VAE steps and
        one discriminator step, fitted with the stage's Trainer settings (`fitting_like`)."""
        adversary = VaalAdversary(self, vae, discriminator, labeled, candidates, ranks)
        fit_network(adversary, adversary.steps(), self.fitting_like)

    def vae_objective(self, vae, discriminator, x_l, x_u, decode_l, decode_u, judge_l, judge_u):
        """recon + β·KL on both pools + λ·BCE(D(·), 1) on both: fool D into "labeled"."""
        recon_l, mu_l, logvar_l, _ = reconstruct(vae, x_l, decode_l)
        recon_u, mu_u, logvar_u, _ = reconstruct(vae, x_u, decode_u)
        reconstruction = vae_loss(recon_l, x_l, mu_l, logvar_l, self.beta, self.kl) + vae_loss(
            recon_u, x_u, mu_u, logvar_u, self.beta, self.kl
        )
        fooled_l, fooled_u = discriminator(mu_l, judge_l), discriminator(mu_u, judge_u)
        adversarial = F.binary_cross_entropy(
            fooled_l, torch.ones_like(fooled_l)
        ) + F.binary_cross_entropy(fooled_u, torch.ones_like(fooled_u))
        return reconstruction + self.lambda_adv * adversarial

    def discriminator_objective(
        self, vae, discriminator, x_l, x_u, decode_l, decode_u, judge_l, judge_u
    ):
        """BCE with labeled = 1 and unlabeled = 0, on μ computed without gradient."""
        with torch.no_grad():
            mu_l, mu_u = vae.encode(x_l)[0], vae.encode(x_u)[0]
        real_l, real_u = discriminator(mu_l, judge_l), discriminator(mu_u, judge_u)
        return F.binary_cross_entropy(real_l, torch.ones_like(real_l)) + F.binary_cross_entropy(
            real_u, torch.zeros_like(real_u)
        )

    @torch.no_grad()
    def discriminate(
        self, vae, discriminator, inputs: torch.Tensor, ranks, labeled: bool = False
    ) -> torch.Tensor:
        """D(μ) of every candidate — or, with `labeled`, of every labeled sample — in eval
        mode with the trained ranks: the probability "labeled"."""
        vae.eval()
        discriminator.eval()
        vae, discriminator = split_for_scoring(vae, ("encode",)), split_for_scoring(discriminator)
        everyone = torch.arange(len(inputs), device=inputs.device)
        sides = (everyone, everyone[:0]) if labeled else (everyone[:0], everyone)
        _, judge = self.iteration_conditions(1, ranks, *sides)[0 if labeled else 1]
        probabilities = [
            discriminator(vae.encode(inputs[chunk])[0], None if judge is None else judge[chunk])
            for chunk in everyone.split(self.batch_size)
        ]
        return torch.cat(probabilities).cpu()


def check_choices(**choices: tuple[str, Sequence[str]]) -> None:
    """Refuse `method.selector.KEY=value` where `choices[KEY]` is (value, the allowed ones) and
    value is not among them."""
    for key, (value, allowed) in choices.items():
        if value not in allowed:
            raise ConfigError(f"method.selector.{key}={value!r} is not one of {', '.join(allowed)}")


def draws_batch(step: int, vae_steps: int, discriminator_batch: str) -> bool:
    """Whether step `step` of an iteration (VAE steps 0 … vae_steps − 1, then the
    discriminator's) draws a batch of its own: every VAE step does; the discriminator step only
    with `fresh` (`shared`: it reuses the last VAE step's)."""
    return step < vae_steps or discriminator_batch == "fresh"


def shuffled_batches(count: int, size: int, device: torch.device) -> Iterator[torch.Tensor]:
    """Endless minibatch indices: a fresh permutation of `count` for every pass."""
    while True:
        order = torch.randperm(count, device=device)
        for start in range(0, count, size):
            yield order[start : start + size]


class PoolsAdversary(StepNetwork):
    """Networks a selector trains on batches of its labeled samples and its candidates drawn
    together (the selector's settings): `epochs_v` passes over both in batches of `batch_size`
    (the whole batch across DDP ranks, as the paper's on one device), each iteration
    `vae_steps` generator steps and one discriminator step, which draws a batch of its own or
    reuses the last (`discriminator_batch`)."""

    def __init__(self, selector: Selector, labeled: torch.Tensor, candidates: torch.Tensor) -> None:
        super().__init__()
        self.selector, self.labeled, self.candidates = selector, labeled, candidates
        self.ids: tuple[torch.Tensor, torch.Tensor] | None = None
        self.iterations = 1

    def steps(self) -> int:
        """The updates of `epochs_v` passes (on any number of ranks)."""
        total = len(self.labeled) + len(self.candidates)
        selector = self.selector
        self.iterations = math.ceil(total * selector.epochs_v / selector.batch_size)
        return self.iterations * (selector.vae_steps + 1)

    def on_train_start(self) -> None:
        super().on_train_start()
        size, device = self.selector.batch_size, self.labeled.device
        self.labeled_batches = shuffled_batches(len(self.labeled), size, device)
        self.candidate_batches = shuffled_batches(len(self.candidates), size, device)

    def draw(self, batch_idx: int) -> tuple[int, int, bool]:
        """(iteration, step within it, whether it drew) of training step `batch_idx`; a step
        that draws leaves fresh (labeled, candidate) indices in `ids` (alike on every rank)."""
        selector = self.selector
        iteration, step = divmod(batch_idx, selector.vae_steps + 1)
        drew = draws_batch(step, selector.vae_steps, selector.discriminator_batch)
        if drew:
            self.ids = (next(self.labeled_batches), next(self.candidate_batches))
        return iteration, step, drew


class VaalAdversary(PoolsAdversary):
    """The VAE and discriminator of a `VaalSelector` (its objectives, optimizers and batch
    settings), one update per training step in the paper's order."""

    def __init__(
        self,
        selector: VaalSelector,
        vae: nn.Module,
        discriminator: nn.Module,
        labeled: torch.Tensor,
        candidates: torch.Tensor,
        ranks,
    ) -> None:
        super().__init__(selector, labeled, candidates)
        self.vae, self.discriminator, self.ranks = vae, discriminator, ranks
        self.batch: tuple = ()

    def split_networks(self, rank: int, world: int) -> None:
        self.vae = split_across_ranks(self.vae, rank, world, ("encode", "decode"))
        self.discriminator = split_across_ranks(self.discriminator, rank, world)

    def training_step(self, step_index: int, batch_idx: int) -> None:
        selector = self.selector
        iteration, step, drew = self.draw(batch_idx)
        if drew:
            ids_l, ids_u = self.ids
            (decode_l, judge_l), (decode_u, judge_u) = selector.iteration_conditions(
                iteration, self.ranks, ids_l, ids_u
            )
            x_l, x_u = self.labeled[ids_l], self.candidates[ids_u]
            self.batch = (x_l, x_u, decode_l, decode_u, judge_l, judge_u)
        vae_optimizer, discriminator_optimizer = self.optimizers()
        if step < selector.vae_steps:
            loss = selector.vae_objective(self.vae, self.discriminator, *self.batch)
            self.update(loss, vae_optimizer)
        else:
            loss = selector.discriminator_objective(self.vae, self.discriminator, *self.batch)
            self.update(loss, discriminator_optimizer)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            torch.optim.Adam(self.vae.parameters(), lr=self.selector.lr_vae),
            torch.optim.Adam(self.discriminator.parameters(), lr=self.selector.lr_discriminator),
        ]
