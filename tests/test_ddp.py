"""`trainer=ddp`: two CPU processes (gloo) end every stage with one pool; only rank 0 writes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pytorch_lightning.strategies import SingleDeviceStrategy
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from al.errors import ConfigError, build
from al.methods.selector import SelectionRequest, Selector
from al.runtime.distributed import check_same_pool, pool_digest, spawns_ranks
from al.store import RunStore

from conftest import NARROW_VAE, ROOT, compose_config, read_results

DDP = [
    "trainer=ddp",
    "trainer.devices=2",
    "trainer.max_epochs=2",
    "logger=csv",
    "budget.initial=20",
    "budget.query=10",
    "seed=0",
]
# Every file a run of three stages leaves; rank 1 adds nothing (its log file opens on a first
# message, and it logs none).
RUN_FILES = {
    ".hydra/config.yaml",
    ".hydra/hydra.yaml",
    ".hydra/overrides.yaml",
    ".lock",
    "state/config.yaml",
    *(f"state/stage_{k:03d}.pt" for k in range(3)),
    *(f"state/stage_{k:03d}.pt.sha256" for k in range(3)),
    *(f"picks/stage_{k:03d}.csv" for k in range(3)),
    "results.jsonl",
    "curve.png",
    "stages.csv",
    "train_metrics.csv",
    "train.log",
}


def train_ddp(run_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "al.train", *DDP, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=300,
    )


def files_under(run_dir: Path) -> set[str]:
    return {str(path.relative_to(run_dir)) for path in run_dir.rglob("*") if path.is_file()}


def picks(run_dir: Path, stage: int) -> np.ndarray:
    path = run_dir / "picks" / f"stage_{stage:03d}.csv"
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=0, dtype=np.int64)


def check_stages_label_their_picks(run_dir: Path, stages: int) -> None:
    """Stage k's picks are `query` unique samples, exactly those labeled at stage k + 1."""
    labelled_at = torch.load(run_dir / "state" / f"stage_{stages - 1:03d}.pt")["labelled_at"]
    for stage in range(stages):
        picked = picks(run_dir, stage)
        assert len(picked) == len(set(picked.tolist())) == 10
        assert sorted(picked) == np.flatnonzero(labelled_at.numpy() == stage + 1).tolist()


@pytest.mark.slow
def test_two_process_run_and_its_resume_keep_one_pool_and_one_writer(tmp_path):
    done = train_ddp(tmp_path, "budget.stages=3")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["n_labeled"] for r in read_results(tmp_path)] == [20, 30, 40]
    check_stages_label_their_picks(tmp_path, 3)
    for stage in range(3):
        assert f"stage {stage}: pool identical on 2 ranks" in done.stdout
    assert done.stdout.count("selection sharded over 2 ranks") == 3
    assert files_under(tmp_path) == RUN_FILES
    assert len((tmp_path / "stages.csv").read_text().splitlines()) == 1 + 3
    assert len((tmp_path / "train_metrics.csv").read_text().splitlines()) == 1 + 3 * 2

    resumed = train_ddp(tmp_path, "budget.stages=4")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming {tmp_path} after stage 2" in resumed.stdout
    assert "stage 3: pool identical on 2 ranks" in resumed.stdout
    assert [r["n_labeled"] for r in read_results(tmp_path)] == [20, 30, 40, 50]
    check_stages_label_their_picks(tmp_path, 4)
    assert len((tmp_path / "stages.csv").read_text().splitlines()) == 1 + 4


@pytest.mark.slow
def test_multirun_that_would_spawn_ranks_is_refused_before_any_work(tmp_path):
    refused = subprocess.run(
        [sys.executable, "-m", "al.train", "-m", *DDP, "seed=0,1", f"hydra.sweep.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2 and refused.stderr.startswith("Error: trainer.devices=2 starts")
    assert "hydra/launcher=slurm" in refused.stderr and "Traceback" not in refused.stderr
    assert not list(tmp_path.rglob("state"))


class FirstCandidates(Selector):
    def select(self, module, request: SelectionRequest):
        return request.candidate_indices[: request.query], torch.zeros(request.query)


def test_every_rank_keeps_the_picks_rank_zero_broadcasts():
    indices = torch.arange(10, 16)
    loader = [(torch.zeros(6, 2), indices)]
    selector = FirstCandidates()
    selector.request(SelectionRequest(loader, loader, indices, query=2, seed=0))
    rank_zero = (torch.tensor([15, 12]), torch.tensor([0.9, 0.8]))
    trainer = SimpleNamespace(
        world_size=1, global_rank=1, strategy=SimpleNamespace(broadcast=lambda obj, src: rank_zero)
    )
    selector.on_train_end(trainer, torch.nn.Linear(2, 2))
    assert selector.selection.indices.tolist() == [15, 12]


class GatheringStrategy:
    """What DDP's `all_gather` returns when rank 1 holds `other_labelled_at`."""

    root_device = torch.device("cpu")

    def __init__(self, other_labelled_at: np.ndarray) -> None:
        self.other = other_labelled_at

    def all_gather(self, digest: torch.Tensor) -> torch.Tensor:
        return torch.stack([digest, torch.tensor([pool_digest(self.other)])])


def test_ranks_with_different_pools_stop_the_run_naming_the_stage():
    labelled_at = np.array([0, -1, 1, -1])
    other = np.array([0, 1, -1, -1])
    with pytest.raises(RuntimeError, match=r"stage 1: the ranks hold different pools .*rank 1: "):
        check_same_pool(GatheringStrategy(other), labelled_at, stage=1)


def test_identical_pools_are_logged_once_per_stage(caplog):
    labelled_at = np.array([0, -1, 1, -1])
    with caplog.at_level(logging.INFO, logger="al.runtime.distributed"):
        check_same_pool(GatheringStrategy(labelled_at.copy()), labelled_at, stage=1)
        check_same_pool(SingleDeviceStrategy(torch.device("cpu")), labelled_at, stage=2)
    messages = [record.getMessage() for record in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("stage 1: pool identical on 2 ranks (")


def test_only_global_rank_zero_writes_but_every_rank_checks_the_config(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    store.claim(compose_config("method=margin"))
    store.save_picks(0, np.array([3]), np.array([0.5]), np.array([1]))
    store.save_stage(0, np.array([0, -1, -1, 1]), [{"stage": 0}], None)
    assert files_under(tmp_path) == set()
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    store.claim(compose_config())
    store.save_stage(0, np.array([0, -1, -1, 1]), [{"stage": 0}], None)
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    with pytest.raises(ConfigError, match=r"method\.name: 'entropy' → 'margin'"):
        store.claim(compose_config("method=margin"))


SLURM_TASK = {
    "SLURM_NTASKS": "2",
    "SLURM_NTASKS_PER_NODE": "2",
    "SLURM_NNODES": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
    "SLURM_NODELIST": "localhost",
    "SLURM_JOB_NAME": "al",
}


def test_ranks_are_spawned_locally_unless_slurm_starts_them(monkeypatch):
    for name in ("LOCAL_RANK", "RANK", "WORLD_SIZE", *SLURM_TASK):
        monkeypatch.delenv(name, raising=False)
    ddp = compose_config("trainer=ddp").trainer
    assert spawns_ranks(build(ddp))
    assert not spawns_ranks(build(compose_config().trainer))
    for name, value in SLURM_TASK.items():
        monkeypatch.setenv(name, value)
    assert not spawns_ranks(build(ddp))


@pytest.mark.slow
def test_a_module_training_on_unlabeled_samples_runs_under_ddp(tmp_path):
    """M2-VAAL's one backward per step touches every parameter, so two ranks train it without
    DDP's unused-parameter search, each on its shard of both loaders, and label one pool."""
    small = ["method.module.hidden=32", "method.module.conv_channels=[8,16]"]
    result = train_ddp(tmp_path, "method=m2_vaal", "budget.stages=2", *small)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_results(tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert all(0 <= r["discriminator/acc"] <= 1 for r in records)
    check_stages_label_their_picks(tmp_path, 2)


@pytest.mark.slow
def test_a_selector_s_own_networks_train_data_parallel_under_ddp(tmp_path):
    """VAAL's VAE and discriminator are fitted by a DDP Trainer across the run's two ranks
    (each rank computes its share of every batch: al.methods.rank_split): both ranks end every
    stage with the same discriminator metrics and label one pool."""
    vae = ["method=vaal", "method.selector.epochs_v=2", *NARROW_VAE, "budget.stages=2"]
    result = train_ddp(tmp_path, *vae)
    assert result.returncode == 0, result.stderr[-3000:]
    records = read_results(tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert all(0 <= r["discriminator/acc"] <= 1 for r in records)
    check_stages_label_their_picks(tmp_path, 2)
