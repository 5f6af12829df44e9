"""Shared helpers: compose the real configs with small, fast overrides."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_data import (
    write_cifar10,
    write_cifar100,
    write_idx,
    write_image_folders,
    write_svhn,
)
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from torchvision import datasets

from al.budget import Budget
from al.build import build_experiment
from al.data import ALData

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"

# A few stages of a few epochs on digits: seconds per run on 2 CPU cores.
TINY = [
    "logger=none",
    "budget.initial=20",
    "budget.query=10",
    "budget.stages=3",
    "trainer.max_epochs=10",
]
# Two stages of 10 + 5 labels, one epoch each: the smallest run on the fake_root datasets.
TINY_STAGES = [
    "logger=none",
    "budget.initial=10",
    "budget.query=5",
    "budget.stages=2",
    "budget.subset=null",
    "trainer.max_epochs=1",
    "loader.batch_size=8",
]

# M2's networks, narrow, and one epoch a pass over the (small) labeled pool.
M2_SMALL = [
    "method.module.hidden=32",
    "method.module.conv_channels=[8,16]",
    "method.module.mlp_hidden=32",
    "method.module.epoch=shortest",
]
M2_METHODS = [
    "m2_vaal",
    "m2_latent_diverse",
    "m2_latent_weighted",
    "m2_least_confidence",
    "m2_entropy",
    "m2_random",
]

# The VAE-based selectors' VAE, narrow and at 16 px (the codes' 128…1024 channels at 32 px take
# seconds per stage here).
NARROW_VAE = ["method.selector.channels=[16,32,64,128]", "method.selector.image_size=16"]

# Shorter versions of the slowest selectors for end-to-end tests; their maths has own tests.
# (And what a method needs to run at all: bald refuses a model without dropout.)
FASTER = {
    "bald": ["method.selector.passes=3", "model.dropout=0.5"],
    "vaal": ["method.selector.epochs_v=1", *NARROW_VAE],
    "ta_vaal": ["method.selector.epochs_v=1", *NARROW_VAE],
    "sraal": ["method.selector.epochs_v=1", *NARROW_VAE],
    "batchbald": ["method.selector.passes=3", "method.selector.samples=1000", "model.dropout=0.5"],
    "qbc": ["method.module.members=2"],
    "ads": ["method.module.epoch=shortest"],
    "bgadl": ["model.dropout=0.5", "method.selector.passes=3", "trainer.max_epochs=2"],
    **{method: M2_SMALL for method in M2_METHODS},
}

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def experiment_for(cfg: DictConfig, data: ALData | None = None, budget: Budget | None = None):
    """`cfg`'s Experiment, with `data` and `budget` in place of its own where given."""
    changes = {"data": data, "budget": budget}
    return dataclasses.replace(
        build_experiment(cfg), **{key: value for key, value in changes.items() if value}
    )


def compose_config(*overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def options(group: str) -> list[str]:
    return sorted(path.stem for path in (CONF_DIR / group).glob("*.yaml"))


def start_train(run_dir: Path, *overrides: str, **env: str) -> subprocess.Popen:
    """`python -m al.train` on TINY with `overrides` in `run_dir`, as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "al.train", *TINY, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def finished(process: subprocess.Popen) -> subprocess.CompletedProcess:
    """`process`, waited for: its exit status and output."""
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def train_command(run_dir: Path, *overrides: str, **env: str) -> subprocess.CompletedProcess:
    """`start_train`, waited for."""
    return finished(start_train(run_dir, *overrides, **env))


def killed_run(cfg: DictConfig, run_dir: Path, monkeypatch, stage: int, finished: bool) -> None:
    """`al.loop.run(cfg, run_dir)` killed by a KeyboardInterrupt right after stage `stage` is
    finished (`finished`) or just before it would be; the loop is restored afterwards."""
    import al.loop

    finish_stage = al.loop.finish_stage

    def finish_or_die(store, experiment, state, this_stage, outcome):
        if this_stage == stage and not finished:
            raise KeyboardInterrupt(f"killed during stage {stage}")
        record = finish_stage(store, experiment, state, this_stage, outcome)
        if this_stage == stage:
            raise KeyboardInterrupt(f"killed after stage {stage}")
        return record

    with monkeypatch.context() as patch:
        patch.setattr(al.loop, "finish_stage", finish_or_die)
        with pytest.raises(KeyboardInterrupt):
            al.loop.run(cfg, run_dir)


def read_results(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def without_timings(records: list[dict]) -> list[dict]:
    """`records` without what differs between identical runs: seconds and peak memory."""
    return [
        {k: v for k, v in r.items() if not k.endswith("_seconds") and k != "peak_memory_bytes"}
        for r in records
    ]


@pytest.fixture
def tiny_config():
    def make(*overrides: str) -> DictConfig:
        return compose_config(*TINY, *overrides)

    return make


def patch_checksums(monkeypatch, cls, lists: dict) -> None:
    for key, value in lists.items():
        monkeypatch.setattr(cls, key, value)


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    """A data root holding every dataset in its real format, a few dozen images each."""
    write_idx(tmp_path / "MNIST" / "raw", train=40, test=20)
    write_idx(tmp_path / "debian-fashion-mnist", train=40, test=20, compress=True)
    patch_checksums(monkeypatch, datasets.CIFAR10, write_cifar10(tmp_path, per_batch=10, test=20))
    patch_checksums(monkeypatch, datasets.CIFAR100, write_cifar100(tmp_path, train=40, test=20))
    monkeypatch.setattr(datasets.SVHN, "split_list", write_svhn(tmp_path, train=40, test=20))
    categories = tmp_path / "caltech101" / "101_ObjectCategories"
    write_image_folders(categories, classes=4, per_class=8, size=40, suffix="jpg")
    write_image_folders(
        tmp_path / "images" / "train", classes=3, per_class=10, size=20, suffix="png"
    )
    write_image_folders(tmp_path / "images" / "test", classes=3, per_class=4, size=20, suffix="png")
    return tmp_path
