"""The initial pool: random, or k-center greedy in the latent space of a pool VAE (SRAAL)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al.budget import Budget
from al.data import ALData, ArrayDataset, PoolInputs, TensorInputs
from al.errors import ConfigError
from al.initial import KCenterSettings, initial_indices
from al.loop import run

SMALL_VAE = KCenterSettings(latent_dim=2, epochs=30, batch_size=32, lr=0.01, mlp_hidden=16)


def three_clusters() -> ALData:
    """60 points in three tight, far-apart clusters of 20 (labels = cluster)."""
    generator = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [40.0, 0.0], [0.0, 40.0]])
    labels = torch.arange(60) % 3
    x = centers[labels] + 0.05 * torch.randn(60, 2, generator=generator)
    return ALData(PoolInputs(TensorInputs(x)), ArrayDataset(x, labels), labels.numpy(), 3)


def test_kcenter_covers_every_cluster_and_is_deterministic_per_seed():
    data = three_clusters()
    picks = initial_indices("kcenter", data, 3, seed=0, settings=SMALL_VAE)
    assert sorted(data.pool_targets[picks].tolist()) == [0, 1, 2]
    again = initial_indices("kcenter", data, 3, seed=0, settings=SMALL_VAE)
    assert np.array_equal(picks, again)
    many = initial_indices("kcenter", data, 12, seed=1, settings=SMALL_VAE)
    assert len(set(many.tolist())) == 12


def test_random_is_the_pools_own_draw():
    data = three_clusters()
    picks = initial_indices("random", data, 5, seed=3, settings=SMALL_VAE)
    assert len(set(picks.tolist())) == 5
    assert not np.array_equal(picks, initial_indices("random", data, 5, 4, SMALL_VAE))


def test_unknown_strategy_is_refused():
    with pytest.raises(ConfigError, match=r"budget\.initial_strategy='coreset'"):
        Budget(initial=5, query=5, stages=2, initial_strategy="coreset")


def test_kcenter_initial_pool_in_a_run(tiny_config, tmp_path):
    cfg = tiny_config(
        "budget.initial_strategy=kcenter",
        "budget.stages=2",
        "kcenter_init.epochs=1",
        "kcenter_init.channels=[8,8,16,16]",
    )
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
