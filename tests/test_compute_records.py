"""Compute in the records (device seconds, peak memory, cumulative totals) and in the
comparison: metric against cumulative compute, label savings against random, compute per
stage; records from before compute fields still compare."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import al.reports.plot
from al.compute import (
    CUDA_PEAK,
    RSS_PEAK,
    StageCompute,
    compute_fields,
    cumulative_seconds,
    device_clock,
    peak_memory,
    reset_peak_memory,
)
from al.loop import run
from al.reports.compare import COMPUTE, find_runs, group_curves, label_savings, labels_to_reach
from al.reports.plot import compare, summary_rows

from conftest import killed_run, read_results

COMPUTE_KEYS = (
    "train_device_seconds",
    "select_device_seconds",
    "cumulative_device_seconds",
    "peak_memory_bytes",
    "memory_measure",
)


def assert_compute_adds_up(records: list[dict]) -> None:
    """Each stage's cumulative total is the one before plus its own train + select seconds."""
    total = 0.0
    for record in records:
        assert record["train_device_seconds"] > 0 and record["select_device_seconds"] > 0
        total += record["train_device_seconds"] + record["select_device_seconds"]
        assert record["cumulative_device_seconds"] == pytest.approx(total)


def test_a_run_records_compute_that_adds_up(tiny_config, tmp_path):
    records = run(tiny_config(), tmp_path)
    assert read_results(tmp_path) == records
    for record in records:
        assert set(COMPUTE_KEYS) <= set(record)
        assert record["memory_measure"] == RSS_PEAK  # the tests run on the CPU
    assert_compute_adds_up(records)
    cumulative = [r["cumulative_device_seconds"] for r in records]
    assert np.all(np.diff(cumulative) > 0)
    peaks = [r["peak_memory_bytes"] for r in records]
    assert peaks[0] > 2**20 and np.all(np.diff(peaks) >= 0)  # the process's peak never falls


def test_a_resumed_run_continues_the_cumulative_total(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config()
    killed_run(cfg, tmp_path, monkeypatch, stage=1, finished=True)
    before = read_results(tmp_path)
    resumed = run(cfg, tmp_path)
    assert resumed[:2] == before and len(resumed) == 3
    assert_compute_adds_up(resumed)
    last = resumed[2]
    assert last["cumulative_device_seconds"] == pytest.approx(
        before[1]["cumulative_device_seconds"]
        + last["train_device_seconds"]
        + last["select_device_seconds"]
    )


def test_records_from_before_compute_fields_count_their_wall_seconds():
    old = [
        {"train_seconds": 1.0, "select_seconds": 0.5},
        {"train_seconds": 2.0, "select_seconds": 0.25},
    ]
    assert cumulative_seconds(old) == [1.5, 3.75]
    stage = StageCompute(0.5, 0.25, 1024, RSS_PEAK)
    assert compute_fields(stage, old) == {
        "train_device_seconds": 0.5,
        "select_device_seconds": 0.25,
        "cumulative_device_seconds": 4.5,
        "peak_memory_bytes": 1024,
        "memory_measure": RSS_PEAK,
    }
    newer = [*old, {"train_seconds": 9.0, "select_seconds": 9.0, COMPUTE: 10.0}]
    assert cumulative_seconds(newer) == [1.5, 3.75, 10.0]
    assert compute_fields(stage, newer)[COMPUTE] == 10.75
    assert compute_fields(stage, [])[COMPUTE] == 0.75


def test_on_cuda_the_clock_waits_for_the_device_and_memory_is_the_allocated_peak(monkeypatch):
    """The CUDA calls, recorded (these tests run without a GPU)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device: calls.append(("sync", device)))
    monkeypatch.setattr(
        torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(("reset", device))
    )
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 3 * 2**30)
    gpu = torch.device("cuda", 1)
    reset_peak_memory(gpu)
    device_clock(gpu)
    assert calls == [("reset", gpu), ("sync", gpu)]
    assert peak_memory(gpu) == (3 * 2**30, CUDA_PEAK)
    calls.clear()
    reset_peak_memory(torch.device("cpu"))
    device_clock(torch.device("cpu"))
    assert calls == [] and peak_memory(torch.device("cpu"))[1] == RSS_PEAK


# Constructed curves at 10, 20, 30, 40 labels; random's mean curve is 0.40, 0.50, 0.60, 0.80.
ACCURACY = {
    ("random", 0): [0.40, 0.50, 0.50, 0.70],
    ("random", 1): [0.40, 0.50, 0.70, 0.90],
    ("badge", 0): [0.40, 0.70],  # 0.70 at 20 labels: random needs 30 + 0.5 · 10 = 35
    ("badge", 1): [0.40, 0.70],
    ("entropy", 0): [0.40, 0.60, 0.80, 0.90],  # random never reaches 0.90
    ("bald", 0): [0.30, 0.30, 0.30, 0.35],  # random's first stage already passes 0.35
}


def write_run(root, method, seed, accuracy, compute=True):
    """A run directory; with `compute`, its stages took 1 s of training and 0.5 s (random)
    or 2 s of selection and peaked at 100 MiB (stage 0) and 200 MiB."""
    run_dir = root / f"digits-{method}-seed{seed}"
    (run_dir / "state").mkdir(parents=True)
    config = {"dataset": {"name": "digits"}, "method": {"name": method}, "seed": seed}
    OmegaConf.save(OmegaConf.create(config), run_dir / "state" / "config.yaml")
    select = 0.5 if method == "random" else 2.0
    records = []
    for k, acc in enumerate(accuracy):
        record = {"stage": k, "n_labeled": 10 * (k + 1), "test/acc": acc}
        record |= {"train_seconds": 1.0, "select_seconds": select, "pick_entropy": 1.0}
        if compute:
            record |= {
                "train_device_seconds": 1.0,
                "select_device_seconds": select,
                COMPUTE: (k + 1) * (1.0 + select),
                "peak_memory_bytes": (100 if k == 0 else 200) * 2**20,
                "memory_measure": RSS_PEAK,
            }
        records.append(record)
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture
def runs(tmp_path):
    for (method, seed), accuracy in ACCURACY.items():
        write_run(tmp_path, method, seed, accuracy)
    return tmp_path


def test_labels_to_reach_interpolates_the_first_crossing():
    n = np.array([10, 20, 30, 40])
    curve = np.array([0.40, 0.60, 0.50, 0.80])
    assert labels_to_reach(n, curve, 0.55) == ("=", pytest.approx(17.5))  # not 30 + 1/6 · 10
    assert labels_to_reach(n, curve, 0.70) == ("=", pytest.approx(30 + 10 * 2 / 3))
    assert labels_to_reach(n, curve, 0.40) == ("=", 10.0)
    assert labels_to_reach(n, curve, 0.30) == ("≤", 10.0)
    assert labels_to_reach(n, curve, 0.81) == (">", 40.0)


def test_label_savings_match_a_hand_computation(runs):
    curves = {c.method: c for c in group_curves(find_runs(runs))}
    random = curves["random"]
    relation, labels, savings = label_savings(curves["badge"], random)
    assert relation == "=" and labels == pytest.approx(35) and savings == pytest.approx(15)
    assert label_savings(curves["entropy"], random) == (">", 40.0, 0.0)
    assert label_savings(curves["bald"], random) == ("≤", 10.0, -30.0)
    rows = {row["method"]: row for row in summary_rows(list(curves.values()))}
    savings = {m: (r["labels random needs"], r["label savings"]) for m, r in rows.items()}
    assert savings == {
        "badge": ("35", "15"),
        "entropy": ("> 40", "> 0"),
        "bald": ("≤ 10", "≤ -30"),
        "random": ("—", "—"),
    }


def test_the_summary_reports_compute_per_stage(runs):
    rows = {row["method"]: row for row in summary_rows(group_curves(find_runs(runs)))}
    assert rows["random"]["train+select s / stage"] == "1.5"
    assert rows["badge"]["train+select s / stage"] == "3"
    assert rows["badge"]["peak memory"] == f"200 MiB ({RSS_PEAK})"


def test_the_compute_figure_plots_the_metric_against_cumulative_seconds(runs, monkeypatch):
    drawn = {}

    def record_band(ax, x, mean, std, label):
        drawn.setdefault(ax, {})[label] = (list(x), list(mean))

    monkeypatch.setattr(al.reports.plot, "plot_band", record_band)
    compare(runs, runs / "comparison")
    assert (runs / "comparison" / "digits-acc-compute.png").stat().st_size > 0
    by_labels, by_compute = [axes for axes in drawn.values() if "badge (2 seeds)" in axes][:2]
    x, mean = by_compute["badge (2 seeds)"]
    assert x == [3.0, 6.0] and mean == pytest.approx([40.0, 70.0])
    assert by_compute["random (2 seeds)"][0] == [1.5, 3.0, 4.5, 6.0]
    assert by_labels["badge (2 seeds)"][0] == [10, 20]


def test_runs_from_before_compute_fields_still_plot_and_summarise(tmp_path):
    for (method, seed), accuracy in ACCURACY.items():
        write_run(tmp_path, method, seed, accuracy, compute=seed == 1)
    curves = {c.method: c for c in group_curves(find_runs(tmp_path))}
    assert curves["random"].values[COMPUTE].tolist() == [[1.5, 3.0, 4.5, 6.0]] * 2
    compare(tmp_path, tmp_path / "comparison")
    assert (tmp_path / "comparison" / "digits-acc-compute.png").stat().st_size > 0
    summary = (tmp_path / "comparison" / "summary.md").read_text()
    assert "| — | — | 1.5 | — |" in summary  # random, half of whose seeds lack peak memory
    assert "| 35 | 15 | 3 | — |" in summary  # badge's seed 0 lacks compute fields
