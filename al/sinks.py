"""Where metrics go besides results.jsonl: W&B (offline by default), CSV files, or nowhere.

The `logger` config group builds one sink per AL experiment: per-epoch training
metrics against `al/epoch`, per-stage metrics against `al/n_labeled`. A resumed
run hands the sink the records of its finished stages.
"""

from __future__ import annotations

import csv
import logging
import uuid
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from al.store import best_effort

log = logging.getLogger(__name__)


class Sink:
    """The interface, and the sink of `logger=none`: it drops everything."""

    def start(self, run_dir: Path, config: dict[str, Any], records: list[dict]) -> None:
        """Open the experiment's log; `config` is the composed config, `records` the stages
        finished before a resume."""

    def log_epoch(self, metrics: dict[str, float]) -> None:
        """Training metrics of one epoch, with `al/epoch` and `train/stage`."""

    def log_stage(self, record: dict[str, Any]) -> None:
        """One finished stage (a results.jsonl row)."""

    def finish(self) -> None:
        """Close the log."""


STAGE_KEY_NAMES = {"n_labeled": "al/n_labeled", "stage": "stage/index"}


def stage_scalars(record: dict[str, Any]) -> dict[str, float]:
    """The numeric fields of a record, named for W&B panels: `al/n_labeled`, `test/…`, `stage/…`."""
    return {
        STAGE_KEY_NAMES.get(key, key if "/" in key else f"stage/{key}"): value
        for key, value in record.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


class WandbSink(Sink):
    """One W&B run per AL experiment, grouped by dataset and method; resumes with the run dir."""

    def __init__(
        self,
        project: str,
        mode: str,
        group: str,
        job_type: str,
        name: str,
        entity: str | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self.settings = dict(
            project=project, mode=mode, group=group, job_type=job_type, name=name, entity=entity
        )
        self.tags = list(tags or [])
        self.run = None

    def start(self, run_dir: Path, config: dict[str, Any], records: list[dict]) -> None:
        import wandb

        id_path = Path(run_dir) / "wandb_id.txt"
        if not id_path.exists():
            id_path.write_text(uuid.uuid4().hex[:12])
        self.run = wandb.init(
            **self.settings,
            tags=self.tags,
            config=config,
            dir=str(run_dir),
            id=id_path.read_text().strip(),
            resume="allow",
            settings=wandb.Settings(silent=True),  # the run prints one line of its own at the end
        )
        self.run.define_metric("al/epoch")
        self.run.define_metric("train/*", step_metric="al/epoch")
        self.run.define_metric("al/n_labeled")
        self.run.define_metric("test/*", step_metric="al/n_labeled")
        self.run.define_metric("stage/*", step_metric="al/n_labeled")
        if self.settings["mode"] == "offline":
            # An offline resume writes a new offline-run directory: make it complete.
            for record in records:
                self.log_stage(record)

    def log_epoch(self, metrics: dict[str, float]) -> None:
        self.run.log(metrics)

    def log_stage(self, record: dict[str, Any]) -> None:
        self.run.log(stage_scalars(record))

    def finish(self) -> None:
        if self.run is None:
            return
        run_dir = Path(self.run.dir).parent
        self.run.finish()
        if self.settings["mode"] == "offline":
            log.info("W&B offline run: upload with `wandb sync %s`", run_dir)


class CsvSink(Sink):
    """`train_metrics.csv` (one row per epoch) and `stages.csv` (one row per stage)."""

    def start(self, run_dir: Path, config: dict[str, Any], records: list[dict]) -> None:
        """Drop what an interrupted stage wrote: keep the rows of the finished stages."""
        self.run_dir = Path(run_dir)
        stages = self.run_dir / "stages.csv"
        stages.unlink(missing_ok=True)
        for record in records:
            self.log_stage(record)
        epochs = self.run_dir / "train_metrics.csv"
        if epochs.exists():
            with epochs.open(newline="") as handle:
                rows = list(csv.DictReader(handle))
            epochs.unlink()
            for row in rows:
                if int(row["train/stage"]) < len(records):
                    append_row(epochs, row)

    def log_epoch(self, metrics: dict[str, float]) -> None:
        append_row(self.run_dir / "train_metrics.csv", metrics)

    def log_stage(self, record: dict[str, Any]) -> None:
        append_row(self.run_dir / "stages.csv", stage_scalars(record))


def append_row(path: Path, row: dict[str, Any]) -> None:
    new_file = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
        if new_file:
            writer.writeheader()
        writer.writerow(row)


class EpochMetricsCallback(pl.Callback):
    """Sends each epoch's `train/*` metrics to the sink; `al/epoch` continues across stages."""

    def __init__(self, sink: Sink, stage: int, epochs_before: int) -> None:
        self.sink, self.stage, self.epochs_before = sink, stage, epochs_before

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("train/")
        }
        epoch = self.epochs_before + trainer.current_epoch
        with best_effort(f"the {type(self.sink).__name__} log"):
            self.sink.log_epoch({"al/epoch": epoch, "train/stage": self.stage, **metrics})
