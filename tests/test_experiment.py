"""End-to-end runs on digits: what a run leaves behind, determinism, resume and bad input."""

from __future__ import annotations

import csv
import functools

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

import al.build
from al.errors import ConfigError, NonFiniteLossError
from al.loop import run

from conftest import killed_run, read_results, without_timings

RECORD_KEYS = {
    "stage",
    "epochs",
    "n_labeled",
    "test/acc",
    "test/balanced_acc",
    "test/loss",
    "train_seconds",
    "select_seconds",
    "train_device_seconds",
    "select_device_seconds",
    "cumulative_device_seconds",
    "peak_memory_bytes",
    "memory_measure",
    "class_counts",
    "class_entropy",
    "pick_class_counts",
    "pick_entropy",
    "n_synthetic",
    "tied_picks",
}


def picks_of(run_dir):
    return {p.name: p.read_text() for p in sorted((run_dir / "picks").glob("*.csv"))}


def test_three_stages_leave_results_picks_state_and_curve(tiny_config, tmp_path):
    records = run(tiny_config(), tmp_path)
    assert read_results(tmp_path) == records
    assert [r["stage"] for r in records] == [0, 1, 2]
    assert [r["n_labeled"] for r in records] == [20, 30, 40]
    for record in records:
        assert set(record) == RECORD_KEYS
        assert sum(record["class_counts"]) == record["n_labeled"]
        assert 0.0 <= record["test/acc"] <= 1.0
    assert all(sum(r["pick_class_counts"]) == 10 for r in records)
    assert all(0 <= r["pick_entropy"] <= np.log(10) for r in records)
    assert records[-1]["test/acc"] > 0.3  # 40 labels, 10 epochs: far above chance (0.1)
    assert sorted(picks_of(tmp_path)) == ["stage_000.csv", "stage_001.csv", "stage_002.csv"]
    rows = picks_of(tmp_path)["stage_000.csv"].splitlines()
    assert rows[0] == "index,score,label" and len(rows) == 11
    assert len(list((tmp_path / "state").glob("stage_*.pt"))) == 3
    assert (tmp_path / "curve.png").stat().st_size > 0


def test_picks_are_labeled_at_the_next_stage(tiny_config, tmp_path):
    run(tiny_config(), tmp_path)
    snapshot = torch.load(tmp_path / "state" / "stage_002.pt", weights_only=True)
    labelled_at = snapshot["labelled_at"].numpy()
    picked = [int(line.split(",")[0]) for line in picks_of(tmp_path)["stage_000.csv"].split()[1:]]
    assert np.all(labelled_at[picked] == 1)
    assert np.bincount(labelled_at[labelled_at >= 0]).tolist() == [20, 10, 10, 10]


def test_same_seed_gives_identical_results(tiny_config, tmp_path):
    first = run(tiny_config(), tmp_path / "a")
    second = run(tiny_config(), tmp_path / "b")
    assert without_timings(first) == without_timings(second)
    assert picks_of(tmp_path / "a") == picks_of(tmp_path / "b")
    other_seed = run(tiny_config("seed=1"), tmp_path / "c")
    assert picks_of(tmp_path / "a") != picks_of(tmp_path / "c")
    assert without_timings(first) != without_timings(other_seed)


def test_methods_share_the_initial_pool(tiny_config, tmp_path):
    run(tiny_config("method=random"), tmp_path / "random")
    run(tiny_config("method=margin"), tmp_path / "margin")

    def initial(name):
        state = torch.load(tmp_path / name / "state" / "stage_002.pt", weights_only=True)
        return np.flatnonzero(state["labelled_at"].numpy() == 0)

    assert np.array_equal(initial("random"), initial("margin"))
    assert picks_of(tmp_path / "random") != picks_of(tmp_path / "margin")


@pytest.mark.parametrize("reinit", ["true", "false"])
def test_interrupted_run_resumes_to_identical_results(tiny_config, tmp_path, monkeypatch, reinit):
    cfg = tiny_config(f"reinit_each_stage={reinit}", "budget.stages=4")
    uninterrupted = run(cfg, tmp_path / "whole")

    killed_run(cfg, tmp_path / "split", monkeypatch, stage=1, finished=True)
    assert len(read_results(tmp_path / "split")) == 2
    resumed = run(cfg, tmp_path / "split")
    assert without_timings(resumed) == without_timings(uninterrupted)
    assert read_results(tmp_path / "split") == resumed
    assert picks_of(tmp_path / "split") == picks_of(tmp_path / "whole")


def test_rerunning_a_finished_run_changes_nothing_and_more_stages_extend_it(tiny_config, tmp_path):
    three = run(tiny_config(), tmp_path)
    assert run(tiny_config(), tmp_path) == three
    four = run(tiny_config("budget.stages=4"), tmp_path)
    assert four[:3] == three and four[3]["n_labeled"] == 50


def test_a_different_config_in_the_same_directory_is_refused(tiny_config, tmp_path):
    run(tiny_config(), tmp_path)
    before = (tmp_path / "results.jsonl").read_text()
    with pytest.raises(ConfigError, match=r"budget.query: 10 → 5.*new hydra.run.dir"):
        run(tiny_config("budget.query=5"), tmp_path)
    assert (tmp_path / "results.jsonl").read_text() == before


def test_a_run_from_before_tasks_resumes_as_classification(tiny_config, tmp_path):
    """Configs saved before datasets declared a task hold no dataset.task: they resume."""
    three = run(tiny_config(), tmp_path)
    saved = OmegaConf.load(tmp_path / "state" / "config.yaml")
    del saved.dataset["task"]
    OmegaConf.save(saved, tmp_path / "state" / "config.yaml")
    assert run(tiny_config("budget.stages=4"), tmp_path)[:3] == three


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("budget.initial=0", "budget.initial=0 must be a positive integer"),
        ("budget.query=-1", "budget.query=-1 must be a positive integer"),
        ("budget.initial=1270", "1300 labels, but the pool holds 1297"),
        ("budget.subset=5", "budget.subset=5 is smaller than budget.query=10"),
    ],
)
def test_bad_budget_fails_before_any_work(tiny_config, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(tiny_config(override), tmp_path)
    assert not (tmp_path / "state").exists()


def test_nan_loss_stops_naming_the_stage_and_keeps_finished_stages(
    tiny_config, tmp_path, monkeypatch
):
    module_factory = al.build.module_factory

    def diverging_from_stage_1(cfg, num_classes, task, weights=None):
        make_module = module_factory(cfg, num_classes, task, weights)

        def make_diverging_module():
            module = make_module()
            if (tmp_path / "state" / "stage_000.pt").exists():
                module.optimizer_factory = functools.partial(torch.optim.SGD, lr=1e30)
            return module

        return make_diverging_module

    monkeypatch.setattr(al.build, "module_factory", diverging_from_stage_1)
    with pytest.raises(NonFiniteLossError, match=r"stage 1: training loss is (nan|inf)"):
        run(tiny_config(), tmp_path)
    assert [r["stage"] for r in read_results(tmp_path)] == [0]


def test_zero_epochs_is_refused_naming_the_fix(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match=r"trainer.max_epochs=0.*train at least one epoch"):
        run(tiny_config("trainer.max_epochs=0"), tmp_path)


def test_a_run_dir_whose_first_stage_failed_takes_a_corrected_config(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="model=cnn needs image input"):
        run(tiny_config("dataset=moons", "model=cnn"), tmp_path)
    records = run(tiny_config("dataset=moons", "model=mlp"), tmp_path)
    assert len(records) == 3


def test_classes_missing_from_the_initial_pool_are_fine(tiny_config, tmp_path):
    records = run(tiny_config("budget.initial=3", "budget.query=5"), tmp_path)
    assert records[0]["class_counts"].count(0) >= 7
    assert [r["n_labeled"] for r in records] == [3, 8, 13]


def test_moons_with_mlp_and_margin(tiny_config, tmp_path):
    cfg = tiny_config("dataset=moons", "model=mlp", "method=margin", "budget=moons")
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30, 40]
    assert len(records[0]["class_counts"]) == 2


def read_csv(path):
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_csv_logger_writes_epochs_and_stages(tiny_config, tmp_path):
    run(tiny_config("logger=csv"), tmp_path)
    epochs = read_csv(tmp_path / "train_metrics.csv")
    assert [int(row["al/epoch"]) for row in epochs] == list(range(3 * 10))
    assert [int(row["train/stage"]) for row in epochs] == [s for s in range(3) for _ in range(10)]
    assert all(float(row["train/loss"]) > 0 for row in epochs)
    stages = read_csv(tmp_path / "stages.csv")
    assert [int(row["al/n_labeled"]) for row in stages] == [20, 30, 40]
    assert "test/acc" in stages[0] and "stage/pick_entropy" in stages[0]


def test_csv_logger_keeps_no_rows_of_an_interrupted_stage(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("logger=csv")
    run(cfg, tmp_path / "whole")
    killed_run(cfg, tmp_path / "split", monkeypatch, stage=2, finished=False)
    run(cfg, tmp_path / "split")
    for name in ("train_metrics.csv", "stages.csv"):
        whole, split = read_csv(tmp_path / "whole" / name), read_csv(tmp_path / "split" / name)
        assert [row["al/epoch" if "train" in name else "al/n_labeled"] for row in split] == [
            row["al/epoch" if "train" in name else "al/n_labeled"] for row in whole
        ]


def test_wandb_logger_runs_offline_with_stage_metrics(tiny_config, tmp_path, monkeypatch):
    from wandb.sdk.wandb_run import Run

    monkeypatch.setenv("WANDB_MODE", "offline")
    logged, axes, original_log, original_define = [], {}, Run.log, Run.define_metric

    def spy_log(run, data, *args, **kwargs):
        logged.append(dict(data))
        return original_log(run, data, *args, **kwargs)

    def spy_define(run, name, *args, **kwargs):
        axes[name] = kwargs.get("step_metric")
        return original_define(run, name, *args, **kwargs)

    monkeypatch.setattr(Run, "log", spy_log)
    monkeypatch.setattr(Run, "define_metric", spy_define)
    records = run(tiny_config("logger=wandb", "budget.stages=2"), tmp_path)

    [offline_run] = list((tmp_path / "wandb").glob("offline-run-*"))
    assert (offline_run / f"run-{(tmp_path / 'wandb_id.txt').read_text()}.wandb").stat().st_size
    stage_rows = [row for row in logged if "al/n_labeled" in row]
    epoch_rows = [row for row in logged if "al/epoch" in row]
    assert [row["al/n_labeled"] for row in stage_rows] == [20, 30]
    assert stage_rows[-1]["test/acc"] == pytest.approx(records[-1]["test/acc"])
    assert stage_rows[-1]["stage/pick_entropy"] == pytest.approx(records[-1]["pick_entropy"])
    assert [row["al/epoch"] for row in epoch_rows] == list(range(20))
    assert all("train/loss" in row and "train/acc" in row for row in epoch_rows)
    assert axes["test/*"] == axes["stage/*"] == "al/n_labeled"
    assert axes["train/*"] == "al/epoch"

    logged.clear()
    run(tiny_config("logger=wandb", "budget.stages=3"), tmp_path)  # resume: one more stage
    assert len(list((tmp_path / "wandb").glob("offline-run-*"))) == 2
    stage_rows = [row for row in logged if "al/n_labeled" in row]
    assert [row["al/n_labeled"] for row in stage_rows] == [20, 30, 40]  # replayed + new
    assert [row["al/epoch"] for row in logged if "al/epoch" in row] == list(range(20, 30))
