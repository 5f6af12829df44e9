"""Comparisons across methods and seeds on constructed runs whose numbers are known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

import al.reports.plot
from al.reports.compare import (
    aubc,
    find_runs,
    group_curves,
    improvement_over,
    paired_test,
    stage0_disagreements,
)

from conftest import ROOT

ACCURACY = {  # (method, seed) → test/acc at 10, 20, 30 labels
    ("random", 0): [0.40, 0.50, 0.60],
    ("random", 1): [0.40, 0.40, 0.50],
    ("entropy", 0): [0.40, 0.60, 0.70],
    ("entropy", 1): [0.40, 0.50, 0.70],
}


# A second dataset where bald's task learner differs (9 points lower at stage 0) on seed 0 only.
MNIST_ACCURACY = {
    ("random", 0): [0.46, 0.60],
    ("margin", 0): [0.46, 0.62],
    ("bald", 0): [0.37, 0.55],
    ("random", 1): [0.49, 0.60],
    ("margin", 1): [0.49, 0.63],
    ("bald", 1): [0.49, 0.61],
    ("bald", 2): [0.30, 0.50],  # a seed no other method ran: nothing to compare
}
BALD_DIFFERS = (
    "task learners differ: mnist, seed 0: stage-0 test/acc margin, random 46.00 %; bald 37.00 %"
)


def plot_command(runs: Path) -> subprocess.CompletedProcess:
    """`python -m al.reports.plot RUNS` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "al.reports.plot", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )


def plot_in_process(runs: Path, monkeypatch, capsys) -> str:
    """`al.reports.plot`'s main in this process (the command line has its own test): stdout."""
    monkeypatch.setattr(sys, "argv", ["al.reports.plot", str(runs)])
    al.reports.plot.main()
    return capsys.readouterr().out


def write_run(root, method, seed, accuracy, dataset="digits"):
    run_dir = root / f"{dataset}-{method}-seed{seed}"
    (run_dir / "state").mkdir(parents=True)
    config = {"dataset": {"name": dataset}, "method": {"name": method}, "seed": seed}
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
    done = plot_command(runs)
    out = runs / "comparison"
    for name in (
        "digits-acc.png",
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


@pytest.fixture
def unpaired_runs(runs):
    for (method, seed), accuracy in MNIST_ACCURACY.items():
        write_run(runs, method, seed, accuracy, dataset="mnist")
    return runs


def test_only_the_seed_whose_stage_0_results_differ_is_flagged(unpaired_runs):
    assert stage0_disagreements(group_curves(find_runs(unpaired_runs))) == [BALD_DIFFERS]


def test_identical_stage_0_results_are_not_flagged(runs, monkeypatch, capsys):
    assert stage0_disagreements(group_curves(find_runs(runs))) == []
    printed = plot_in_process(runs, monkeypatch, capsys)
    assert "task learners differ" not in printed + (runs / "comparison" / "summary.md").read_text()


def test_the_flag_ends_the_printed_summary(unpaired_runs, monkeypatch, capsys):
    printed = plot_in_process(unpaired_runs, monkeypatch, capsys)
    summary = (unpaired_runs / "comparison" / "summary.md").read_text()
    assert summary.endswith(f"|\n\n- {BALD_DIFFERS}\n")
    assert f"- {BALD_DIFFERS}" in printed


def test_no_runs_is_a_clear_error(tmp_path, monkeypatch, capsys):
    """A SystemExit with the message: Python prints it to stderr and exits with status 1."""
    with pytest.raises(SystemExit, match=f"no finished runs .* under {tmp_path}$"):
        plot_in_process(tmp_path, monkeypatch, capsys)


@pytest.mark.slow
def test_a_multirun_sweep_is_compared_and_its_curves_pair(tmp_path):
    """`make sweep`'s setting gives bald and random one task learner (model.dropout=0.5)."""
    sweep = tmp_path / "sweep"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "al.train",
            "-m",
            "+experiment=sweep_digits",
            "method=random,bald",
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
    assert curves["bald"].seeds == [0, 1] and list(curves["bald"].n_labeled) == [50, 100]
    assert stage0_disagreements(list(curves.values())) == []
    plot_command(sweep)
    assert (sweep / "comparison" / "digits-improvement.png").exists()


def test_seeds_that_stopped_early_or_lack_newer_keys_still_compare(runs):
    """A run a stopping rule ended after 2 stages cuts its method's curve to 2 stages; a
    number only some runs record (a newer version's `discriminator/acc`) is left out."""
    write_run(runs, "vaal", 0, [0.40, 0.55, 0.65])
    write_run(runs, "vaal", 1, [0.40, 0.45])
    newer = runs / "digits-vaal-seed0" / "results.jsonl"
    rows = [
        json.loads(line) | {"discriminator/acc": 0.7} for line in newer.read_text().splitlines()
    ]
    newer.write_text("".join(json.dumps(r) + "\n" for r in rows))
    vaal = {c.method: c for c in group_curves(find_runs(runs))}["vaal"]
    assert vaal.n_labeled.tolist() == [10, 20] and "discriminator/acc" not in vaal.values
    assert np.allclose(vaal.values["test/acc"], [[0.40, 0.55], [0.40, 0.45]])
