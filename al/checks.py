"""The run's own config values, checked before anything is written: each bad value raises one
ConfigError naming the key as the user types it and a value that works."""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from al.budget import Budget
from al.data.datamodule import ALDataModule, check_device_augmentation
from al.errors import ConfigError
from al.methods.selector import Selector
from al.options import check_options, check_target_options
from al.stop import StopRule
from al.tasks import Task, check_supported

EVAL_MODELS = ("last", "best_val")
# The groups built from a `_target_`: each option is checked against the hints of what it builds.
BUILT_GROUPS = ("method.module", "method.selector", "model", "optimizer", "scheduler", "trainer")


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
    return Budget(**cfg.budget)


def check_built_options(cfg: DictConfig) -> None:
    """Every option of the built groups, and the loader's, against its type hint."""
    for key in BUILT_GROUPS:
        node = OmegaConf.select(cfg, key)
        if node is not None:
            check_target_options(node, key)
    check_options(cfg.loader, "loader", ALDataModule)


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
