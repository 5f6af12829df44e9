"""The composition root: one experiment's typed objects, built and checked once from its config.

`build_experiment` checks every value and builds the data, budget, stopping rule and the
factories of the task module, selector, Trainer and sink; the method's constructors run once
here, so their option checks fail before anything is written. The loop receives the
`Experiment` and never reads the config.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from al.budget import Budget
from al.checks import check_config, check_selector, check_stop_rule, check_task
from al.data import ALData
from al.encoders import embedding_mode, representation_weights
from al.errors import ConfigError, build
from al.initial import KCenterSettings
from al.methods.module import TaskModule
from al.methods.selector import Selector
from al.runtime.distributed import (
    is_global_zero,
    refuse_distributed_for,
    refuse_spawning_in_multirun,
)
from al.sinks import Sink
from al.stop import StopRule
from al.tasks import Task


@dataclass(frozen=True)
class Experiment:
    """What one run is: its data and budget, how each stage builds its module, selector and
    Trainer, and what the run reports. `loader` holds the datamodule's settings."""

    method: str
    seed: int
    data: ALData
    budget: Budget
    stop_rule: StopRule | None
    make_module: Callable[[], TaskModule]
    make_selector: Callable[[], Selector]
    make_trainer: Callable[[list[pl.Callback]], pl.Trainer]
    make_callbacks: Callable[[], list[pl.Callback]]
    make_sink: Callable[[], Sink]
    loader: dict[str, Any]
    keep_weights: bool
    best_val: bool
    kcenter: KCenterSettings
    print_pick_classes: bool
    class_names: list[str] | None
    title: str


def build_experiment(cfg: DictConfig) -> Experiment:
    """Check `cfg` and build its experiment (module and selector once, to run their checks)."""
    budget = check_config(cfg)
    refuse_spawning_in_multirun(cfg.trainer)
    data = build_data(cfg.dataset)
    if cfg.eval_model == "best_val":
        data = data.hold_out_validation(cfg.validation_fraction)
    budget = budget.resolve(len(data.pool_targets))
    check_task(cfg, data.task, budget)
    budget.check_classes_fit(data.pool_targets, data.num_classes)
    stop_rule = build(cfg.stop) if cfg.get("stop") else None  # runs before `stop` had none
    cfg = with_semi_protocol(cfg, data)
    check_method(cfg, data, stop_rule)
    weights = representation_weights(cfg, data)
    if cfg.get("embedding"):
        cfg, data = embedding_mode(cfg, data, weights)
        weights = None
        check_method(cfg, data, stop_rule)
    make_module = module_factory(cfg, data.num_classes, data.task, weights)
    selector_cfg = cfg.method.selector
    return Experiment(
        method=cfg.method.name,
        seed=cfg.seed,
        data=data,
        budget=budget,
        stop_rule=stop_rule,
        make_module=make_module,
        make_selector=lambda: build(selector_cfg),
        make_trainer=lambda callbacks: build(cfg.trainer, callbacks=callbacks),
        make_callbacks=lambda: configured_callbacks(cfg.get("callbacks")),
        make_sink=lambda: build(cfg.logger) if is_global_zero() else Sink(),
        loader=OmegaConf.to_container(cfg.loader, resolve=True),
        keep_weights=not cfg.reinit_each_stage,
        best_val=cfg.eval_model == "best_val",
        kcenter=KCenterSettings(**cfg.kcenter_init),
        print_pick_classes=cfg.print_pick_classes,
        class_names=cfg.dataset.get("class_names"),
        title=f"{cfg.method.name} on {cfg.dataset.name}, seed {cfg.seed}",
    )


def with_semi_protocol(cfg: DictConfig, data: ALData) -> DictConfig:
    """`cfg`, or under `semi` a copy whose optimizer, scheduler (FixMatch's cosine over every
    step) and epochs of `steps_per_epoch` steps are the semi-supervised protocol's."""
    semi = cfg.get("semi")
    if not semi:
        return cfg
    if "semi" not in cfg.method.module:
        raise ConfigError(
            f"method={cfg.method.name} trains its own regime, and semi={semi.name} applies to "
            "the standard classifier's methods (docs/semi-supervised.md): use semi=none"
        )
    if data.pool.pixel_stats is None or cfg.get("embedding"):
        raise ConfigError(
            f"semi={semi.name} augments images, and these inputs are not: use semi=none"
        )
    semi_cfg = copy.deepcopy(cfg)
    with open_dict(semi_cfg):
        semi_cfg.optimizer = semi.optimizer
        semi_cfg.scheduler = {
            "_target_": "al.semi.protocol.fixmatch_cosine",
            "_partial_": True,
            "total_steps": semi.epochs * semi.steps_per_epoch,
        }
        semi_cfg.trainer.max_epochs = semi.epochs
        semi_cfg.trainer.limit_train_batches = semi.steps_per_epoch
    return semi_cfg


def check_method(cfg: DictConfig, data: ALData, stop_rule: StopRule | None) -> None:
    """Build the method's module and selector once, so that their refusals come first."""
    module = module_factory(cfg, data.num_classes, data.task)()
    refuse_distributed_for(module, cfg.trainer, cfg.method.name)
    selector = build(cfg.method.selector)
    check_selector(selector, module, cfg.method.name)
    check_stop_rule(stop_rule, selector, cfg.method.name)


def build_data(dataset_cfg: DictConfig) -> ALData:
    """The dataset with its config's task, checked against its config; a
    `dataset.num_classes` left null (image folders) is filled in from the data."""
    data = build(dataset_cfg.build)
    data.task = build(dataset_cfg.task)
    if dataset_cfg.num_classes is None:
        dataset_cfg.num_classes = data.num_classes
    data.check_declared(
        dataset_cfg.name,
        dataset_cfg.num_classes,
        dataset_cfg.input_shape,
        dataset_cfg.get("pool_size"),
    )
    return data


def build_module(cfg: DictConfig, num_classes: int) -> TaskModule:
    """One task module of `cfg`'s method, for its dataset's task."""
    return module_factory(cfg, num_classes, build(cfg.dataset.task))()


def module_factory(
    cfg: DictConfig,
    num_classes: int,
    task: Task,
    weights: dict[str, torch.Tensor] | None = None,
) -> Callable[[], TaskModule]:
    """Fresh task modules of the configured method around fresh backbones, for `task`; their
    backbones start from pretrained `weights` (all but the classifier) when given."""

    def make_module() -> TaskModule:
        scheduler = build(cfg.scheduler) if cfg.scheduler is not None else None
        module = build(
            cfg.method.module,
            backbone=build(cfg.model),
            optimizer=build(cfg.optimizer),
            scheduler=scheduler,
            num_classes=num_classes,
            task=task,
        )
        if weights is not None:
            module.load_pretrained(weights)
        return module

    return make_module


def configured_callbacks(callbacks_cfg: DictConfig | None) -> list[pl.Callback]:
    """Fresh instances of the `callbacks` group's entries (name → `_target_` node) for one
    stage's Trainer; an entry set to null is left out."""
    return [build(node) for node in (callbacks_cfg or {}).values() if node is not None]
