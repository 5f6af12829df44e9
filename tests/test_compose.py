"""Every config combination composes and builds; bad choices fail with clear messages."""

from __future__ import annotations

import functools
import itertools
import subprocess
import sys

import pytest
import pytorch_lightning as pl
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from al.budget import Budget
from al.errors import ConfigError, build
from al.loop import build_data, build_module
from al.sinks import Sink

from conftest import ROOT, compose_config, options

PAIRS = list(itertools.product(options("dataset"), options("model"), options("method")))


@pytest.mark.parametrize(("dataset", "model", "method"), PAIRS)
def test_dataset_model_method_compose_and_build(dataset, model, method):
    cfg = compose_config(f"dataset={dataset}", f"model={model}", f"method={method}")
    data = build_data(cfg.dataset)
    if model != "mlp" and len(cfg.dataset.input_shape) != 3:
        with pytest.raises(ConfigError, match=rf"model={model} needs image input.*use model=mlp"):
            build_module(cfg, data.num_classes)
        return
    module = build_module(cfg, data.num_classes)
    x, _ = next(iter(DataLoader(data.test, batch_size=4)))
    assert module(x).shape == (len(x), cfg.dataset.num_classes)
    instantiate(cfg.method.selector)


@pytest.mark.parametrize("option", options("budget"))
def test_every_budget_is_valid_and_fits_its_dataset(option):
    cfg = compose_config(f"dataset={option}")
    assert cfg.budget == compose_config(f"budget={option}").budget
    Budget(**cfg.budget).check_fits(len(build_data(cfg.dataset).pool_targets))


@pytest.mark.parametrize(
    ("group", "option"),
    [(group, option) for group in ("logger", "optimizer", "trainer") for option in options(group)],
)
def test_every_other_group_option_builds(group, option):
    built = build(compose_config(f"{group}={option}")[group])
    expected = {"logger": Sink, "optimizer": functools.partial, "trainer": pl.Trainer}[group]
    assert isinstance(built, expected)


def test_unknown_option_fails_with_hydras_message():
    with pytest.raises(ConfigCompositionException, match="Could not find 'method/nope'"):
        compose_config("method=nope")


def test_command_line_reports_unknown_option_and_exits_nonzero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "al.train", "method=nope", f"hydra.run.dir={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "Could not find 'method/nope'" in result.stderr
    assert "Available options in 'method'" in result.stderr


def test_tuning_file_applies_to_its_method_and_dataset_only(tmp_path):
    tuning = tmp_path / "tuning" / "entropy" / "digits.yaml"
    tuning.parent.mkdir(parents=True)
    tuning.write_text(
        "# @package _global_\noptimizer:\n  lr: 0.123\nloader:\n  batch_size: 7\n"
        "reinit_each_stage: false\n"
    )
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    tuned = compose_config(searchpath, "method=entropy")
    assert (tuned.optimizer.lr, tuned.loader.batch_size, tuned.reinit_each_stage) == (
        0.123,
        7,
        False,
    )
    plain = compose_config(searchpath, "method=margin")
    assert (plain.optimizer.lr, plain.loader.batch_size, plain.reinit_each_stage) == (
        0.001,
        32,
        True,
    )


def test_wandb_run_is_grouped_by_dataset_and_method_and_offline_by_default(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    logger = compose_config("method=margin", "dataset=moons", "seed=2").logger
    assert (logger.group, logger.job_type, logger.mode) == ("moons-margin", "seed2", "offline")
