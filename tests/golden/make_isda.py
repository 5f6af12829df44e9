"""Make isda.json: ISDA's covariance update and augmented logits, by the authors' code.

Usage: python tests/golden/make_isda.py REPO [OUT]
  REPO: blackfeather-wang/ISDA-for-Deep-Networks checked out (commit in COMMIT below).

Runs `ISDALoss` of REPO/"Image classification on CIFAR/ISDA.py" (its `EstimatorCV.update_CV`,
`isda_aug` and `forward`) in float64 on the CPU over three seeded batches of features, labels
and a seeded linear classifier, and stores the inputs with the estimator's count, mean and
covariance, the augmented logits and the loss after each step. The code allocates its buffers
with `.cuda()`; here `.cuda()` is the identity (the only change). Not run by the tests.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPOSITORY = "blackfeather-wang/ISDA-for-Deep-Networks"
COMMIT = "b66a594482557dada126211d65a4e9b6f4328423"
SOURCE = "Image classification on CIFAR/ISDA.py"
CLASSES, FEATURES, BATCH = 4, 5, 8
# Step 1 lacks class 3 (its weight must be 0, not NaN); λ differs per step.
LABELS = [[0, 1, 2, 0, 1, 2, 0, 1], [3, 3, 0, 1, 2, 3, 1, 0], [2, 2, 2, 3, 0, 1, 3, 3]]
RATIOS = [0.1, 0.25, 0.5]


def float32_exact(array: np.ndarray) -> np.ndarray:
    """Values a float32 holds exactly, so both implementations read the same inputs."""
    return array.astype(np.float32).astype(np.float64)


def load_isda(repo: Path):
    spec = importlib.util.spec_from_file_location("isda_reference", repo / SOURCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(repo: Path, out: Path) -> None:
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU run
    torch.set_default_dtype(torch.float64)
    rng = np.random.default_rng(22)
    weight = float32_exact(rng.normal(0, 0.5, (CLASSES, FEATURES)))
    bias = float32_exact(rng.normal(0, 0.1, CLASSES))
    features = [float32_exact(rng.normal(1.0, 1.5, (BATCH, FEATURES))) for _ in LABELS]

    isda = load_isda(repo)
    loss_fn = isda.ISDALoss(FEATURES, CLASSES)
    fc = torch.nn.Linear(FEATURES, CLASSES)
    fc.weight.data, fc.bias.data = torch.tensor(weight), torch.tensor(bias)
    steps = []
    for batch, labels, ratio in zip(features, LABELS, RATIOS, strict=True):
        x, target = torch.tensor(batch), torch.tensor(labels)
        loss, logits = loss_fn.forward(torch.nn.Identity(), fc, x, target, ratio)
        estimator = loss_fn.estimator
        augmented = loss_fn.isda_aug(fc, x, logits, target, estimator.CoVariance, ratio)
        steps.append(
            {
                "count": estimator.Amount.tolist(),
                "mean": estimator.Ave.tolist(),
                "covariance": estimator.CoVariance.tolist(),
                "logits": logits.tolist(),
                "augmented_logits": augmented.tolist(),
                "loss": loss.item(),
            }
        )
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": SOURCE,
            "function": "ISDALoss.forward (EstimatorCV.update_CV, ISDALoss.isda_aug)",
            "dtype": "float64",
        },
        "made_by": "tests/golden/make_isda.py",
        "inputs": {
            "weight": weight.tolist(),
            "bias": bias.tolist(),
            "features": [batch.tolist() for batch in features],
            "labels": LABELS,
            "ratios": RATIOS,
        },
        "steps": steps,
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("isda.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
