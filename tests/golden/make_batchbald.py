"""Make batchbald.json: greedy BatchBALD and exact joint entropies, by the authors' code.

Usage: python tests/golden/make_batchbald.py REPO [OUT]
  REPO: BlackHC/batchbald_redux checked out (commit in COMMIT below).

Runs `batchbald_redux.batchbald.get_batchbald_batch` in float64 on seeded MC-dropout
probabilities (N × K × C) of two small pools, with `num_samples` far above C^(batch − 1), so
every joint entropy is exact (its DynamicJointEntropy never samples), and
`joint_entropy.ExactJointEntropy` (`add_variables`, `compute`, `compute_batch`) for two fixed
points against every candidate. The package imports `toma` only to chunk loops over
candidates; a stand-in that runs each loop in one chunk replaces it (the only change). The
sampled estimator is random in both codes and is not compared. Not run by the tests.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import torch

REPOSITORY = "BlackHC/batchbald_redux"
COMMIT = "e56c2607ceafc312a99c32b521bdd2355e4716fe"
# (candidates N, passes K, classes C, batch size); C^(batch − 1) ≤ 64 configurations.
POOLS = [(10, 5, 3, 4), (8, 6, 4, 4)]
NUM_SAMPLES = 100_000
JOINT_POINTS = [2, 5]


def install_toma_stand_in() -> None:
    """`toma.execute.chunked(tensor, step, dimension=0)`: calls the decorated function on
    (tensor, 0, len(tensor)) at once, as toma does when memory suffices."""

    def chunked(tensor, initial_step=None, dimension=0):
        def run(function):
            function(tensor, 0, tensor.shape[dimension])

        return run

    module = types.ModuleType("toma")
    module.toma = types.SimpleNamespace(execute=types.SimpleNamespace(chunked=chunked))
    sys.modules["toma"] = module


def seeded_probabilities(rng: np.random.Generator, n: int, k: int, c: int) -> np.ndarray:
    """Softmax of a per-sample mean plus per-pass noise, rounded to float32."""
    logits = rng.normal(0, 1.5, (n, 1, c)) + rng.normal(0, 1.0, (n, k, c))
    probs = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    return probs.astype(np.float32)


def main(repo: Path, out: Path) -> None:
    install_toma_stand_in()
    sys.path.insert(0, str(repo))
    from batchbald_redux import batchbald, joint_entropy

    rng = np.random.default_rng(5)
    pools = []
    for n, k, c, batch in POOLS:
        probs = seeded_probabilities(rng, n, k, c)
        log_probs = torch.tensor(probs, dtype=torch.float64).log()
        result = batchbald.get_batchbald_batch(log_probs, batch, NUM_SAMPLES, dtype=torch.double)
        joint = joint_entropy.ExactJointEntropy.empty(k, dtype=torch.double)
        joint.add_variables(log_probs[JOINT_POINTS])
        pools.append(
            {
                "probs": probs.tolist(),
                "batch_size": batch,
                "indices": [int(i) for i in result.indices],
                "scores": [float(s) for s in result.scores],
                "joint_points": JOINT_POINTS,
                "joint_entropy": float(joint.compute()),
                "joint_entropies_with_each": joint.compute_batch(log_probs).tolist(),
            }
        )
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "batchbald_redux/batchbald.py, batchbald_redux/joint_entropy.py",
            "function": "get_batchbald_batch (scores: a_BatchBALD of the batch so far, "
            "not the gain); ExactJointEntropy.compute / compute_batch",
            "dtype": "float64",
            "num_samples": NUM_SAMPLES,
        },
        "made_by": "tests/golden/make_batchbald.py",
        "pools": pools,
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("batchbald.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
