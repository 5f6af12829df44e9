"""Make ads.json: ADS's losses and acquisition entropy by the authors' code.

Usage: python tests/golden/make_ads.py REPO [OUT]
  REPO: fumengying19/AAAI21-ADS, branch `code`, checked out (commit in COMMIT below).

Runs, in float64 on the CPU, the code's three training steps of `utils/train_ADS.py` once
each on one seeded labeled and one seeded unlabeled batch — `train_init` (the labeled BCE,
`criterion` from `utils.dataset.get_training_functions_single`), `train_conv` (the
agreement loss, `main_ADS.Myl1loss`, weights (1 − σ(E − MIN_CLBR))/128) and `train_f` (the
labeled BCE plus the discrepancy loss, `main_ADS.Myrel1loss`, weights σ(E − MAX_CLBR)/128),
E from `MyEntLoss` — and `main_ADS.get_uncertainty` (the acquisition score), with the code's
`utils.config` (MIN_CLBR = MAX_CLBR = 0.1). Each step's loss is taken where the code calls
`loss.backward()`; the backward pass is skipped, so every step sees the same weights.

The code's backbone (a ResNet-18 with cosine-prototype heads) is replaced by a stand-in with
the parameter names its steps freeze by (`conv5.weight`, `protos1`; `conv6.weight`,
`protos2`): g(x) = W_g x + b_g, ŷᵏ = σ(W_k g(x) + b_k), the stored `weights`. `.cuda()` is the
identity (a CPU run). `MyEntLoss` hard-codes 10 classes. Not run by the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

REPOSITORY = "fumengying19/AAAI21-ADS"
BRANCH, COMMIT = "code", "315969d577ea1a36e55242e4a83fe11ccecafef8"
CLASSES, DIM, LABELED, UNLABELED = 10, 5, 4, 6


class StandIn(nn.Module):
    """g, f1 and f2 under the names the code's steps select parameters by."""

    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.g = nn.Linear(DIM, DIM)
        self.conv5 = nn.Linear(DIM, CLASSES, bias=False)
        self.conv6 = nn.Linear(DIM, CLASSES, bias=False)
        self.protos1 = nn.Parameter(torch.tensor(weights["b1"]))
        self.protos2 = nn.Parameter(torch.tensor(weights["b2"]))
        self.g.weight.data, self.g.bias.data = (
            torch.tensor(weights["wg"]),
            torch.tensor(weights["bg"]),
        )
        self.conv5.weight.data = torch.tensor(weights["w1"])
        self.conv6.weight.data = torch.tensor(weights["w2"])

    def forward(self, x):
        h = self.g(x)
        return torch.sigmoid(self.conv5(h) + self.protos1), torch.sigmoid(
            self.conv6(h) + self.protos2
        )


def draw(rng) -> tuple[dict, dict]:
    weights = {
        "wg": rng.normal(0, 0.8, (DIM, DIM)),
        "bg": rng.normal(0, 0.3, DIM),
        "w1": rng.normal(0, 1.5, (CLASSES, DIM)),
        "b1": rng.normal(-2.5, 2.0, CLASSES),
        "w2": rng.normal(0, 1.5, (CLASSES, DIM)),
        "b2": rng.normal(-2.5, 2.0, CLASSES),
    }
    batches = {
        "x_labeled": rng.normal(0, 1, (LABELED, DIM)),
        "y_labeled": rng.integers(0, CLASSES, LABELED),
        "x_unlabeled": rng.normal(0, 1, (UNLABELED, DIM)),
    }
    return {k: v.tolist() for k, v in weights.items()}, {k: v.tolist() for k, v in batches.items()}


def main(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    torch.set_default_dtype(torch.float64)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU run
    import main_ADS  # fumengying19/AAAI21-ADS, branch `code`
    from utils import train_ADS
    from utils.config import get_configs
    from utils.dataset import get_training_functions_single

    weights, batches = draw(np.random.default_rng(22))
    models = {"backbone": StandIn(weights)}
    x_l, y_l = torch.tensor(batches["x_labeled"]), torch.tensor(batches["y_labeled"])
    x_u = torch.tensor(batches["x_unlabeled"])
    labeled, unlabeled = [(x_l, y_l)], [(x_u, torch.zeros(len(x_u)))]
    cfg = get_configs()
    criterion, optimizers, _ = get_training_functions_single(cfg, models)

    losses = []
    torch.Tensor.backward = lambda self, *args, **kwargs: losses.append(self.item())
    train_ADS.train_init(models, criterion, optimizers, {"train": labeled})
    train_ADS.train_conv(cfg, models, main_ADS.Myl1loss(), unlabeled)
    train_ADS.train_f(cfg, models, criterion, main_ADS.Myrel1loss(), {"train": labeled}, unlabeled)
    uncertainty = main_ADS.get_uncertainty(models, unlabeled)
    with torch.no_grad():
        output1, output2 = models["backbone"](x_u)
        entropies = [train_ADS.MyEntLoss().forward(o) for o in (output1, output2)]
        l1 = main_ADS.Myl1loss().forward(output1, output2)

    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "branch": BRANCH,
            "commit": COMMIT,
            "file": "utils/train_ADS.py, main_ADS.py",
            "function": "train_init, train_conv, train_f (their `loss`), get_uncertainty, "
            "MyEntLoss, Myl1loss",
            "dtype": "float64",
            "config": {"MIN_CLBR": cfg.TRAIN.MIN_CLBR, "MAX_CLBR": cfg.TRAIN.MAX_CLBR},
        },
        "made_by": "tests/golden/make_ads.py",
        "weights": weights,
        "inputs": batches,
        "outputs": {
            "labeled_loss": losses[0],
            "agreement_loss": losses[1],
            "discrepancy_step_loss": losses[2],
            "uncertainty": uncertainty.tolist(),
            "entropy_per_classifier": [e.tolist() for e in entropies],
            "l1_discrepancy": l1.tolist(),
            "probabilities": [output1.tolist(), output2.tolist()],
        },
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("ads.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
