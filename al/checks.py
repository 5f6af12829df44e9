"""The run's own config values, checked before anything is written: each bad value raises one
ConfigError naming the key as the user types it and a value that works."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class
from lightning_fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from al.budget import Budget
from al.data.datamodule import ALDataModule, check_device_augmentation
from al.errors import ConfigError, build
from al.methods.selector import Selector
from al.options import check_known, check_options, check_target_options
from al.stop import StopRule
from al.tasks import Task, check_supported

EVAL_MODELS = ("last", "best_val")
# The groups built from a `_target_`: each option is checked against the hints of what it builds.
BUILT_GROUPS = (
    "method.module",
    "method.selector",
    "model",
    "optimizer",
    "scheduler",
    "trainer",
    "representation",
    "embedding.head",
    "semi.settings",
    "semi.optimizer",
)


def check_config(cfg: DictConfig) -> Budget:
    """Check the loop's keys; return the (unresolved) budget."""
    check_integer("seed", cfg.seed, minimum=0, example="0")
    check_integer("loader.batch_size", cfg.loader.batch_size, minimum=1, example="32")
    check_integer("loader.eval_batch_size", cfg.loader.eval_batch_size, minimum=1, example="256")
    if cfg.loader.num_workers != "auto":
        check_integer("loader.num_workers", cfg.loader.num_workers, minimum=0, example="auto")
    check_device_augmentation(cfg.loader.device_augmentation)
    if cfg.eval_model not in EVAL_MODELS:
        raise ConfigError(
            f"eval_model={cfg.eval_model!r} is not one of {', '.join(EVAL_MODELS)}: "
            "e.g. eval_model=last"
        )
    if not isinstance(cfg.reinit_each_stage, bool):
        raise ConfigError(f"reinit_each_stage={cfg.reinit_each_stage!r} must be true or false")
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None:
        check_integer(
            "trainer.max_epochs", max_epochs, minimum=1, example="10 (train at least one epoch)"
        )
    check_built_options(cfg)
    check_known(cfg.budget, "budget", Budget)
    return Budget(**cfg.budget)


def check_built_options(cfg: DictConfig) -> None:
    """Every option of the built groups, and the loader's, against its type hint."""
    for key in BUILT_GROUPS:
        node = OmegaConf.select(cfg, key)
        if node:  # an empty group (representation=none) builds nothing
            check_target_options(node, key)
    check_options(cfg.loader, "loader", ALDataModule)
    check_optimizer_builds(cfg.optimizer, cfg.get("scheduler"))
    check_trainer_builds(cfg.trainer)


# Words torch's optimizers use in their refusals, for the option each names.
OPTIMIZER_WORDS = {"learning rate": "lr", "epsilon": "eps", "beta": "betas"}


def check_optimizer_builds(optimizer: DictConfig, scheduler: DictConfig | None) -> None:
    """Build the optimizer (and scheduler) once on a dummy parameter: values their hints allow
    but torch refuses (a negative lr) become one line naming the option."""
    try:
        built = build(optimizer)([torch.zeros(1, requires_grad=True)])
        if scheduler is not None:
            build(scheduler)(built)
    except (ValueError, TypeError) as error:
        raise ConfigError(refusal("optimizer", optimizer, error)) from None


def check_trainer_builds(trainer: DictConfig) -> None:
    """Build the Trainer once (it starts nothing): Lightning's refusal of a value (devices='abc',
    an accelerator the machine lacks) becomes one line."""
    try:
        build(trainer, callbacks=[])
    except InstantiationException as error:
        if not isinstance(error.__cause__, ValueError | TypeError | MisconfigurationException):
            raise
        raise ConfigError(refusal("trainer", trainer, error.__cause__)) from None


def refusal(key: str, node: DictConfig, error: Exception) -> str:
    """A library's refusal of `node`'s options, naming the first option its message names."""
    message = str(error).rstrip(".")
    target = node._target_
    values = OmegaConf.to_container(node, resolve=True)
    named = [name for name in values if not name.startswith("_") and name in message]
    named += [name for word, name in OPTIMIZER_WORDS.items() if word in message and name in node]
    named += [name for name, value in values.items() if f" {value} " in f" {message} "]
    if not named:
        return f"{key}: {target} refuses its options ({message}): fix the {key}.* value it names"
    name = named[0]
    value = values[name]
    return f"{key}.{name}={value!r} is refused by {target} ({message}): change {key}.{name}"


def check_integer(key: str, value: Any, minimum: int, example: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        bound = "a positive integer" if minimum == 1 else f"an integer ≥ {minimum}"
        raise ConfigError(f"{key}={value!r} must be {bound}: e.g. {key}={example}")


def check_task(cfg: DictConfig, task: Task, budget: Budget) -> None:
    """Refuse a method or model that does not support the dataset's task, before anything is
    built (a classification-only module may not even construct on segmentation data)."""
    method = cfg.method.name
    fix = f"choose a method that supports {task.name} (docs/tasks.md), or another dataset"
    for part in ("module", "selector"):
        cls = get_class(cfg.method[part]._target_)
        check_supported(task, f"method={method}'s {part}", cls, fix)
    model_fix = f"choose a {task.name} model (docs/tasks.md), e.g. model=auto"
    check_supported(task, "the model", get_class(cfg.model._target_), model_fix)
    if budget.initial_classes is not None and not task.one_label_per_sample:
        raise ConfigError(
            f"budget.initial_classes needs one class label per sample; {task.name} samples have "
            "many: set budget.initial_classes=null"
        )


def check_selector(selector: Selector, module: pl.LightningModule, method: str) -> None:
    """The selector's refusal of the module, if any, as one line naming the method."""
    try:
        selector.check_module(module)
    except ConfigError as error:
        raise ConfigError(f"method={method}: {error}") from None


def check_stop_rule(rule: StopRule | None, selector: Selector, method: str) -> None:
    """Refuse a stopping rule that reads a metric the method's selector does not report."""
    if rule is not None and rule.metric not in selector.reported_metrics:
        reported = ", ".join(selector.reported_metrics) or "none"
        raise ConfigError(
            f"stop.metric={rule.metric} is not a metric method={method} reports (it reports: "
            f"{reported}): choose stop=none, or a method that reports it"
        )
