"""`python -m al.reports.toy`: TA-VAAL's toy experiment (§4.1, Fig. 1) on the imbalanced two moons.

Runs learning_loss, vaal and ta_vaal with `+experiment=ta_vaal_moons` for each seed, then for
one stage (the 5th by default) draws the pool, that stage's picks (black crosses), the task
model's decision boundary and the oracle's (a class-balanced RBF SVM on the whole pool,
dashed), and prints for each method the picks' mean distance to the oracle boundary and their
spread (mean pairwise distance), with mean ± std over several seeds. The paper's claim:
Learning Loss picks near the boundary but clustered, VAAL spread but far, TA-VAAL near and
spread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from hydra import compose, initialize_config_dir
from scipy.spatial.distance import cdist, pdist
from sklearn.svm import SVC

from al import CONF_DIR
from al.build import build_data
from al.loop import run
from al.reports.replay import retrain_stage
from al.runtime.notices import quiet_notices

METHODS = ("learning_loss", "vaal", "ta_vaal")
GRID = 300

quiet_notices()


def grid_over(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    low, high = points.min(0) - 0.5, points.max(0) + 0.5
    xs, ys = np.meshgrid(np.linspace(low[0], high[0], GRID), np.linspace(low[1], high[1], GRID))
    return xs, ys


def boundary_points(xs: np.ndarray, ys: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Grid points whose right or upper neighbour falls on the other side."""
    edge = np.zeros_like(labels, dtype=bool)
    edge[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    edge[:-1, :] |= labels[:-1, :] != labels[1:, :]
    return np.stack([xs[edge], ys[edge]], axis=1)


def pick_statistics(picks: np.ndarray, boundary: np.ndarray) -> tuple[float, float]:
    """(mean distance to the oracle boundary, mean pairwise distance) of the picks."""
    return float(cdist(picks, boundary).min(1).mean()), float(pdist(picks).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/toy"))
    parser.add_argument("--stage", type=int, default=4, help="0-based stage (4 = the 5th)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides for every method")
    args = parser.parse_args(argv)
    rows = [row for seed in args.seeds for row in toy_seed(args, seed)]
    write_rows(rows, args.out / "toy.csv")
    print(f"stage {args.stage}: picks' mean distance to the oracle boundary and spread")
    for seed, method, distance, spread in rows:
        print(f"seed {seed} {method:>14}: distance {distance:.3f}   spread {spread:.3f}")
    if len(args.seeds) > 1:
        print(summary(rows))
    print(f"figures and toy.csv: {args.out}")


def toy_seed(args: argparse.Namespace, seed: int) -> list[tuple[int, str, float, float]]:
    """Run every method of `args` on `seed`; draw `seedS/fig1.png`; one row per method."""
    out = args.out / f"seed{seed}"
    rows = []
    fig, axes = plt.subplots(1, len(args.methods), figsize=(5 * len(args.methods), 4.5))
    for ax, method in zip(np.atleast_1d(axes), args.methods, strict=True):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            cfg = compose(
                "train",
                overrides=[
                    "+experiment=ta_vaal_moons",
                    f"method={method}",
                    f"seed={seed}",
                    "logger=none",
                    f"budget.stages={args.stage + 1}",
                    *args.overrides,
                ],
            )
        run(cfg, out / method)
        data = build_data(cfg.dataset)
        module, picks, _ = retrain_stage(cfg, data, out / method, args.stage)
        points = data.pool.inputs.x.numpy()
        rows.append((seed, method, *draw(ax, module, points, data.pool_targets, picks, method)))
    fig.tight_layout()
    fig.savefig(out / "fig1.png", dpi=120)
    plt.close(fig)
    return rows


def write_rows(rows: list[tuple[int, str, float, float]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["seed,method,distance,spread", *(f"{s},{m},{d:.4f},{p:.4f}" for s, m, d, p in rows)]
    path.write_text("\n".join(lines) + "\n")


def summary(rows: list[tuple[int, str, float, float]]) -> str:
    """Mean ± std over seeds (population std) of each method's distance and spread."""
    lines = [f"{'method':>14}  distance       spread        ({len({r[0] for r in rows})} seeds)"]
    for method in dict.fromkeys(r[1] for r in rows):
        distance = np.array([r[2] for r in rows if r[1] == method])
        spread = np.array([r[3] for r in rows if r[1] == method])
        lines.append(
            f"{method:>14}  {distance.mean():.2f} ± {distance.std():.2f}   "
            f"{spread.mean():.2f} ± {spread.std():.2f}"
        )
    return "\n".join(lines)


def draw(ax, module, points: np.ndarray, targets: np.ndarray, picks: np.ndarray, title: str):
    """Pool, picks, model and oracle boundaries on `ax`; returns the pick statistics."""
    xs, ys = grid_over(points)
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
    module.eval()
    with torch.no_grad():
        model_labels = module(torch.from_numpy(grid)).argmax(1).numpy().reshape(xs.shape)
    oracle = SVC(kernel="rbf", gamma=2.0, C=10.0, class_weight="balanced").fit(points, targets)
    oracle_labels = oracle.predict(grid).reshape(xs.shape)
    ax.scatter(*points.T, c=np.where(targets == 0, "tab:red", "tab:blue"), s=6, alpha=0.5)
    ax.contour(xs, ys, model_labels, levels=[0.5], colors="green")
    ax.contour(xs, ys, oracle_labels, levels=[0.5], colors="black", linestyles="dashed")
    ax.scatter(*points[picks].T, marker="x", c="black", s=40)
    distance, spread = pick_statistics(points[picks], boundary_points(xs, ys, oracle_labels))
    ax.set_title(f"{title}: distance {distance:.2f}, spread {spread:.2f}")
    return distance, spread


if __name__ == "__main__":
    main()
