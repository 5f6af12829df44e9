"""Runs of many methods and seeds, grouped and summarised: mean ± std per stage, the
normalised area under the budget curve (AUBC), a paired test against random, the labels random
needs to reach each method's final metric, and the seeds whose stage-0 results differ between
methods (their task learners differ)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf
from scipy import stats

from al.compute import cumulative_seconds
from al.errors import build
from al.tasks import Classification, Task

BASELINE = "random"
COMPUTE = "cumulative_device_seconds"


@dataclass
class Curves:
    """One dataset × method: per seed, the per-stage values of each results.jsonl key (COMPUTE
    for every run: runs from before compute fields count their wall seconds), and how their peak
    memory was measured (`al.compute`; empty for runs from before)."""

    dataset: str
    method: str
    n_labeled: np.ndarray
    seeds: list[int]
    values: dict[str, np.ndarray]  # key → (seeds, stages)
    task: Task = field(default_factory=Classification)
    memory_measure: str = ""

    @property
    def metric(self) -> np.ndarray:
        """The task's test metric (accuracy, mIoU …) per seed and stage."""
        return self.values[self.task.primary_metric]

    def mean_std(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        return self.values[key].mean(0), self.values[key].std(0)


def find_runs(root: Path) -> list[tuple[dict, list[dict]]]:
    """(config, records) of every run directory under `root` that holds results.jsonl."""
    runs = []
    for results in sorted(Path(root).rglob("results.jsonl")):
        config_path = results.parent / "state" / "config.yaml"
        if not config_path.exists():
            continue
        records = [json.loads(line) for line in results.read_text().splitlines() if line]
        if records:
            runs.append((OmegaConf.to_container(OmegaConf.load(config_path)), records))
    return runs


def group_curves(runs: list[tuple[dict, list[dict]]]) -> list[Curves]:
    """Group runs by (dataset, method); seeds are cut to the stages they all finished. Each
    group has its dataset's task (classification for runs older than tasks)."""
    groups: dict[tuple[str, str], list[tuple[int, list[dict]]]] = {}
    tasks: dict[str, dict] = {}
    for config, records in runs:
        key = (config["dataset"]["name"], config["method"]["name"])
        groups.setdefault(key, []).append((config["seed"], records))
        tasks[key[0]] = config["dataset"].get("task", {"_target_": "al.tasks.Classification"})
    curves = []
    for (dataset, method), members in sorted(groups.items()):
        members.sort(key=lambda member: member[0])
        stages = min(len(records) for _, records in members)
        numeric = [  # the numbers every record has (runs of an older version may lack some)
            key
            for key, value in members[0][1][0].items()
            if isinstance(value, int | float)
            and all(key in r for _, records in members for r in records[:stages])
        ]
        values = {
            key: np.array([[r[key] for r in records[:stages]] for _, records in members], float)
            for key in numeric
        }
        values[COMPUTE] = np.array([cumulative_seconds(records[:stages]) for _, records in members])
        n_labeled = values.pop("n_labeled")[0]
        seeds = [seed for seed, _ in members]
        task = build(OmegaConf.create(tasks[dataset]))
        measures = {r.get("memory_measure", "") for _, records in members for r in records}
        memory_measure = ", ".join(sorted(measures - {""}))
        curves.append(Curves(dataset, method, n_labeled, seeds, values, task, memory_measure))
    return curves


def aubc(n_labeled: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Area under the metric (accuracy, mIoU) vs labels, normalised by the label range (per
    seed row)."""
    if len(n_labeled) < 2:
        return accuracy[..., 0]
    return np.trapezoid(accuracy, n_labeled, axis=-1) / (n_labeled[-1] - n_labeled[0])


def paired_test(curve: Curves, baseline: Curves | None) -> tuple[float, int]:
    """Two-sided paired t-test of per-seed AUBC against the baseline on shared seeds."""
    if baseline is None or baseline is curve:
        return float("nan"), 0
    shared = sorted(set(curve.seeds) & set(baseline.seeds))
    stages = min(len(curve.n_labeled), len(baseline.n_labeled))
    ours = aubc(curve.n_labeled[:stages], row_by_seed(curve, shared, stages))
    theirs = aubc(baseline.n_labeled[:stages], row_by_seed(baseline, shared, stages))
    if len(shared) < 2:
        return float("nan"), len(shared)
    return float(stats.ttest_rel(ours, theirs).pvalue), len(shared)


def labels_to_reach(n_labeled: np.ndarray, curve: np.ndarray, target: float) -> tuple[str, float]:
    """(relation, labels): the labels a (mean) metric curve needs to reach `target`, linearly
    interpolated between the two stages around its first crossing — ("=", labels); ("≤", its
    first labels) when its first stage already passes `target`; (">", its last labels) when it
    never reaches it."""
    reached = np.flatnonzero(curve >= target)
    if len(reached) == 0:
        return ">", float(n_labeled[-1])
    k = reached[0]
    if k == 0:
        return ("=" if curve[0] == target else "≤"), float(n_labeled[0])
    fraction = (target - curve[k - 1]) / (curve[k] - curve[k - 1])
    return "=", float(n_labeled[k - 1] + fraction * (n_labeled[k] - n_labeled[k - 1]))


def label_savings(curve: Curves, baseline: Curves) -> tuple[str, float, float]:
    """(relation, labels, savings): the labels the baseline's mean curve needs to reach
    `curve`'s final mean metric (`labels_to_reach`), and those labels minus the labels `curve`
    reached it with; `relation` bounds both."""
    target = float(curve.metric[:, -1].mean())
    relation, labels = labels_to_reach(baseline.n_labeled, baseline.metric.mean(0), target)
    return relation, labels, labels - float(curve.n_labeled[-1])


def row_by_seed(curve: Curves, seeds: list[int], stages: int) -> np.ndarray:
    rows = [curve.seeds.index(seed) for seed in seeds]
    return curve.metric[rows, :stages]


def improvement_over(curve: Curves, baseline: Curves) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std over shared seeds of the per-stage metric gain over the baseline."""
    shared = sorted(set(curve.seeds) & set(baseline.seeds))
    stages = min(len(curve.n_labeled), len(baseline.n_labeled))
    gain = row_by_seed(curve, shared, stages) - row_by_seed(baseline, shared, stages)
    return gain.mean(0), gain.std(0)


def stage0_disagreements(curves: list[Curves]) -> list[str]:
    """A "task learners differ" line per dataset × seed whose stage-0 test metrics differ.

    On one seed every method trains its stage-0 model on the same initial labels, so one task
    learner gives one stage-0 result; a difference means a method changed the task learner
    (dropout, a jointly trained module, ISDA), and its curve does not pair with the others.
    """
    warnings = []
    for dataset in sorted({c.dataset for c in curves}):
        group = [c for c in curves if c.dataset == dataset]
        for seed in sorted({seed for c in group for seed in c.seeds}):
            clusters = equal_value_clusters(stage0_accuracy(group, seed))
            if len(clusters) > 1:
                listed = "; ".join(
                    f"{', '.join(names)} {100 * acc:.2f} %" for acc, names in clusters
                )
                metric = group[0].task.primary_metric
                warnings.append(
                    f"task learners differ: {dataset}, seed {seed}: stage-0 {metric} {listed}"
                )
    return warnings


def stage0_accuracy(group: list[Curves], seed: int) -> dict[str, float]:
    """Method → stage-0 test metric on `seed`, for the methods that ran it."""
    return {c.method: float(c.metric[c.seeds.index(seed), 0]) for c in group if seed in c.seeds}


def equal_value_clusters(
    values: dict[str, float], tolerance: float = 1e-6
) -> list[tuple[float, list[str]]]:
    """(value, names) of the names whose values agree within `tolerance`, largest first
    (accuracies step by 1 / test samples; the tolerance only absorbs float rounding)."""
    clusters: list[tuple[float, list[str]]] = []
    for name, value in sorted(values.items()):
        match = next((c for c in clusters if abs(c[0] - value) <= tolerance), None)
        if match is None:
            clusters.append((value, [name]))
        else:
            match[1].append(name)
    return sorted(clusters, key=lambda cluster: -len(cluster[1]))
