"""Comparisons across methods and seeds on constructed runs whose numbers are known."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from omegaconf import OmegaConf

from al.compare import aubc, find_runs, group_curves, improvement_over, paired_test

from conftest import ROOT

ACCURACY = {  # (method, seed) → test/acc at 10, 20, 30 labels
    ("random", 0): [0.40, 0.50, 0.60],
    ("random", 1): [0.40, 0.40, 0.50],
    ("entropy", 0): [0.40, 0.60, 0.70],
    ("entropy", 1): [0.40, 0.50, 0.70],
}


def write_run(root, method, seed, accuracy):
    run_dir = root / f"{method}-seed{seed}"
    (run_dir / "state").mkdir(parents=True)
    config = {"dataset": {"name": "digits"}, "method": {"name": method}, "seed": seed}
    OmegaConf.save(OmegaConf.create(config), run_dir / "state" / "config.yaml")
    records = [
        {
            "stage": k,
            "n_labeled": 10 * (k + 1),
            "test/acc": acc,
            "train_seconds": 2.0,
            "select_seconds": 1.0 if method == "random" else 3.0,
            "pick_entropy": 1.0,
            "class_counts": [1, 2],
        }
        for k, acc in enumerate(accuracy)
    ]
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def runs(tmp_path):
    for (method, seed), accuracy in ACCURACY.items():
        write_run(tmp_path, method, seed, accuracy)
    return tmp_path


def test_groups_and_known_statistics(runs):
    curves = {c.method: c for c in group_curves(find_runs(runs))}
    assert set(curves) == {"random", "entropy"} and curves["entropy"].seeds == [0, 1]
    assert np.allclose(
        aubc(curves["entropy"].n_labeled, curves["entropy"].values["test/acc"]), [0.575, 0.525]
    )  # trapezoids over 10 → 30, divided by 20
    mean, std = improvement_over(curves["entropy"], curves["random"])
    assert np.allclose(mean, [0.0, 0.10, 0.15]) and np.allclose(std, [0.0, 0.0, 0.05])
    p_value, seeds = paired_test(curves["entropy"], curves["random"])
    assert seeds == 2 and 0 < p_value < 1


def test_command_line_writes_figures_and_tables(runs):
    done = subprocess.run(
        [sys.executable, "-m", "al.plot", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    out = runs / "comparison"
    for name in (
        "digits-accuracy.png",
        "digits-improvement.png",
        "digits-pick-entropy.png",
        "summary.md",
        "summary.csv",
        "timing.md",
        "timing.csv",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = (out / "summary.md").read_text()
    assert "| digits | entropy | 2 | 40.00 ± 0.00 | 55.00 ± 5.00 | 70.00 ± 0.00 |" in summary
    assert "p vs random" in summary and "2 dataset × method groups" in done.stdout
    assert "| digits | random | 2.0 | 1.0 |" in (out / "timing.md").read_text()


def test_no_runs_is_a_clear_error(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "al.plot", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "no finished runs" in done.stderr


def test_a_multirun_sweep_is_compared(tmp_path):
    sweep = tmp_path / "sweep"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "al.train",
            "-m",
            "+experiment=sweep_digits",
            "method=random,margin",
            "seed=0,1",
            "trainer.max_epochs=3",
            "budget.stages=2",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(list(sweep.glob("*/results.jsonl"))) == 4
    curves = {c.method: c for c in group_curves(find_runs(sweep))}
    assert curves["margin"].seeds == [0, 1] and list(curves["margin"].n_labeled) == [50, 100]
    subprocess.run(
        [sys.executable, "-m", "al.plot", str(sweep)], cwd=ROOT, check=True, capture_output=True
    )
    assert (sweep / "comparison" / "digits-improvement.png").exists()
