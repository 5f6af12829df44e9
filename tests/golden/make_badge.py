"""Make badge.json: BADGE's gradient embedding and k-means++ seeding, by the authors' code.

Usage: python tests/golden/make_badge.py REPO [OUT]
  REPO: JordanAsh/badge checked out (commit in COMMIT below).

Runs, from REPO/query_strategies, `Strategy.get_grad_embedding` (the explicit embedding
(onehot(ŷ) − p) ⊗ h) and `BadgeSampling.query` with its `init_centers` and `distance` (the
factorised k-means++ seeding) on seeded logits and penultimate features that a stub network
returns for each sample. Stored: the embedding, the picks, the first pick's ‖g‖², and for every
later pick the distribution `init_centers` samples it from (D² / ΣD², chosen rows 0) and its D².
The functions are read from the files with `ast` (the modules import packages unrelated to
them: torchfile, visdom-era sklearn internals); `.cuda()` is the identity (the only change).
`init_centers` draws with NumPy's global generator, seeded here. Not run by the tests.
"""

from __future__ import annotations

import ast
import json
import sys
from copy import deepcopy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from torch import nn
from torch.autograd import Variable
from torch.utils.data import DataLoader, Dataset

REPOSITORY = "JordanAsh/badge"
COMMIT = "a2d18acd372cf0f61d9e75bfb0c879c107fbf9f6"
SAMPLES, CLASSES, WIDTH, PICKS = 20, 4, 5, 6


def reference_functions(path: Path, names: dict[str, str | None], namespace: dict) -> dict:
    """Exec the named top-level functions (None) or methods (class name) of `path` in
    `namespace`; returns it."""
    tree = ast.parse(path.read_text())
    nodes = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and names.get(node.name, 0) is None:
            nodes.append(node)
        if isinstance(node, ast.ClassDef):
            nodes += [
                item
                for item in node.body
                if isinstance(item, ast.FunctionDef) and names.get(item.name) == node.name
            ]
    assert len(nodes) == len(names), f"found {[n.name for n in nodes]} of {list(names)}"
    exec(compile(ast.Module(nodes, []), str(path), "exec"), namespace)
    return namespace


class StubNetwork(nn.Module):
    """The network the code queries: sample ids in, (logits, penultimate features) out."""

    def __init__(self, logits: np.ndarray, features: np.ndarray) -> None:
        super().__init__()
        self.logits, self.features = torch.tensor(logits), torch.tensor(features)
        self.linear = nn.Linear(WIDTH, CLASSES)  # read for its out_features only

    def get_embedding_dim(self) -> int:
        return WIDTH

    def forward(self, ids: torch.Tensor):
        return self.logits[ids], self.features[ids]


class Handler(Dataset):
    def __init__(self, X, Y, transform=None) -> None:
        self.X, self.Y = X, Y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int):
        return self.X[i], self.Y[i], i


class RecordingStats:
    """scipy.stats for `init_centers`, recording each distribution it samples a pick from."""

    def __init__(self) -> None:
        self.distributions: list[np.ndarray] = []

    def rv_discrete(self, *args, values, **kwargs):
        self.distributions.append(np.asarray(values[1], dtype=np.float64))
        return stats.rv_discrete(*args, values=values, **kwargs)


def main(repo: Path, out: Path) -> None:
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU run
    rng = np.random.default_rng(6)
    logits = rng.normal(0, 1.5, (SAMPLES, CLASSES)).astype(np.float32)
    features = rng.normal(0, 0.7, (SAMPLES, WIDTH)).astype(np.float32)
    labels = np.arange(SAMPLES) % CLASSES  # every class present: the code sizes by them

    recorder = RecordingStats()
    namespace = {
        "np": np,
        "torch": torch,
        "F": F,
        "DataLoader": DataLoader,
        "Variable": Variable,
        "deepcopy": deepcopy,
        "stats": recorder,
    }
    reference_functions(
        repo / "query_strategies/strategy.py",
        {"get_embedding": "Strategy", "get_grad_embedding": "Strategy"},
        namespace,
    )
    reference_functions(
        repo / "query_strategies/badge_sampling.py",
        {"distance": None, "init_centers": None, "query": "BadgeSampling"},
        namespace,
    )
    steps = []
    original_init_centers = namespace["init_centers"]

    def recording_init_centers(X1, X2, chosen, chosen_list, mu, D2):
        result = original_init_centers(X1, X2, chosen, chosen_list, mu, D2)
        pick, nearest = result[1][-1], result[3]
        first = len(result[1]) == 1
        steps.append(float(X1[1][pick] * X2[1][pick]) if first else float(nearest[pick] ** 2))
        return result

    namespace["init_centers"] = recording_init_centers
    strategy = SimpleNamespace(
        X=np.arange(SAMPLES),
        Y=torch.tensor(labels),
        idxs_lb=np.zeros(SAMPLES, dtype=bool),
        n_pool=SAMPLES,
        clf=StubNetwork(logits, features),
        handler=Handler,
        args={"transformTest": None, "loader_te_args": {"batch_size": 8}},
    )
    for name in ("get_embedding", "get_grad_embedding"):
        setattr(strategy, name, namespace[name].__get__(strategy))
    embedding = strategy.get_grad_embedding(strategy.X, labels).numpy()
    np.random.seed(0)
    picks = namespace["query"](strategy, PICKS)

    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "query_strategies/badge_sampling.py, query_strategies/strategy.py",
            "function": "BadgeSampling.query (init_centers, distance), Strategy.get_grad_embedding",
            "dtype": "float32",
        },
        "made_by": "tests/golden/make_badge.py",
        "inputs": {"logits": logits.tolist(), "features": features.tolist(), "picks": PICKS},
        "gradient_embedding": embedding.tolist(),
        "picks": [int(p) for p in picks],
        "pick_squared_distances": steps,
        "pick_distributions": [d.tolist() for d in recorder.distributions],
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    repository = Path(sys.argv[1])
    main(
        repository,
        Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).with_name("badge.json"),
    )
