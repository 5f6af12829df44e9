"""The initial labeled pool: uniform at random (over every class, or an equal share of some
classes), SRAAL's k-center greedy in the latent space of a VAE trained on the whole
(unlabeled) pool, or a cold-start selection (TypiClust, ProbCover) on the pool's features."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from al.budget import class_shares
from al.data import ALData
from al.data.base import TensorInputs
from al.errors import ConfigError
from al.methods.cold_start import unit_rows
from al.methods.coreset import k_center_greedy
from al.methods.fitting import StepNetwork, fit_network
from al.methods.probcover import ProbCoverSelector
from al.methods.selector import Selector, TieBreak
from al.methods.typiclust import TypiClustSelector
from al.methods.vaal import shuffled_batches
from al.models.vae import build_vae, vae_loss
from al.pool import random_initial, stage_rng


@dataclass(frozen=True)
class KCenterSettings:
    """The VAE behind `initial_strategy=kcenter`: trained `epochs` passes on the pool."""

    latent_dim: int = 32
    epochs: int = 10
    batch_size: int = 128
    lr: float = 5e-4
    image_size: int = 32
    channels: tuple[int, ...] = (32, 64, 128, 256)
    mlp_hidden: int = 64


def initial_indices(
    strategy: str,
    data: ALData,
    size: int,
    seed: int,
    settings: KCenterSettings,
    classes: Sequence[int] | None = None,
    like: pl.Trainer | None = None,
    make_selector: Callable[[], Selector] | None = None,
) -> np.ndarray:
    """`size` distinct pool indices, chosen by `strategy` from (data, seed) alone; with
    `classes`, an equal share of each (`class_shares`) drawn at random among its samples;
    `kcenter`'s pool VAE trains on one of `like`'s devices in its precision; TypiClust and
    ProbCover take the run's own selector's settings when it is theirs (`make_selector`)."""
    pool_size = len(data.pool_targets)
    if strategy == "random" and classes is not None:
        return class_initial(data.pool_targets, classes, size, seed)
    if strategy == "random":
        return random_initial(pool_size, size, seed)
    if strategy in COLD_START:
        return cold_start_initial(strategy, data, size, seed, make_selector)
    kcenter_seed = int(stage_rng(seed, 0, "kcenter").integers(2**31 - 1))
    torch.manual_seed(kcenter_seed)
    latents = pool_latents(data, settings, like)
    first = int(torch.randint(pool_size, (1,)))
    ties = TieBreak(kcenter_seed)
    picks, _ = k_center_greedy(latents, latents[first : first + 1], size - 1, ties)
    return np.array([first, *picks.tolist()])


COLD_START = ("typiclust", "probcover")


def cold_start_initial(
    strategy: str,
    data: ALData,
    size: int,
    seed: int,
    make_selector: Callable[[], Selector] | None = None,
) -> np.ndarray:
    """TypiClust's or ProbCover's first `size` picks with nothing labeled, on the pool's
    feature vectors (embedding mode's features, or a vector dataset's inputs), with the run's
    selector when it is the strategy's (`method=probcover method.selector.delta=0.3` sets the
    initial pool's δ too), else the selector's defaults (al.methods.typiclust, probcover)."""
    inputs = data.pool.inputs
    if not isinstance(inputs, TensorInputs) or inputs.x.dim() != 2:
        raise ConfigError(
            f"budget.initial_strategy={strategy} clusters feature vectors, and this pool holds "
            "images: add embedding=linear (with representation=simclr, or a pretrained model)"
        )
    kind = TypiClustSelector if strategy == "typiclust" else ProbCoverSelector
    own = None if make_selector is None else make_selector()
    selector = own if isinstance(own, kind) else kind()
    features = inputs.x.float().numpy()
    rows = unit_rows(features) if selector.normalize else features
    nothing = np.zeros(len(rows), dtype=bool)
    ties = TieBreak(int(stage_rng(seed, 0, strategy).integers(2**31 - 1)))
    if strategy == "typiclust":
        return selector.picks(rows, nothing, size, ties, seed)[0]
    return selector.picks(rows, nothing, size, ties, seed, data.num_classes)[0]


def class_initial(targets: np.ndarray, classes: Sequence[int], size: int, seed: int) -> np.ndarray:
    """`class_shares(size)` random samples of each class in `classes`, from `seed` alone."""
    rng = stage_rng(seed, 0, "initial")
    shares = class_shares(size, len(classes))
    picks = [
        rng.choice(np.flatnonzero(targets == label), share, replace=False)
        for label, share in zip(classes, shares, strict=True)
    ]
    return np.concatenate(picks)


def pool_latents(
    data: ALData, settings: KCenterSettings, like: pl.Trainer | None = None
) -> torch.Tensor:
    """μ of every pool sample (test-time transforms) under a β-VAE trained on the pool, on one
    of `like`'s devices in its precision (every rank computes the same pool)."""
    vae = build_vae(
        data.input_shape(),
        settings.latent_dim,
        False,
        image_size=settings.image_size,
        channels=settings.channels,
        hidden=settings.mlp_hidden,
    )
    loader = DataLoader(data.pool.unlabeled(range(len(data.pool))), batch_size=256)
    with torch.no_grad():
        inputs = torch.cat([vae.prepare(x) for x, _ in loader])
    network = PoolVae(vae, inputs, settings)
    steps = math.ceil(len(inputs) * settings.epochs / settings.batch_size)
    fit_network(network, steps, like, distributed=False)
    inputs = inputs.to(network.device)
    vae.eval()
    with torch.no_grad():
        return torch.cat([vae.encode(inputs[i : i + 256])[0] for i in range(0, len(inputs), 256)])


class PoolVae(StepNetwork):
    """The pool VAE of `pool_latents`: one β-VAE step (β = 1) per training step on a batch of
    the pool's inputs, a fresh permutation every pass."""

    def __init__(self, vae: nn.Module, inputs: torch.Tensor, settings: KCenterSettings) -> None:
        super().__init__()
        self.vae, self.inputs, self.settings = vae, inputs, settings

    def on_train_start(self) -> None:
        super().on_train_start()
        self.inputs = self.inputs.to(self.device)
        self.batches = shuffled_batches(len(self.inputs), self.settings.batch_size, self.device)

    def training_step(self, step_index: int, batch_idx: int) -> None:
        batch = self.inputs[next(self.batches)]
        reconstruction, mu, logvar, _ = self.vae(batch)
        self.update(vae_loss(reconstruction, batch, mu, logvar, beta=1.0), self.optimizers())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.vae.parameters(), lr=self.settings.lr)
