"""`selection`: selectors' seconds to score 1k / 10k / 100k candidates against a bare forward
pass over the same loader, and Core-set's k-center against its reference and floor."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.bench.figures import Figure, PeakMemory, timed
from al.bench.kcenter_figures import kcenter_figures
from al.bench.pools import in_memory_inputs, request_for, task_module
from al.bench.settings import Settings
from al.methods.coreset import CoresetSelector
from al.methods.entropy import EntropySelector
from al.methods.least_confidence import LeastConfidenceSelector
from al.methods.margin import MarginSelector
from al.methods.selector import SelectionRequest, Selector, collect

SELECTORS = {
    "entropy": EntropySelector,
    "margin": MarginSelector,
    "least_confidence": LeastConfidenceSelector,
    "coreset": CoresetSelector,
}


def select(selector: Selector, module: pl.LightningModule, request: SelectionRequest) -> None:
    """What `Selector.on_train_end` runs: `select` in eval mode under no_grad."""
    with torch.no_grad():
        selector.select(module, request)


def forward_pass(module: pl.LightningModule, request: SelectionRequest) -> None:
    """The baseline: the module's logits for every candidate, nothing else."""
    with torch.no_grad():
        collect(request.candidates, module, module.device)


def selector_figure(
    settings: Settings, module: pl.LightningModule, request: SelectionRequest, name: str
) -> Figure:
    """Selector `name` on `request`: seconds / the forward pass's, per pick, peak MB."""
    seconds, baseline, peaks = [], [], []
    for _ in range(settings.repeats):
        baseline.append(timed(forward_pass, module, request)[0])
        with PeakMemory(settings.device) as peak:
            seconds.append(timed(select, SELECTORS[name](), module, request)[0])
        peaks.append(peak.megabytes)
    query = request.query
    return Figure(
        "selection",
        f"{name}: {len(request.candidate_indices):,} candidates, {query} picks",
        "forward pass over the candidates",
        [s / b for s, b in zip(seconds, baseline, strict=True)],
        {
            "seconds": seconds,
            "baseline_seconds": baseline,
            "seconds_per_pick": [s / query for s in seconds],
            "peak_mb": peaks,
        },
    )


def selector_figures(settings: Settings) -> list[Figure]:
    """Every selector at every pool size, on the untrained default task module."""
    module = task_module(settings)
    labeled, query = settings.pick(1000, 100), settings.pick(100, 20)
    figures = []
    for size in settings.pick((1_000, 10_000, 100_000), (1_000, 5_000)):
        request = request_for(in_memory_inputs(labeled + size), labeled, query)
        figures += [selector_figure(settings, module, request, name) for name in SELECTORS]
    return figures


def run(settings: Settings) -> list[Figure]:
    return selector_figures(settings) + kcenter_figures(settings)
