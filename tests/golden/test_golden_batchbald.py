"""Golden test: greedy BatchBALD and its exact joint entropies against the authors' code
(BlackHC/batchbald_redux `get_batchbald_batch`, `ExactJointEntropy`; fixture made by
make_batchbald.py). Pools small enough that every joint entropy is exact in both; the sampled
estimator is random in both codes and is not compared here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from al.methods.batchbald import (
    Configurations,
    JointEstimator,
    batchbald_greedy,
    extend,
    joint_entropies,
)
from al.methods.selector import TieBreak

FIXTURE = json.loads(Path(__file__).with_name("batchbald.json").read_text())
ATOL = 1e-5


def reference(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def code_estimator() -> JointEstimator:
    """The code's rule at its `num_samples`: exact while C^(points chosen) ≤ num_samples
    (always, in these pools)."""
    return JointEstimator(samples=FIXTURE["reference"]["num_samples"], memory_bytes=2**28)


def test_greedy_picks_and_batch_values_match_get_batchbald_batch():
    """Identical picks; the code scores each pick by a_BatchBALD of the batch so far, ours by
    its gain, so the running sum of our gains is compared with the code's scores."""
    for pool in FIXTURE["pools"]:
        probs = torch.tensor(pool["probs"])
        batch = pool["batch_size"]
        picks, gains = batchbald_greedy(
            probs, batch, code_estimator(), torch.Generator().manual_seed(0), TieBreak(0)
        )
        assert picks.tolist() == pool["indices"]
        torch.testing.assert_close(
            gains.double().cumsum(0), reference(pool["scores"]), atol=ATOL, rtol=0
        )


def test_exact_joint_entropies_match_exact_joint_entropy():
    """H(y_a, y_b) and H(y_a, y_b, y_x) for every candidate x, by enumeration in both."""
    for pool in FIXTURE["pools"]:
        probs = torch.tensor(pool["probs"])
        configs = Configurations.empty(probs.shape[1], probs.device)
        for point in pool["joint_points"]:
            configs = extend(configs, probs[point], samples=None)
        assert configs.entropy().item() == pytest.approx(pool["joint_entropy"], abs=ATOL)
        torch.testing.assert_close(
            joint_entropies(configs, probs).double(),
            reference(pool["joint_entropies_with_each"]),
            atol=ATOL,
            rtol=0,
        )
