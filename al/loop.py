"""The AL stages: fit → evaluate → select → label → save, resumable after any finished stage.

Under DDP every rank runs this loop; they label rank 0's picks, check that their pools agree
after every stage, and only global rank 0 writes (see `al.runtime.distributed`).
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.strategies import Strategy
from rich.progress import Progress

from al.best_weights import BestValidationWeights
from al.budget import Budget
from al.checks import check_config, check_selector, check_stop_rule, check_task
from al.data import ALData, ALDataModule, datamodule_for
from al.errors import ConfigError, NonFiniteLossError, build
from al.initial import KCenterSettings, initial_indices
from al.methods.selector import Selection, SelectionRequest, Selector
from al.pool import Pool, stage_rng
from al.progress import EpochProgressCallback, stage_progress
from al.results import plot_curve, print_pick_classes, print_table, stage_record
from al.runtime import signals
from al.runtime.distributed import (
    check_same_pool,
    is_global_zero,
    refuse_distributed_for,
    refuse_spawning_in_multirun,
)
from al.runtime.lock import RunDirectoryLock
from al.sinks import EpochMetricsCallback, Sink
from al.stop import StopRule
from al.store import RunStore, best_effort
from al.synthetic import SyntheticPairs, synthesize_picks
from al.tasks.extensions import SampleLabels

log = logging.getLogger(__name__)


@dataclass
class StageOutcome:
    test_metrics: dict[str, float]
    selection: Selection
    epochs: int
    train_seconds: float
    model_state: dict | None
    module: pl.LightningModule
    strategy: Strategy


def run(cfg: DictConfig, run_dir: Path) -> list[dict]:
    """Run (or resume) the experiment `cfg` in `run_dir`; return one record per stage.

    Every value and the data are checked before the run directory is touched (the method's
    task module and selector are built once, so their constructors check their options); then
    the directory is locked for the life of the run (on global rank 0, the one that writes).
    """
    budget = check_config(cfg)
    refuse_spawning_in_multirun(cfg.trainer)
    data = build_data(cfg.dataset)
    if cfg.eval_model == "best_val":
        data = data.hold_out_validation(cfg.validation_fraction)
    budget = budget.resolve(len(data.pool_targets))
    check_task(cfg, data.task, budget)
    stop_rule = build(cfg.stop) if cfg.stop else None
    budget.check_classes_fit(data.pool_targets, data.num_classes)
    module = build_module(cfg, data.num_classes)  # the method's constructors check its options
    refuse_distributed_for(module, cfg.trainer, cfg.method.name)
    selector: Selector = build(cfg.method.selector)
    check_selector(selector, module, cfg.method.name)
    check_stop_rule(stop_rule, selector, cfg.method.name)
    with RunDirectoryLock(run_dir) if is_global_zero() else nullcontext():
        store = RunStore(run_dir)
        store.claim(cfg)
        return run_stages(cfg, data, budget, stop_rule, store)


def run_stages(
    cfg: DictConfig, data: ALData, budget: Budget, stop_rule: StopRule | None, store: RunStore
) -> list[dict]:
    """The stages after the last finished one, up to `budget.stages` or the stopping rule;
    the sink and curve are written best-effort."""
    pool, synthetic, records, model_state = resume_or_start(store, budget, data, cfg)
    if records and stopped(records[-1], stop_rule):
        log.info("This run stopped after stage %d: %s", len(records) - 1, records[-1]["stopped"])
        title = f"{cfg.method.name} on {cfg.dataset.name}, seed {cfg.seed}"
        print_table(records, title, data.task)
        return records
    sink = build_sink(cfg.logger)
    sink.start(store.run_dir, OmegaConf.to_container(cfg, resolve=True), records)
    title = f"{cfg.method.name} on {cfg.dataset.name}, seed {cfg.seed}"
    metric = data.task.primary_metric
    try:
        with stage_progress() as progress:
            stages_task = progress.add_task("stages", total=budget.stages, status="")
            progress.update(stages_task, completed=len(records))
            for stage in range(len(records), budget.stages):
                epochs_before = sum(record["epochs"] for record in records)
                outcome = run_stage(
                    cfg,
                    data,
                    pool,
                    budget,
                    stage,
                    model_state,
                    EpochMetricsCallback(sink, stage, epochs_before),
                    progress,
                    synthetic,
                )
                finished = StageState(pool, synthetic, records)
                records.append(finish_stage(store, data, finished, stop_rule, stage, outcome, cfg))
                model_state = outcome.model_state
                signals.enter("logging")
                with best_effort(f"the {type(sink).__name__} log"):
                    sink.log_stage(records[-1])
                with best_effort("curve.png"):
                    plot_curve(records, store.run_dir / "curve.png", title, data.task)
                status = f"{metric.removeprefix('test/')} {records[-1][metric]:.3f}"
                progress.update(stages_task, advance=1, status=status)
                if stopped(records[-1], stop_rule):
                    log.info("Stopping after stage %d: %s", stage, records[-1]["stopped"])
                    break
    finally:
        sink.finish()
    print_table(records, title, data.task)
    if cfg.print_pick_classes:
        print_pick_classes(records, cfg.dataset.get("class_names"))
    return records


def stopped(record: dict, stop_rule: StopRule | None) -> bool:
    """Whether the run ended at this record's stage by a stopping rule that still holds
    (switching the rule off extends a stopped run)."""
    return "stopped" in record and stop_rule is not None


def build_sink(logger_cfg: DictConfig) -> Sink:
    """The configured sink on global rank 0; the other DDP ranks log nowhere."""
    return build(logger_cfg) if is_global_zero() else Sink()


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


def resume_or_start(
    store: RunStore, budget: Budget, data: ALData, cfg: DictConfig
) -> tuple[Pool, SyntheticPairs, list[dict], dict | None]:
    """The pool, synthetic pairs, records and warm-start weights after the last finished
    stage, or a fresh start."""
    snapshot = store.latest()
    pool_size = len(data.pool_targets)
    synthetic = SyntheticPairs()
    if snapshot is None:
        settings = KCenterSettings(**cfg.kcenter_init)
        signals.enter("choosing the initial pool")
        indices = initial_indices(
            budget.initial_strategy,
            data,
            budget.initial,
            cfg.seed,
            settings,
            budget.initial_classes,
            build(cfg.trainer),
        )
        return Pool.with_labeled(pool_size, indices), synthetic, [], None
    pool = Pool(pool_size)
    pool.load_state_dict(snapshot)
    if snapshot.get("synthetic") is not None:
        synthetic.load_state_dict(snapshot["synthetic"])
    store.write_results(snapshot["records"])
    log.info("Resuming %s after stage %d", store.run_dir, len(snapshot["records"]) - 1)
    return pool, synthetic, snapshot["records"], snapshot["model"]


def run_stage(
    cfg: DictConfig,
    data: ALData,
    pool: Pool,
    budget: Budget,
    stage: int,
    model_state: dict | None,
    epoch_logger: pl.Callback,
    progress: Progress,
    synthetic: SyntheticPairs | None = None,
) -> StageOutcome:
    """Train a task module on the labeled pool (and the synthetic pairs), test it and select
    the next `query` samples."""
    pl.seed_everything(derived_seed(cfg.seed, stage, "torch"), workers=True, verbose=False)
    module = build_module(cfg, data.num_classes)
    if model_state is not None and not cfg.reinit_each_stage:
        module.load_state_dict(model_state)
    wants_unlabeled = module.unlabeled_training
    unlabeled = None if wants_unlabeled is None else (pool.unlabeled_indices, wants_unlabeled)
    datamodule = datamodule_for(
        data, pool.labeled_indices, unlabeled, synthetic, module.labeled_sample_ids, **cfg.loader
    )
    selector: Selector = build(cfg.method.selector)
    request = selection_request(datamodule, pool, budget, cfg.seed, stage, data)
    selector.request(request)
    callbacks = [
        EpochProgressCallback(progress, f"stage {stage}: {len(pool.labeled_indices)} labels"),
        epoch_logger,
        *([BestValidationWeights()] if cfg.eval_model == "best_val" else []),
        *configured_callbacks(cfg.callbacks),
        selector,
    ]
    trainer: pl.Trainer = build(cfg.trainer, callbacks=callbacks)
    start = time.perf_counter()
    signals.enter("training", stage)
    try:
        trainer.fit(module, datamodule=datamodule)
    except NonFiniteLossError as error:
        raise NonFiniteLossError(f"stage {stage}: {error}") from error
    fit_seconds = time.perf_counter() - start
    if selector.selection is None:
        raise ConfigError(
            f"stage {stage}: training ended before it started (trainer.max_epochs="
            f"{cfg.trainer.get('max_epochs')}), so nothing was selected; train at least one epoch"
        )
    signals.enter("testing")
    test_metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    keep_weights = not cfg.reinit_each_stage
    return StageOutcome(
        test_metrics=test_metrics,
        selection=selector.selection,
        epochs=trainer.current_epoch,
        train_seconds=fit_seconds - selector.selection.seconds,
        model_state=module.state_dict() if keep_weights else None,
        module=module,
        strategy=trainer.strategy,
    )


def configured_callbacks(callbacks_cfg: DictConfig | None) -> list[pl.Callback]:
    """Fresh instances of the `callbacks` group's entries (name → `_target_` node) for one
    stage's Trainer; an entry set to null is left out."""
    return [build(node) for node in (callbacks_cfg or {}).values() if node is not None]


def build_module(cfg: DictConfig, num_classes: int) -> pl.LightningModule:
    """A fresh task module of the configured method around a fresh backbone, for the
    dataset's task."""
    scheduler = build(cfg.scheduler) if cfg.scheduler is not None else None
    return build(
        cfg.method.module,
        backbone=build(cfg.model),
        optimizer=build(cfg.optimizer),
        scheduler=scheduler,
        num_classes=num_classes,
        task=build(cfg.dataset.task),
    )


def selection_request(
    datamodule: ALDataModule, pool: Pool, budget: Budget, seed: int, stage: int, data: ALData
) -> SelectionRequest:
    """The candidates and labeled samples of this stage, and the labeled ones' sample-level
    labels (the task's: classes, or the classes each mask holds)."""
    candidates = pool.candidates(budget.subset, seed, stage)
    return SelectionRequest(
        candidates=datamodule.inputs_loader(candidates),
        labeled=datamodule.inputs_loader(datamodule.labeled_indices),
        candidate_indices=torch.from_numpy(candidates),
        query=budget.query,
        seed=derived_seed(seed, stage, "select"),
        labeled_labels=labeled_sample_labels(data, datamodule.labeled_indices),
    )


def labeled_sample_labels(data: ALData, labeled: np.ndarray) -> torch.Tensor | None:
    """The labeled samples' sample-level labels, where the task offers them (SampleLabels)."""
    if not isinstance(data.task, SampleLabels):
        return None
    return data.task.sample_labels(data.pool_targets, labeled, data.num_classes)


@dataclass
class StageState:
    """What a finished stage updates: the pool, the synthetic pairs, the records so far."""

    pool: Pool
    synthetic: SyntheticPairs
    records: list[dict]


def finish_stage(
    store: RunStore,
    data: ALData,
    state: StageState,
    stop_rule: StopRule | None,
    stage: int,
    outcome: StageOutcome,
    cfg: DictConfig,
) -> dict:
    """Label the picks (and let a module that stores synthetic pairs make theirs), check every
    rank did the same, then persist picks, pool, synthetic pairs and records (with the
    selector's stage metrics, `n_synthetic`, `tied_picks` and, when a stopping rule fires,
    `stopped`: why):
    the stage is finished."""
    pool, records = state.pool, state.records
    labeled = pool.labeled_indices
    labeled_counts = data.task.class_counts(data.pool_targets, labeled, data.num_classes)
    trained_on_synthetic = len(state.synthetic)
    picks = outcome.selection.indices.numpy()
    pool.label(picks, stage=stage + 1)
    batch_size = cfg.loader.eval_batch_size
    signals.enter("synthesis")
    synthesize_picks(outcome.module, data, picks, state.synthetic, stage + 1, batch_size)
    check_same_pool(outcome.strategy, pool.labelled_at, stage)
    record = stage_record(
        stage,
        len(labeled),
        labeled_counts,
        data.task.class_counts(data.pool_targets, picks, data.num_classes),
        outcome.test_metrics,
        outcome.epochs,
        outcome.train_seconds,
        outcome.selection.seconds,
    )
    record["n_synthetic"] = trained_on_synthetic
    record["tied_picks"] = outcome.selection.tied_picks
    record.update(outcome.selection.metrics)
    reason = None if stop_rule is None else stop_rule.reason(record)
    if reason is not None:
        record["stopped"] = reason
    signals.enter("saving")
    with signals.deferred():  # the stage's files are written whole, or the stage is redone
        picked_labels = data.task.pick_labels(data.pool_targets, picks)
        store.save_picks(stage, picks, outcome.selection.scores.numpy(), picked_labels)
        store.save_diagnostics(stage, outcome.selection.diagnostics)
        store.save_stage(
            stage,
            pool.labelled_at,
            [*records, record],
            outcome.model_state,
            state.synthetic.state_dict(),
        )
    return record


def derived_seed(seed: int, stage: int, purpose: str) -> int:
    return int(stage_rng(seed, stage, purpose).integers(2**31 - 1))
