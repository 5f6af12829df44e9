"""The initial labeled pool: uniform at random (over every class, or an equal share of some
classes: a cold start), or SRAAL's k-center greedy in the latent space of a VAE trained on the
whole (unlabeled) pool."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from al.budget import class_shares
from al.data import ALData
from al.methods.coreset import k_center_greedy
from al.methods.selector import TieBreak
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
) -> np.ndarray:
    """`size` distinct pool indices, chosen by `strategy` from (data, seed) alone; with
    `classes`, an equal share of each (`class_shares`) drawn at random among its samples."""
    pool_size = len(data.pool_targets)
    if strategy == "random" and classes is not None:
        return class_initial(data.pool_targets, classes, size, seed)
    if strategy == "random":
        return random_initial(pool_size, size, seed)
    kcenter_seed = int(stage_rng(seed, 0, "kcenter").integers(2**31 - 1))
    torch.manual_seed(kcenter_seed)
    latents = pool_latents(data, settings)
    first = int(torch.randint(pool_size, (1,)))
    ties = TieBreak(kcenter_seed)
    picks, _ = k_center_greedy(latents, latents[first : first + 1], size - 1, ties)
    return np.array([first, *picks.tolist()])


def class_initial(targets: np.ndarray, classes: Sequence[int], size: int, seed: int) -> np.ndarray:
    """`class_shares(size)` random samples of each class in `classes`, from `seed` alone."""
    rng = stage_rng(seed, 0, "initial")
    shares = class_shares(size, len(classes))
    picks = [
        rng.choice(np.flatnonzero(targets == label), share, replace=False)
        for label, share in zip(classes, shares, strict=True)
    ]
    return np.concatenate(picks)


def pool_latents(data: ALData, settings: KCenterSettings) -> torch.Tensor:
    """μ of every pool sample (test-time transforms) under a β-VAE trained on the pool."""
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
    optimizer = torch.optim.Adam(vae.parameters(), lr=settings.lr)
    batches = shuffled_batches(len(inputs), settings.batch_size, inputs.device)
    vae.train()
    for _ in range(math.ceil(len(inputs) * settings.epochs / settings.batch_size)):
        batch = inputs[next(batches)]
        reconstruction, mu, logvar, _ = vae(batch)
        loss = vae_loss(reconstruction, batch, mu, logvar, beta=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    vae.eval()
    with torch.no_grad():
        return torch.cat([vae.encode(inputs[i : i + 256])[0] for i in range(0, len(inputs), 256)])
