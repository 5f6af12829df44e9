"""A run directory's persistent state: per-stage snapshots, picks and results.jsonl.

Each finished stage writes `state/stage_KKK.pt` atomically (pool state, the
records so far, the synthetic training pairs and, for warm starts, the model weights),
then its SHA-256 in `state/stage_KKK.pt.sha256`. `results.jsonl` is rewritten from the
latest snapshot, so a run killed at any moment resumes after its last finished stage without
duplicate rows. A snapshot that fails its checksum or does not load is moved to
`state/damaged/` and the run resumes from the one before. Under DDP only global
rank 0 writes; every rank reads the same snapshots.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from al.errors import DISK_FULL, ConfigError, DataError, storage_error
from al.runtime.distributed import is_global_zero

log = logging.getLogger(__name__)

# Keys that may change between the runs sharing a directory: where to log, the root folders
# (`paths`: the dataset's own `root` is compared, resolved), how many stages
# (rerunning with more stages extends a finished run), the stopping rule (switching it off
# extends a run it stopped; the budget keys are where runs made before `stop` kept it) and what
# the end of a run prints (class names included: a run from before they were declared still
# resumes).
RESUMABLE_KEYS = (
    "logger",
    "paths",
    "dataset.class_names",
    "budget.stages",
    "stop",
    "budget.stop_when_discriminator_chance",
    "budget.chance_tolerance",
    "print_pick_classes",
    # Read by semi-supervised training alone, which runs began after the key was added.
    "dataset.hflip_keeps_label",
    "dataset.semi_labeled_augmentation",
)

# Keys that configs gained after runs were made with them, with the value those runs implied
# (`auto` augments in the loader on a CPU, as every run did before the key existed).
IMPLIED_BEFORE_ADDED = {
    "dataset.task._target_": "al.tasks.Classification",
    "loader.device_augmentation": "auto",
}


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.state_dir = self.run_dir / "state"
        self.picks_dir = self.run_dir / "picks"
        self.results_path = self.run_dir / "results.jsonl"

    def claim(self, cfg: DictConfig) -> None:
        """Remember `cfg` for this directory (and write Hydra's `.hydra/` files), or refuse a
        config that differs from the saved one once a stage has finished under it (checked on
        every rank, before anything is written)."""
        saved_path = self.state_dir / "config.yaml"
        if saved_path.exists() and self.snapshot_paths():
            differences = config_differences(OmegaConf.load(saved_path), cfg)
            if differences:
                raise ConfigError(
                    f"{self.run_dir} holds a run with another config ({'; '.join(differences)})."
                    " Refusing to mix results: rerun with the saved values to resume, or choose "
                    f"a new hydra.run.dir (or delete {self.run_dir}) to start fresh"
                )
        self._remember(cfg)

    def snapshot_paths(self) -> list[Path]:
        """The stage snapshots, newest first."""
        return sorted(self.state_dir.glob("stage_*.pt"), reverse=True)

    def latest(self) -> dict[str, Any] | None:
        """The newest valid snapshot, or None for a fresh directory. Damaged snapshots newer
        than it are moved to `state/damaged/`, each with a warning; if every snapshot is
        damaged, a DataError names them and nothing is moved."""
        damaged = []
        for path in self.snapshot_paths():
            try:
                snapshot = read_snapshot(path)
            except DamagedSnapshot as error:
                damaged.append((path, str(error)))
                continue
            for bad_path, reason in damaged:
                self._move_aside(bad_path, reason, len(snapshot["records"]) - 1)
            return snapshot
        if damaged:
            listed = "; ".join(f"{path.name}: {reason}" for path, reason in damaged)
            raise DataError(
                f"no valid snapshot in {self.state_dir} ({listed}): move {self.state_dir} "
                "aside to start afresh, or choose a new hydra.run.dir"
            )
        return None

    def _move_aside(self, path: Path, reason: str, resume_stage: int) -> None:
        """Keep a damaged snapshot (and its checksum) under `state/damaged/`, never delete it."""
        if is_global_zero():
            aside = self.state_dir / "damaged"
            aside.mkdir(exist_ok=True)
            target = unused_path(aside / path.name)
            os.replace(path, target)
            digest = checksum_path(path)
            if digest.exists():
                os.replace(digest, target.with_name(target.name + ".sha256"))
            log.warning(
                "%s is damaged (%s); moved to %s, resuming after stage %d",
                path,
                reason,
                target,
                resume_stage,
            )

    @rank_zero_only
    def save_stage(
        self,
        stage: int,
        labelled_at: np.ndarray,
        records: list[dict],
        model_state: dict | None,
        synthetic: dict | None = None,
    ) -> None:
        snapshot = {
            "labelled_at": torch.from_numpy(labelled_at),
            "records": records,
            "model": model_state,
            "synthetic": synthetic,
        }
        write_snapshot(snapshot, self.state_dir / f"stage_{stage:03d}.pt")
        self.write_results(records)

    @rank_zero_only
    def save_picks(
        self, stage: int, indices: np.ndarray, scores: np.ndarray, labels: Sequence
    ) -> None:
        """`picks/stage_KKK.csv`: stage K's picks, best first, with the labels they revealed
        (as the task writes them: a class, or the classes a mask holds)."""
        self.picks_dir.mkdir(parents=True, exist_ok=True)
        rows = ["index,score,label"]
        rows += [f"{i},{s:.8g},{y}" for i, s, y in zip(indices, scores, labels, strict=True)]
        atomic_write_text(self.picks_dir / f"stage_{stage:03d}.csv", "\n".join(rows) + "\n")

    @rank_zero_only
    def save_diagnostics(self, stage: int, diagnostics: dict[str, np.ndarray]) -> None:
        """`picks/stage_KKK_diagnostics.npz`: what the stage's selector kept for analysis."""
        if not diagnostics:
            return
        buffer = io.BytesIO()
        np.savez(buffer, **diagnostics)
        atomic_write_bytes(self.picks_dir / f"stage_{stage:03d}_diagnostics.npz", buffer.getvalue())

    @rank_zero_only
    def write_results(self, records: list[dict]) -> None:
        lines = "".join(json.dumps(record) + "\n" for record in records)
        atomic_write_text(self.results_path, lines)

    @rank_zero_only
    def _remember(self, cfg: DictConfig) -> None:
        """Save `cfg` under `state/` and, in a Hydra run, Hydra's `.hydra/` files (Hydra itself
        writes none: `hydra.output_subdir: null`, so a refused run leaves them untouched)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, self.state_dir / "config.yaml", resolve=True)
        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.get()
            hydra_dir = self.run_dir / ".hydra"
            hydra_dir.mkdir(exist_ok=True)
            OmegaConf.save(cfg, hydra_dir / "config.yaml")
            OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), hydra_dir / "hydra.yaml")
            OmegaConf.save(hydra_cfg.overrides.task, hydra_dir / "overrides.yaml")


def config_differences(saved: DictConfig, current: DictConfig) -> list[str]:
    """`key: saved → current` for every leaf that differs, ignoring RESUMABLE_KEYS; a key
    added since the saved run began counts as holding the value that run implied."""
    old = {**IMPLIED_BEFORE_ADDED, **flatten(OmegaConf.to_container(saved, resolve=True))}
    new = flatten(OmegaConf.to_container(current, resolve=True))
    keys = sorted(set(old) | set(new))
    return [
        f"{key}: {old.get(key, '<absent>')!r} → {new.get(key, '<absent>')!r}"
        for key in keys
        if old.get(key) != new.get(key) and not is_resumable(key)
    ]


def is_resumable(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class DamagedSnapshot(Exception):
    """A snapshot that fails its checksum, does not load, or does not hold a stage."""


def checksum_path(snapshot_path: Path) -> Path:
    return snapshot_path.with_name(snapshot_path.name + ".sha256")


def write_snapshot(snapshot: dict[str, Any], path: Path) -> None:
    """`torch.save` to `path` atomically and durably, then its SHA-256 beside it."""
    buffer = io.BytesIO()
    torch.save(snapshot, buffer)
    payload = buffer.getvalue()
    atomic_write_bytes(path, payload)
    atomic_write_text(checksum_path(path), hashlib.sha256(payload).hexdigest() + "\n")


def read_snapshot(path: Path) -> dict[str, Any]:
    """The snapshot at `path`, verified by its checksum (where one was written) and by
    loading it with `weights_only=True`; otherwise DamagedSnapshot says why."""
    payload = path.read_bytes()
    digest = checksum_path(path)
    if digest.exists() and digest.read_text().strip() != hashlib.sha256(payload).hexdigest():
        raise DamagedSnapshot(f"checksum mismatch, {len(payload)} bytes")
    try:
        snapshot = torch.load(io.BytesIO(payload), weights_only=True)
        snapshot["labelled_at"] = snapshot["labelled_at"].numpy()
        records = snapshot["records"]
    except Exception as error:  # torch raises RuntimeError, UnpicklingError, EOFError, …
        first_line = str(error).splitlines()[0][:80] if str(error) else ""
        raise DamagedSnapshot(
            f"unreadable, {len(payload)} bytes: {type(error).__name__} {first_line}".strip()
        ) from None
    stage = int(path.stem.removeprefix("stage_"))
    if len(records) != stage + 1:
        raise DamagedSnapshot(f"holds {len(records)} stages instead of {stage + 1}")
    return snapshot


def unused_path(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`, … — the first that does not exist."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}.{number}")
    return candidate


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write a temporary file, flush it to disk, then rename it over `path`; a full disk is a
    StorageError that says how to go on."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # apart for concurrent writers
    try:
        with open(tmp, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        if error.errno not in DISK_FULL:
            raise
        raise storage_error(path, error) from None


@contextmanager
def best_effort(what: str) -> Iterator[None]:
    """Writes the run can do without (plots, metric logs): a full disk or quota is a warning,
    and the next write tries again; the stage snapshots are never written this way."""
    try:
        yield
    except OSError as error:
        if error.errno not in DISK_FULL:
            raise
        log.warning(
            "Could not write %s (%s); continuing, the next stage retries", what, error.strerror
        )
