"""Every config combination composes and builds; bad choices fail with clear messages."""

from __future__ import annotations

import functools
import itertools

import pytest
import pytorch_lightning as pl
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

from al.budget import Budget
from al.build import build_data, build_module
from al.checks import check_built_options, check_task
from al.errors import ConfigError, build
from al.models.cnn import SmallCNN
from al.models.mlp import MLP
from al.models.resnet import ResNet18
from al.sinks import Sink
from al.tasks import supported_tasks

from conftest import FASTER, compose_config, options, train_command

# A file-based dataset's class count is the user's to set (image_folder: ???).
SET_BY_USER = {"image_folder": ["dataset.num_classes=3"]}


def model_task(cfg) -> str:
    return supported_tasks(get_class(cfg.model._target_))[0]


def built_module_forward(cfg):
    """Build the module of `cfg` and run it on a random batch of the dataset's input shape
    (segmentation: 64×64 crops of it, as fully convolutional models take any size)."""
    module = build_module(cfg, cfg.dataset.num_classes)
    channels, *size = cfg.dataset.input_shape
    segmentation = model_task(cfg) == "segmentation"
    size = [64, 64] if segmentation else size
    logits = module(torch.randn(2, channels, *size))
    assert logits.shape == (2, cfg.dataset.num_classes, *(size if segmentation else []))
    instantiate(cfg.method.selector)


def task_of(group: str, option: str) -> str:
    """The task of a dataset config, or the task a model config's class supports."""
    cfg = compose_config(f"{group}={option}", *SET_BY_USER.get(option, []))
    return build(cfg.dataset.task).name if group == "dataset" else model_task(cfg)


DATASET_TASKS = {dataset: task_of("dataset", dataset) for dataset in options("dataset")}
MODEL_TASKS = {model: task_of("model", model) for model in options("model") if model != "auto"}
MATCHING = [
    (dataset, model)
    for dataset, model in itertools.product(options("dataset"), options("model"))
    if model == "auto" or MODEL_TASKS[model] == DATASET_TASKS[dataset]
]


@pytest.mark.parametrize(("dataset", "model"), MATCHING)
def test_every_dataset_and_model_of_its_task_compose_and_build(dataset, model):
    cfg = compose_config(f"dataset={dataset}", f"model={model}", *SET_BY_USER.get(dataset, []))
    if model not in ("mlp", "auto") and len(cfg.dataset.input_shape) != 3:
        with pytest.raises(ConfigError, match=rf"model={model} needs image input.*use model=mlp"):
            build_module(cfg, cfg.dataset.num_classes)
        return
    built_module_forward(cfg)


@pytest.mark.parametrize("model", sorted(MODEL_TASKS))
def test_a_model_of_another_task_is_refused(model):
    """Every model against a dataset of each other task: refused before anything is built."""
    for dataset in ("digits", "shapes_seg"):
        cfg = compose_config(f"dataset={dataset}", f"model={model}")
        task = build(cfg.dataset.task)
        if MODEL_TASKS[model] == task.name:
            continue
        with pytest.raises(ConfigError, match=rf"the model .* not the dataset's task {task.name}"):
            check_task(cfg, task, Budget(initial=1, query=1, stages=1))


def one_method_per_task_module() -> list[str]:
    """The first method (by name) of each task module class the methods use."""
    first: dict[str, str] = {}
    for method in options("method"):
        target = compose_config(f"method={method}").method.module._target_
        first.setdefault(target, method)
    return sorted(first.values())


@pytest.mark.parametrize("method", options("method"))
def test_every_method_composes_and_builds(method):
    built_module_forward(compose_config("dataset=digits", f"method={method}"))


@pytest.mark.parametrize("method", options("method"))
def test_every_method_on_every_dataset_passes_its_option_types(method):
    """The shipped configs fit the type hints their options are checked against (on one dataset
    of each kind: tuned, segmentation, the papers' scale, classes found at run time)."""
    for dataset in ("digits", "shapes_seg", "cifar10", "image_folder"):
        check_built_options(compose_config(f"dataset={dataset}", f"method={method}"))


CLASSIFICATION_MODELS = [m for m, task in MODEL_TASKS.items() if task == "classification"]


@pytest.mark.parametrize(
    ("method", "model"),
    list(itertools.product(one_method_per_task_module(), CLASSIFICATION_MODELS)),
)
def test_every_task_module_builds_around_every_model(method, model):
    """Every task module class (standard, M2, committee, …) around every classification
    backbone; the methods sharing a module differ in their selector alone, built above
    (the segmentation models are built around the standard module by the test above)."""
    overrides = ("dataset=digits", f"method={method}", f"model={model}", *FASTER.get(method, []))
    built_module_forward(compose_config(*overrides))


def test_data_shipped_with_dependencies_matches_its_config():
    for dataset in ("digits", "moons"):
        cfg = compose_config(f"dataset={dataset}")
        data = build_data(cfg.dataset)
        assert len(data.pool_targets) == cfg.dataset.pool_size


@pytest.mark.parametrize("option", options("budget"))
def test_every_budget_is_valid(option):
    Budget(**compose_config(f"budget={option}").budget)


@pytest.mark.parametrize("dataset", options("dataset"))
def test_every_dataset_has_a_budget_that_fits_it(dataset):
    cfg = compose_config(f"dataset={dataset}", *SET_BY_USER.get(dataset, []))
    budget = Budget(**cfg.budget)
    if cfg.dataset.pool_size is not None:
        budget.resolve(cfg.dataset.pool_size)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_builds(experiment):
    cfg = compose_config(f"+experiment={experiment}")
    built_module_forward(cfg)
    Budget(**cfg.budget).resolve(cfg.dataset.pool_size)


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [("cifar10", (0.1, 200, 128, [160])), ("caltech101", (0.01, 200, 16, None))],
)
def test_protocol_of_the_papers_applies_to_every_method(dataset, expected):
    for method in ("random", "coreset", "dast_al"):
        cfg = compose_config(f"dataset={dataset}", f"method={method}")
        milestones = cfg.scheduler.milestones if cfg.scheduler else None
        actual = (cfg.optimizer.lr, cfg.trainer.max_epochs, cfg.loader.batch_size, milestones)
        assert actual == expected and cfg.optimizer._target_ == "torch.optim.SGD"
    assert compose_config("dataset=digits").optimizer._target_ == "torch.optim.Adam"


SGD = {"_target_": "torch.optim.SGD", "_partial_": True, "momentum": 0.9}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-3, "weight_decay": 0.0}


@pytest.mark.parametrize(
    ("dataset", "papers_optimizer"),
    [
        ("cifar10", {**SGD, "lr": 0.1, "weight_decay": 5e-4}),
        ("svhn", {**SGD, "lr": 0.1, "weight_decay": 5e-4}),
        ("caltech101", {**SGD, "lr": 0.01, "weight_decay": 5e-4}),
        ("cityscapes", {**SGD, "lr": 1e-3, "weight_decay": 1e-4}),
        ("digits", ADAM),
    ],
)
def test_a_dataset_chooses_its_papers_optimizer_and_the_command_line_replaces_it(
    dataset, papers_optimizer
):
    """The dataset's choice is an optimizer option, so optimizer=adam gives Adam's own values
    while the rest of the protocol (epochs, batch, scheduler) stays the dataset's."""
    papers = compose_config(f"dataset={dataset}")
    assert OmegaConf.to_container(papers.optimizer) == papers_optimizer
    adam = compose_config(f"dataset={dataset}", "optimizer=adam")
    assert OmegaConf.to_container(adam.optimizer) == ADAM
    rest = ("trainer", "loader", "scheduler")
    assert {key: adam[key] for key in rest} == {key: papers[key] for key in rest}


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


@pytest.mark.slow
def test_command_line_reports_unknown_option_and_exits_nonzero(tmp_path):
    result = train_command(tmp_path, "method=nope")
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


@pytest.mark.parametrize(
    ("dataset", "backbone"),
    [("digits", SmallCNN), ("moons", MLP), ("cifar10", ResNet18), ("caltech101", ResNet18)],
)
def test_the_default_model_is_the_datasets_own(dataset, backbone):
    cfg = compose_config(f"dataset={dataset}", "method=ta_vaal")
    model = build(cfg.model)
    assert type(model) is backbone
    if dataset == "caltech101":  # TA-VAAL's flagship setting: ImageNet stem at 224 px, Table 1
        assert model.stem[0].kernel_size == (7, 7)
        assert (cfg.method.selector.latent_dim, cfg.loss_prediction.eta) == (128, 0.2)
        assert (cfg.budget.initial, cfg.budget.query, cfg.loader.batch_size) == (1000, 500, 16)


def test_the_small_datasets_share_one_cpu_sized_vae_file():
    """conf/tuning/shared/cpu_vae.yaml holds the values once; the pairs' files name it, and
    shapes_seg's halve the VAE's passes (its 2-minute budget)."""
    for method in ("vaal", "ta_vaal", "sraal"):
        for dataset, passes in (("digits", 10), ("shapes_seg", 5)):
            selector = compose_config(f"method={method}", f"dataset={dataset}").method.selector
            assert (list(selector.channels), selector.epochs_v) == ([16, 32, 32, 64], passes)
    assert compose_config("method=vaal", "dataset=cifar10").method.selector.epochs_v == 100
