"""A run directory's persistent state: per-stage snapshots, picks and results.jsonl.

Each finished stage writes `state/stage_KKK.pt` atomically (pool state, the
records so far and, for warm starts, the model weights). `results.jsonl` is
rewritten from the latest snapshot, so a run killed at any moment resumes
after its last finished stage without duplicate rows. Under DDP only global rank 0
writes; every rank reads the same snapshots.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from al.errors import ConfigError

# Keys that may change between the runs sharing a directory: where to log, and
# how many stages (rerunning with more stages extends a finished run).
RESUMABLE_KEYS = ("logger", "budget.stages")


class RunStore:
    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.state_dir = self.run_dir / "state"
        self.picks_dir = self.run_dir / "picks"
        self.results_path = self.run_dir / "results.jsonl"

    def claim(self, cfg: DictConfig) -> None:
        """Remember `cfg` for this directory, or refuse a config that differs from the saved one
        once a stage has finished under it (checked on every rank)."""
        saved_path = self.state_dir / "config.yaml"
        if not saved_path.exists() or self.latest() is None:
            self._remember(cfg)
            return
        differences = config_differences(OmegaConf.load(saved_path), cfg)
        if differences:
            self._restore_hydra_files()
            raise ConfigError(
                f"{self.run_dir} holds a run with another config ({'; '.join(differences)}). "
                "Refusing to mix results: rerun with the saved values to resume, or choose a new "
                f"hydra.run.dir (or delete {self.run_dir}) to start fresh"
            )

    def latest(self) -> dict[str, Any] | None:
        """The snapshot of the last finished stage, or None for a fresh directory."""
        snapshots = sorted(self.state_dir.glob("stage_*.pt"))
        if not snapshots:
            return None
        snapshot = torch.load(snapshots[-1], weights_only=True)
        snapshot["labelled_at"] = snapshot["labelled_at"].numpy()
        return snapshot

    @rank_zero_only
    def save_stage(
        self,
        stage: int,
        labelled_at: np.ndarray,
        records: list[dict],
        model_state: dict | None,
    ) -> None:
        snapshot = {
            "labelled_at": torch.from_numpy(labelled_at),
            "records": records,
            "model": model_state,
        }
        atomic_torch_save(snapshot, self.state_dir / f"stage_{stage:03d}.pt")
        self.write_results(records)

    @rank_zero_only
    def save_picks(
        self, stage: int, indices: np.ndarray, scores: np.ndarray, labels: np.ndarray
    ) -> None:
        """`picks/stage_KKK.csv`: stage K's picks, best first, with the labels they revealed."""
        self.picks_dir.mkdir(parents=True, exist_ok=True)
        rows = ["index,score,label"]
        rows += [f"{i},{s:.8g},{y}" for i, s, y in zip(indices, scores, labels, strict=True)]
        atomic_write_text(self.picks_dir / f"stage_{stage:03d}.csv", "\n".join(rows) + "\n")

    @rank_zero_only
    def write_results(self, records: list[dict]) -> None:
        lines = "".join(json.dumps(record) + "\n" for record in records)
        atomic_write_text(self.results_path, lines)

    @rank_zero_only
    def _remember(self, cfg: DictConfig) -> None:
        """Save `cfg` and a backup of Hydra's `.hydra/` files under `state/`."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(cfg, self.state_dir / "config.yaml", resolve=True)
        hydra_dir = self.run_dir / ".hydra"
        if hydra_dir.is_dir():
            shutil.copytree(hydra_dir, self.state_dir / "hydra", dirs_exist_ok=True)

    @rank_zero_only
    def _restore_hydra_files(self) -> None:
        backup = self.state_dir / "hydra"
        if backup.is_dir():
            shutil.copytree(backup, self.run_dir / ".hydra", dirs_exist_ok=True)


def config_differences(saved: DictConfig, current: DictConfig) -> list[str]:
    """`key: saved → current` for every leaf that differs, ignoring RESUMABLE_KEYS."""
    old = flatten(OmegaConf.to_container(saved, resolve=True))
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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def atomic_torch_save(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
