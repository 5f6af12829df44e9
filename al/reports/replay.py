"""Replaying a finished stage: its task module retrained exactly as the run trained it, for the
reports that need the model a stage selected with (analyses, sample grids, the toy figure)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from al.build import build_experiment
from al.loop import run_stage
from al.pool import UNLABELED, Pool
from al.progress import stage_progress
from al.sinks import EpochMetricsCallback, Sink
from al.store import read_snapshot
from al.synthetic import SyntheticPairs


def saved_picks(run_dir: Path, stage: int) -> np.ndarray:
    """The global indices `picks/stage_KKK.csv` holds, best first."""
    path = run_dir / "picks" / f"stage_{stage:03d}.csv"
    return np.loadtxt(path, delimiter=",", skiprows=1, usecols=0, dtype=np.int64, ndmin=1)


def retrain_stage(cfg, data, run_dir: Path, stage: int) -> tuple:
    """(module, picks, pool) of `stage`: the task module retrained exactly as the run trained it
    (every draw derives from (seed, stage)), its picks, checked against the saved ones, and the
    pool as it stood before them."""
    snapshot = read_snapshot(run_dir / "state" / f"stage_{stage:03d}.pt")
    labelled_at = snapshot["labelled_at"]
    pool = Pool(len(labelled_at))
    pool.load_state_dict({"labelled_at": np.where(labelled_at <= stage, labelled_at, UNLABELED)})
    experiment = dataclasses.replace(build_experiment(cfg), data=data)
    epoch_logger = EpochMetricsCallback(Sink(), stage, 0)
    synthetic = synthetic_before(snapshot.get("synthetic"), stage)
    outcome = run_stage(experiment, pool, stage, None, epoch_logger, stage_progress(), synthetic)
    picks = outcome.selection.indices.numpy()
    if not np.array_equal(picks, saved_picks(run_dir, stage)):
        raise RuntimeError(f"retraining stage {stage} in {run_dir} did not reproduce its picks")
    return outcome.module, picks, pool


def synthetic_before(state: dict | None, stage: int) -> SyntheticPairs:
    """The synthetic pairs stage `stage` trained on: those made by the stages before it."""
    pairs = SyntheticPairs()
    if state is not None:
        kept = state["stage"] <= stage
        pairs.load_state_dict({key: values[kept] for key, values in state.items()})
    return pairs
