"""The AL stages: fit → select → evaluate → label → save, resumable after any finished stage.

The loop receives an `Experiment` (`al.build`), built and checked once from the config, and
never reads the config. Under DDP every rank runs this loop; they label rank 0's picks, check
that their pools agree after every stage, and only global rank 0 writes (see
`al.runtime.distributed`).
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
from al.build import Experiment, build_experiment
from al.compute import StageCompute, device_clock, peak_memory, reset_peak_memory
from al.data import ALData, ALDataModule, datamodule_for
from al.errors import ConfigError, NonFiniteLossError
from al.initial import initial_indices
from al.methods.module import TaskModule
from al.methods.selector import Selection, SelectionRequest
from al.pool import Pool, stage_rng
from al.progress import EpochProgressCallback, stage_progress
from al.results import plot_curve, print_pick_classes, print_table, stage_record
from al.runtime import signals
from al.runtime.distributed import check_same_pool, is_global_zero
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
    compute: StageCompute
    model_state: dict | None
    module: TaskModule
    strategy: Strategy


class ComputeMeter(pl.Callback):
    """A stage's compute on this process's device (`al.compute`): the clock starts and the
    memory peak resets when fitting sets up; training ends at this callback's `on_train_end`,
    which runs just before the selector's (it comes right before the selector in the
    callbacks); selection ends at `stop()`, after the fit returns."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            self.device = trainer.strategy.root_device
            reset_peak_memory(self.device)
            self.started = device_clock(self.device)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trained = device_clock(self.device)

    def stop(self) -> StageCompute:
        selected = device_clock(self.device)
        return StageCompute(
            self.trained - self.started, selected - self.trained, *peak_memory(self.device)
        )


def run(cfg: DictConfig, run_dir: Path) -> list[dict]:
    """Run (or resume) the experiment `cfg` in `run_dir`; return one record per stage.

    Every value and the data are checked before the run directory is touched
    (`build_experiment`); then the directory is locked for the life of the run (on global
    rank 0, the one that writes).
    """
    experiment = build_experiment(cfg)
    with RunDirectoryLock(run_dir) if is_global_zero() else nullcontext():
        store = RunStore(run_dir)
        store.claim(cfg)
        config = OmegaConf.to_container(cfg, resolve=True)
        return run_stages(experiment, store, config)


def run_stages(experiment: Experiment, store: RunStore, config: dict) -> list[dict]:
    """The stages after the last finished one, up to `budget.stages` or the stopping rule;
    the sink (started with the resolved `config`) and curve are written best-effort."""
    pool, synthetic, records, model_state = resume_or_start(store, experiment)
    task, stop_rule = experiment.data.task, experiment.stop_rule
    if records and stopped(records[-1], stop_rule):
        log.info("This run stopped after stage %d: %s", len(records) - 1, records[-1]["stopped"])
        print_table(records, experiment.title, task)
        return records
    sink = experiment.make_sink()
    sink.start(store.run_dir, config, records)
    try:
        with stage_progress() as progress:
            stages_task = progress.add_task("stages", total=experiment.budget.stages, status="")
            progress.update(stages_task, completed=len(records))
            for stage in range(len(records), experiment.budget.stages):
                epochs_before = sum(record["epochs"] for record in records)
                epoch_logger = EpochMetricsCallback(sink, stage, epochs_before)
                outcome = run_stage(
                    experiment, pool, stage, model_state, epoch_logger, progress, synthetic
                )
                finished = StageState(pool, synthetic, records)
                records.append(finish_stage(store, experiment, finished, stage, outcome))
                model_state = outcome.model_state
                report_stage(records, store, experiment, sink)
                metric = task.primary_metric
                status = f"{metric.removeprefix('test/')} {records[-1][metric]:.3f}"
                progress.update(stages_task, advance=1, status=status)
                if stopped(records[-1], stop_rule):
                    log.info("Stopping after stage %d: %s", stage, records[-1]["stopped"])
                    break
    finally:
        sink.finish()
    print_table(records, experiment.title, task)
    if experiment.print_pick_classes:
        print_pick_classes(records, experiment.class_names)
    return records


def report_stage(records: list[dict], store: RunStore, experiment: Experiment, sink: Sink) -> None:
    """The finished stage's record to the sink and the curve so far to curve.png."""
    signals.enter("logging")
    with best_effort(f"the {type(sink).__name__} log"):
        sink.log_stage(records[-1])
    with best_effort("curve.png"):
        plot_curve(records, store.run_dir / "curve.png", experiment.title, experiment.data.task)


def stopped(record: dict, stop_rule: StopRule | None) -> bool:
    """Whether the run ended at this record's stage by a stopping rule that still holds
    (switching the rule off extends a stopped run)."""
    return "stopped" in record and stop_rule is not None


def resume_or_start(
    store: RunStore, experiment: Experiment
) -> tuple[Pool, SyntheticPairs, list[dict], dict | None]:
    """The pool, synthetic pairs, records and warm-start weights after the last finished
    stage, or a fresh start."""
    snapshot = store.latest()
    data, budget = experiment.data, experiment.budget
    pool_size = len(data.pool_targets)
    synthetic = SyntheticPairs()
    if snapshot is None:
        signals.enter("choosing the initial pool")
        indices = initial_indices(
            budget.initial_strategy,
            data,
            budget.initial,
            experiment.seed,
            experiment.kcenter,
            budget.initial_classes,
            experiment.make_trainer([]),
            experiment.make_selector,
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
    experiment: Experiment,
    pool: Pool,
    stage: int,
    model_state: dict | None,
    epoch_logger: pl.Callback,
    progress: Progress,
    synthetic: SyntheticPairs | None = None,
) -> StageOutcome:
    """Train a task module on the labeled pool (and the synthetic pairs), select the next
    `query` samples and test it."""
    pl.seed_everything(derived_seed(experiment.seed, stage, "torch"), workers=True, verbose=False)
    module = experiment.make_module()
    module.stage = stage
    if model_state is not None and experiment.keep_weights:
        module.load_state_dict(model_state)
    datamodule = stage_datamodule(experiment, pool, module, synthetic)
    selector = experiment.make_selector()
    selector.request(selection_request(datamodule, pool, experiment, stage))
    meter = ComputeMeter()
    callbacks = [
        EpochProgressCallback(progress, f"stage {stage}: {len(pool.labeled_indices)} labels"),
        epoch_logger,
        *([BestValidationWeights()] if experiment.best_val else []),
        *experiment.make_callbacks(),
        *module.training_callbacks(),
        meter,
        selector,
    ]
    trainer = experiment.make_trainer(callbacks)
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
            f"{trainer.max_epochs}), so nothing was selected; train at least one epoch"
        )
    compute = meter.stop()
    signals.enter("testing")
    test_metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    return StageOutcome(
        test_metrics=test_metrics,
        selection=selector.selection,
        epochs=trainer.current_epoch,
        train_seconds=fit_seconds - selector.selection.seconds,
        compute=compute,
        model_state=module.state_dict() if experiment.keep_weights else None,
        module=module,
        strategy=trainer.strategy,
    )


def stage_datamodule(
    experiment: Experiment, pool: Pool, module: TaskModule, synthetic: SyntheticPairs | None
) -> ALDataModule:
    """The stage's loaders: labeled (and synthetic) pairs, and unlabeled batches for a module
    that trains on them."""
    wants_unlabeled = module.unlabeled_training
    unlabeled = None if wants_unlabeled is None else (pool.unlabeled_indices, wants_unlabeled)
    return datamodule_for(
        experiment.data,
        pool.labeled_indices,
        unlabeled,
        synthetic,
        module.labeled_sample_ids,
        **experiment.loader,
    )


def selection_request(
    datamodule: ALDataModule, pool: Pool, experiment: Experiment, stage: int
) -> SelectionRequest:
    """The candidates and labeled samples of this stage, and the labeled ones' sample-level
    labels (the task's: classes, or the classes each mask holds)."""
    candidates = pool.candidates(experiment.budget.subset, experiment.seed, stage)
    return SelectionRequest(
        candidates=datamodule.inputs_loader(candidates),
        labeled=datamodule.inputs_loader(datamodule.labeled_indices),
        candidate_indices=torch.from_numpy(candidates),
        query=experiment.budget.query,
        seed=derived_seed(experiment.seed, stage, "select"),
        labeled_labels=labeled_sample_labels(experiment.data, datamodule.labeled_indices),
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
    experiment: Experiment,
    state: StageState,
    stage: int,
    outcome: StageOutcome,
) -> dict:
    """Label the picks (and let a module that stores synthetic pairs make theirs), check every
    rank did the same, then persist picks, pool, synthetic pairs and the stage's record: the
    stage is finished."""
    data, pool = experiment.data, state.pool
    labeled = pool.labeled_indices
    trained_on_synthetic = len(state.synthetic)
    picks = outcome.selection.indices.numpy()
    pool.label(picks, stage=stage + 1)
    batch_size = experiment.loader["eval_batch_size"]
    signals.enter("synthesis")
    synthesize_picks(outcome.module, data, picks, state.synthetic, stage + 1, batch_size)
    check_same_pool(outcome.strategy, pool.labelled_at, stage)
    counts = (
        data.task.class_counts(data.pool_targets, labeled, data.num_classes),
        data.task.class_counts(data.pool_targets, picks, data.num_classes),
    )
    record = stage_record(
        stage,
        len(labeled),
        counts,
        outcome,
        trained_on_synthetic,
        experiment.stop_rule,
        state.records,
    )
    signals.enter("saving")
    with signals.deferred():  # the stage's files are written whole, or the stage is redone
        picked_labels = data.task.pick_labels(data.pool_targets, picks)
        store.save_picks(stage, picks, outcome.selection.scores.numpy(), picked_labels)
        store.save_diagnostics(stage, outcome.selection.diagnostics)
        store.save_stage(
            stage,
            pool.labelled_at,
            [*state.records, record],
            outcome.model_state,
            state.synthetic.state_dict(),
        )
    return record


def derived_seed(seed: int, stage: int, purpose: str) -> int:
    return int(stage_rng(seed, stage, purpose).integers(2**31 - 1))
