"""Make learning_loss.json: Learning Loss's pair loss, by the authors' `LossPredLoss`.

Usage: python tests/golden/make_learning_loss.py REPO [OUT]
  REPO: Mephisto405/Learning-Loss-for-Active-Learning checked out (commit in COMMIT below).

Runs `LossPredLoss` of REPO/main.py (read from the file with `ast`: the module imports visdom
and starts training at import) in float32 on seeded predicted and true losses of even batches
(the code asserts an even batch), at two margins, and stores each loss with its gradient with
respect to the predicted losses. One batch holds a pair whose true losses are equal, the case
the code's sign convention sends to −1. Not run by the tests.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPOSITORY = "Mephisto405/Learning-Loss-for-Active-Learning"
COMMIT = "3c11ff7cf96d8bb4596209fe56265630fda19da6"
BATCH_SIZES = [2, 8, 12]
MARGINS = [1.0, 0.25]


def reference_function(path: Path, name: str, namespace: dict):
    """The top-level function `name` of `path`, exec'd alone in `namespace`."""
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return namespace[name]


def main(repo: Path, out: Path) -> None:
    loss_pred_loss = reference_function(repo / "main.py", "LossPredLoss", {"torch": torch})
    rng = np.random.default_rng(7)
    batches = []
    for size in BATCH_SIZES:
        predicted = rng.normal(0, 1, size).astype(np.float32)
        target = rng.exponential(1.0, size).astype(np.float32)
        if size == 8:
            target[1] = target[-2]  # pair (1, 6): equal true losses
        for margin in MARGINS:
            x = torch.tensor(predicted, requires_grad=True)
            loss = loss_pred_loss(x, torch.tensor(target), margin=margin)
            loss.backward()
            batches.append(
                {
                    "predicted": predicted.tolist(),
                    "target": target.tolist(),
                    "margin": margin,
                    "loss": loss.item(),
                    "gradient": x.grad.tolist(),
                }
            )
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "main.py",
            "function": "LossPredLoss (reduction='mean')",
            "dtype": "float32",
        },
        "made_by": "tests/golden/make_learning_loss.py",
        "batches": batches,
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("learning_loss.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
