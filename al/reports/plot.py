"""`python -m al.reports.plot DIR`: compare every run under DIR (a multirun dir, or several).

Writes to DIR/comparison/ (or --out): per dataset, its task's metric (`DATASET-acc.png`,
`DATASET-miou.png`) against labels and (`DATASET-acc-compute.png`) against cumulative train +
selection seconds, mean ± std per method, the improvement over random (the papers' main
figure), the pick entropy per stage (TA-VAAL Fig. 7a), summary.md/.csv (mean ± std per stage,
AUBC, paired test against random, the labels random needs to reach the final metric and the
savings, compute per stage) and timing.md/.csv (mean train and selection seconds per stage,
DAST-AL Table 4). summary.md ends with a "task learners differ: …" line for each dataset × seed
whose methods' stage-0 test metrics differ: their curves do not pair.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from al.reports.compare import (
    BASELINE,
    COMPUTE,
    Curves,
    aubc,
    find_runs,
    group_curves,
    improvement_over,
    label_savings,
    paired_test,
    stage0_disagreements,
)

X_LABELS = {None: "labeled samples", COMPUTE: "cumulative train + selection seconds"}


def plot_band(ax, x, mean, std, label) -> None:
    ax.plot(x, mean, marker="o", markersize=3, label=label)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2)


def figure(
    curves: list[Curves], key: str, ylabel: str, path: Path, baseline=None, against=None
) -> None:
    """`key` (mean ± std over seeds; or its gain over `baseline`) per method against labels, or
    against the seeds' mean of the `against` key (COMPUTE)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for curve in curves:
        if baseline is not None:
            if curve is baseline:
                continue
            mean, std = improvement_over(curve, baseline)
            x = curve.n_labeled[: len(mean)]
        else:
            mean, std = curve.mean_std(key)
            x = curve.n_labeled if against is None else curve.values[against].mean(0)
        scale = 100 if key == curve.task.primary_metric else 1
        plot_band(ax, x, scale * mean, scale * std, f"{curve.method} ({len(curve.seeds)} seeds)")
    if baseline is not None:
        ax.axhline(0, color="black", linewidth=0.8)
    ax.set(xlabel=X_LABELS[against], ylabel=ylabel, title=curves[0].dataset)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def summary_rows(curves: list[Curves]) -> list[dict]:
    baselines = {c.dataset: c for c in curves if c.method == BASELINE}
    rows = []
    for curve in curves:
        baseline = baselines.get(curve.dataset)
        metric = curve.metric
        short = curve.task.primary_metric.removeprefix("test/")
        areas = aubc(curve.n_labeled, metric)
        p_value, n_seeds = paired_test(curve, baseline)
        row = {"dataset": curve.dataset, "method": curve.method, "seeds": len(curve.seeds)}
        for n, mean, std in zip(curve.n_labeled, metric.mean(0), metric.std(0), strict=True):
            row[f"{short}@{int(n)}"] = f"{100 * mean:.2f} ± {100 * std:.2f}"
        row["AUBC"] = f"{100 * areas.mean():.2f} ± {100 * areas.std():.2f}"
        row[f"p vs {BASELINE}"] = "—" if np.isnan(p_value) else f"{p_value:.3g} (n={n_seeds})"
        rows.append(row | savings_columns(curve, baseline) | compute_columns(curve))
    return rows


def savings_columns(curve: Curves, baseline: Curves | None) -> dict[str, str]:
    """The labels random's mean curve needs to reach this method's final mean metric
    (interpolated; "> N": random never reaches it within its N labels; "≤ N": its first stage
    already does) and that number minus the method's final labels."""
    needs, saves = f"labels {BASELINE} needs", "label savings"
    if baseline is None or baseline is curve:
        return {needs: "—", saves: "—"}
    relation, labels, savings = label_savings(curve, baseline)
    prefix = "" if relation == "=" else f"{relation} "
    return {needs: f"{prefix}{labels:.0f}", saves: f"{prefix}{savings:.0f}"}


def compute_columns(curve: Curves) -> dict[str, str]:
    """Mean train + selection seconds per stage (device seconds; wall seconds for runs from
    before compute fields) and the largest peak memory of any seed and stage, with its measure."""
    stages = curve.values[COMPUTE].shape[1]
    seconds = curve.values[COMPUTE][:, -1].mean() / stages
    peak = curve.values.get("peak_memory_bytes")
    memory = "—" if peak is None else f"{peak.max() / 2**20:.0f} MiB ({curve.memory_measure})"
    return {"train+select s / stage": f"{seconds:.3g}", "peak memory": memory}


def timing_rows(curves: list[Curves]) -> list[dict]:
    return [
        {
            "dataset": c.dataset,
            "method": c.method,
            "train s / stage": f"{c.values['train_seconds'].mean():.1f}",
            "select s / stage": f"{c.values['select_seconds'].mean():.1f}",
        }
        for c in curves
    ]


def write_table(rows: list[dict], stem: Path, notes: Sequence[str] = ()) -> None:
    """`stem`.csv and `stem`.md; the markdown ends with `notes`, one list item each."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with stem.with_suffix(".csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")


def compare(root: Path, out: Path) -> list[Curves]:
    """Write every figure and table for the runs under `root` into `out`."""
    curves = group_curves(find_runs(root))
    if not curves:
        raise SystemExit(f"no finished runs (results.jsonl with state/config.yaml) under {root}")
    out.mkdir(parents=True, exist_ok=True)
    for dataset in sorted({c.dataset for c in curves}):
        group = [c for c in curves if c.dataset == dataset]
        task = group[0].task
        short = task.primary_metric.removeprefix("test/")
        figure(group, task.primary_metric, task.primary_label, out / f"{dataset}-{short}.png")
        path = out / f"{dataset}-{short}-compute.png"
        figure(group, task.primary_metric, task.primary_label, path, against=COMPUTE)
        figure(
            group,
            "pick_entropy",
            "class entropy of picks (nats)",
            out / f"{dataset}-pick-entropy.png",
        )
        baseline = next((c for c in group if c.method == BASELINE), None)
        if baseline is not None and len(group) > 1:
            path = out / f"{dataset}-improvement.png"
            label = f"{short} gain over {BASELINE} (%)"
            figure(group, task.primary_metric, label, path, baseline)
    write_table(summary_rows(curves), out / "summary", stage0_disagreements(curves))
    write_table(timing_rows(curves), out / "timing")
    return curves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="a directory holding run directories")
    parser.add_argument("--out", type=Path, help="where to write (default: RUNS/comparison)")
    args = parser.parse_args()
    out = args.out or args.runs / "comparison"
    curves = compare(args.runs, out)
    print(f"{len(curves)} dataset × method groups → {out}")
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
