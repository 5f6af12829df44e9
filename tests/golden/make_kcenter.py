"""Make kcenter.json: Core-set's greedy k-center, by the TA-VAAL authors' `kcenterGreedy`.

Usage: python tests/golden/make_kcenter.py REPO [OUT]
  REPO: cubeyoung/TA-VAAL (Kwanyoung Kim's TA-VAAL code) checked out (commit in COMMIT).

Runs `kCenterGreedy.select_batch_` of REPO/kcenterGreedy.py as that code's `get_kcg` calls
it: float32 features of the candidates followed by the labeled samples, the labeled
positions as `already_selected`. Stored: the picks and, for each, its distance to the nearest
center when picked (read from the instance's `min_distances` before each update, by a
subclass that only records); its closing print gets a scalar `max` for NumPy 2. Features are
seeded Gaussians, so no two distances tie. Not run by the tests.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np

REPOSITORY = "cubeyoung/TA-VAAL"
COMMIT = "11610718c431f848d19aa6a94b781dfc0dcfd81d"
# (candidates, labeled, feature width, picks)
CASES = [(30, 5, 4, 8), (40, 1, 6, 10)]


def load_kcenter(repo: Path):
    spec = importlib.util.spec_from_file_location("kcenter_reference", repo / "kcenterGreedy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    # Its closing print formats max() of an (n, 1) array with %f, which NumPy < 2 allowed; a
    # scalar max keeps that print working under NumPy 2 (an old-API shim, nothing else).
    module.max = np.max
    return module


def main(repo: Path, out: Path) -> None:
    reference = load_kcenter(repo)

    class RecordingKCenter(reference.kCenterGreedy):
        """The code's class; records min_distances[pick] before each pick's update."""

        def __init__(self, features: np.ndarray) -> None:
            super().__init__(features)
            self.radii: list[float] = []

        def update_distances(self, cluster_centers, only_new=True, reset_dist=False):
            if self.min_distances is not None and len(cluster_centers) == 1:
                self.radii.append(float(self.min_distances[cluster_centers[0]].item()))
            super().update_distances(cluster_centers, only_new, reset_dist)

    rng = np.random.default_rng(11)
    cases = []
    for candidates, labeled, width, picks in CASES:
        points = rng.normal(0, 1, (candidates, width)).astype(np.float32)
        centers = rng.normal(0, 1, (labeled, width)).astype(np.float32)
        sampling = RecordingKCenter(np.concatenate([points, centers]))
        batch = sampling.select_batch_(list(range(candidates, candidates + labeled)), picks)
        cases.append(
            {
                "candidates": points.tolist(),
                "labeled": centers.tolist(),
                "picks": [int(i) for i in batch],
                "radii": sampling.radii,
            }
        )
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "kcenterGreedy.py",
            "function": "kCenterGreedy.select_batch_ (as selection_methods.get_kcg calls it)",
            "dtype": "float32 features, sklearn pairwise_distances",
        },
        "made_by": "tests/golden/make_kcenter.py",
        "cases": cases,
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("kcenter.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
