"""`first_curve`: wall time of the default `python -m al.train` against the stages' own
train + select seconds (from its results.jsonl): the ratio is the framework's fixed cost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from al import CONF_DIR
from al.bench.figures import Figure, timed
from al.bench.settings import Settings

QUICK = ["budget.stages=2", "trainer.max_epochs=2"]


def train_once(settings: Settings, run_dir: Path) -> tuple[float, float]:
    """Wall seconds of one default run in `run_dir`, and its stages' train + select seconds."""
    accelerator = "gpu" if settings.device.type == "cuda" else "cpu"
    command = [
        sys.executable,
        "-m",
        "al.train",
        "logger=none",
        f"trainer.accelerator={accelerator}",
        *(QUICK if settings.quick else []),
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(settings.threads)}
    seconds, _ = timed(
        lambda: subprocess.run(
            command, cwd=CONF_DIR.parent, env=env, check=True, capture_output=True, text=True
        )
    )
    records = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    return seconds, sum(r["train_seconds"] + r["select_seconds"] for r in records)


def run(settings: Settings) -> list[Figure]:
    wall, stages = [], []
    for _ in range(settings.heavy_repeats):
        with tempfile.TemporaryDirectory(prefix="al-bench-") as directory:
            seconds, inside = train_once(settings, Path(directory) / "run")
        wall.append(seconds)
        stages.append(inside)
    label = "2 stages × 2 epochs" if settings.quick else "10 stages × 50 epochs"
    return [
        Figure(
            "first_curve",
            f"python -m al.train (digits, entropy, {label})",
            "sum of the stages' train + select seconds",
            [w / s for w, s in zip(wall, stages, strict=True)],
            {"seconds": wall, "baseline_seconds": stages},
            note="ratio = fixed cost (start-up, tests, snapshots)",
        )
    ]
