"""`python -m al.reports.samples RUN_DIR [--stage K]`: what a synthesising method (BGADL) made
from the samples stage K picked — a grid of each picked x* above its synthetic x′ = g(μ(x*), y*), in
pixels, saved as `RUN_DIR/samples/stage_KKK.png`.

Under `synthesis=stored` the pairs come from the run state; otherwise the stage's model is
retrained exactly (every draw derives from (seed, stage)) and makes them from its picks.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from omegaconf import OmegaConf

from al.build import build_data
from al.data import ALData
from al.errors import ConfigError, DataError, report_user_errors
from al.reports.replay import retrain_stage
from al.runtime.notices import quiet_notices
from al.store import RunStore

quiet_notices()


def stage_pairs(run_dir: Path, stage: int, cfg, data: ALData) -> tuple[torch.Tensor, ...]:
    """(picked inputs x*, synthetic x′, labels) of `stage`'s picks, as the classifier's inputs."""
    snapshot = RunStore(run_dir).latest()
    if snapshot is None or len(snapshot["records"]) <= stage:
        raise DataError(f"{run_dir} has not finished stage {stage}: choose an earlier --stage")
    stored = snapshot.get("synthetic")
    if stored is not None and (stored["stage"] == stage + 1).any():
        made = stored["stage"] == stage + 1
        sources = stored["source"][made].numpy()
        return inputs_of(data, sources), stored["x"][made], stored["y"][made]
    module, picks, _ = retrain_stage(cfg, data, run_dir, stage)
    if not hasattr(module, "synthesize") or getattr(module, "synthesis", None) == "none":
        raise ConfigError(f"{run_dir} ran {cfg.method.name}, which synthesises no samples")
    module.eval()
    x, labels = inputs_of(data, picks), torch.from_numpy(data.pool_targets[picks])
    return x, module.synthesize(x, labels), labels


def inputs_of(data: ALData, indices: np.ndarray) -> torch.Tensor:
    return torch.stack([x for x, _ in data.pool.unlabeled(indices)])


def save_grid(data: ALData, picked, made, labels, path: Path, columns: int) -> None:
    """Two rows per block of `columns`: the picked images over their synthetic pairs."""
    stats = data.pool.pixel_stats
    count = min(columns, len(labels))
    fig, axes = plt.subplots(2, count, figsize=(1.2 * count, 2.8), squeeze=False)
    for column in range(count):
        for row, images in enumerate((picked, made)):
            pixels = stats.to_pixels(images[column : column + 1])[0].clamp(0, 1)
            axis = axes[row, column]
            axis.imshow(pixels.permute(1, 2, 0).squeeze(-1).numpy(), cmap="gray", vmin=0, vmax=1)
            axis.set_xticks([]), axis.set_yticks([])
        axes[0, column].set_title(f"y = {int(labels[column])}", fontsize=8)
    axes[0, 0].set_ylabel("x*")
    axes[1, 0].set_ylabel("x′")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--stage", type=int, default=0)
    parser.add_argument("--pairs", type=int, default=16, help="pairs drawn, best picks first")
    args = parser.parse_args(argv)
    with report_user_errors():
        config = args.run_dir / "state" / "config.yaml"
        if not config.exists():
            raise DataError(f"{args.run_dir} holds no run (no state/config.yaml)")
        cfg = OmegaConf.load(config)
        data = build_data(cfg.dataset)
        picked, made, labels = stage_pairs(args.run_dir, args.stage, cfg, data)
        path = args.run_dir / "samples" / f"stage_{args.stage:03d}.png"
        save_grid(data, picked, made, labels, path, args.pairs)
    print(f"{len(labels)} pairs of stage {args.stage}; figure: {path}")


if __name__ == "__main__":
    main()
