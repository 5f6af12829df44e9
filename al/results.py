"""The per-stage record and its local views: the printed table and curve.png (global rank 0's)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from rich.console import Console
from rich.table import Table

from al.compute import compute_fields
from al.stop import StopRule
from al.tasks import Task


def count_entropy(counts: list[int]) -> float:
    """Entropy (nats) of the class distribution given by `counts` (TA-VAAL Fig. 7a)."""
    p = np.asarray(counts, dtype=np.float64)
    p = p[p > 0] / p.sum()
    return float(-(p * np.log(p)).sum())


def stage_record(
    stage: int,
    n_labeled: int,
    counts: tuple[list[int], list[int]],
    outcome,
    n_synthetic: int,
    stop_rule: StopRule | None,
    earlier: list[dict],
) -> dict:
    """One row of results.jsonl, whole: `n_labeled` is what this stage's model was trained on
    (besides `n_synthetic` synthetic pairs); `counts` are the task's class counts of the
    labeled samples and of the picks (samples, or labeled pixels, per class); `outcome` (the
    loop's StageOutcome) gives the test metrics, epochs, timings, compute (`al.compute`; its
    cumulative total continues the `earlier` stages' records) and the selection's tie count
    and stage metrics; `stopped` says why `stop_rule` ends the run here, when it does."""
    selection = outcome.selection
    record = {"stage": stage, "n_labeled": n_labeled}
    record.update({key: float(value) for key, value in sorted(outcome.test_metrics.items())})
    record["epochs"] = outcome.epochs
    record["train_seconds"] = round(outcome.train_seconds, 3)
    record["select_seconds"] = round(selection.seconds, 3)
    record.update(compute_fields(outcome.compute, earlier))
    labeled_counts, picked_counts = counts
    record["class_counts"] = list(labeled_counts)
    record["class_entropy"] = count_entropy(record["class_counts"])
    record["pick_class_counts"] = list(picked_counts)
    record["pick_entropy"] = count_entropy(record["pick_class_counts"])
    record["n_synthetic"] = n_synthetic
    record["tied_picks"] = selection.tied_picks
    record.update(selection.metrics)
    reason = None if stop_rule is None else stop_rule.reason(record)
    if reason is not None:
        record["stopped"] = reason
    return record


@rank_zero_only
def plot_curve(records: list[dict], path: Path, title: str, task: Task) -> None:
    """The task's test metric against the number of labels."""
    metric = task.primary_metric
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["n_labeled"] for r in records], [100 * r[metric] for r in records], marker="o")
    ax.set(xlabel="labeled samples", ylabel=task.primary_label, title=title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@rank_zero_only
def print_table(
    records: list[dict], title: str, task: Task, console: Console | None = None
) -> None:
    table = Table(title=title)
    columns = task.table_columns()
    for column in ("stage", "n_labeled", *(header for _, header in columns), "train s", "select s"):
        table.add_column(column, justify="right")
    for r in records:
        table.add_row(
            str(r["stage"]),
            str(r["n_labeled"]),
            *(f"{100 * r[key]:.2f}%" for key, _ in columns),
            f"{r['train_seconds']:.1f}",
            f"{r['select_seconds']:.1f}",
        )
    (console or Console()).print(table)


@rank_zero_only
def print_pick_classes(
    records: list[dict], class_names: list[str] | None = None, console: Console | None = None
) -> None:
    """The labels per class of the initial pool and of each stage's picks (the M2-VAAL
    slides' "Discriminator selection of samples")."""
    classes = len(records[0]["class_counts"])
    names = list(class_names) if class_names else [str(c) for c in range(classes)]
    table = Table(title="labels per class: the initial pool, then each stage's picks")
    for column in ("picks", *names):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_row("initial", *map(str, records[0]["class_counts"]))
    for r in records:
        table.add_row(f"stage {r['stage']}", *map(str, r["pick_class_counts"]))
    width = 12 + sum(len(name) + 3 for name in names)  # every class name in full
    (console or Console(width=max(width, 80))).print(table)
