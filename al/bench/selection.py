"""`selection`: selectors' seconds to score candidates against a bare forward pass over the
same loader — the single-pass scores at 1k / 10k / 100k, every method of `conf/method/` with
its own task module and selector at 1k / 10k (BatchBALD at 10 and 100 classes) — Core-set's
k-center against its reference and floor, and BALD's and BatchBALD's full MC-dropout passes
against the cached trunk."""

from __future__ import annotations

from collections.abc import Callable

import pytorch_lightning as pl
import torch

from al import CONF_DIR
from al.bench.figures import Figure, PeakMemory, timed
from al.bench.kcenter_figures import kcenter_figures
from al.bench.mc_cache import mc_cache_figures
from al.bench.overhead import stage_config
from al.bench.pools import in_memory_inputs, request_for, task_module
from al.bench.settings import Settings
from al.build import build_module
from al.data.base import TensorInputs
from al.errors import build
from al.methods.coreset import CoresetSelector
from al.methods.entropy import EntropySelector
from al.methods.least_confidence import LeastConfidenceSelector
from al.methods.margin import MarginSelector
from al.methods.selector import SelectionRequest, Selector, collect

# What a method is benched with beyond its defaults, and why. MC-dropout selectors need a model
# with dropout. The VAE-based selectors train their VAE (and discriminator) for `epochs_v`
# epochs inside selection: 100 by default, benched at 1, so their row is one epoch plus the
# scoring.
METHOD_OVERRIDES = {
    "bald": ("model.dropout=0.5",),
    "batchbald": ("model.dropout=0.5",),
    "bgadl": ("model.dropout=0.5",),
    "vaal": ("method.selector.epochs_v=1",),
    "ta_vaal": ("method.selector.epochs_v=1",),
    "sraal": ("method.selector.epochs_v=1",),
}
# Class counts a method is benched at beyond 10: BatchBALD's joint entropies grow with C (its
# configurations are exact while C^n ≤ samples, then `samples` of C classes each).
METHOD_CLASSES = {"batchbald": (10, 100)}

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
    settings: Settings,
    module: pl.LightningModule,
    request: SelectionRequest,
    name: str,
    make_selector: Callable[[], Selector],
    repeats: int,
    note: str = "",
) -> Figure:
    """A fresh `make_selector()` on `request`, `repeats` times: seconds / the forward pass's,
    per pick, peak MB."""
    seconds, baseline, peaks = [], [], []
    forward_pass(module, request)  # warm-up: the module's first pass allocates its buffers
    for _ in range(repeats):
        baseline.append(timed(forward_pass, module, request)[0])
        with PeakMemory(settings.device) as peak:
            seconds.append(timed(select, make_selector(), module, request)[0])
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
        note=note,
    )


def selector_figures(settings: Settings) -> list[Figure]:
    """The single-pass selectors at every pool size, on the untrained default task module."""
    module = task_module(settings)
    labeled, query = settings.pick(1000, 100), settings.pick(100, 20)
    figures = []
    for size in settings.pick((1_000, 10_000, 100_000), (1_000, 5_000)):
        request = request_for(in_memory_inputs(labeled + size), labeled, query)
        figures += [
            selector_figure(settings, module, request, name, kind, settings.repeats)
            for name, kind in SELECTORS.items()
        ]
    return figures


def method_figure(
    settings: Settings, method: str, inputs: TensorInputs, labeled: int, query: int, classes: int
) -> Figure:
    """`method`'s own (untrained) task module for `classes` classes and its selector, built
    from its config with `METHOD_OVERRIDES`, timed `heavy_repeats` times."""
    overrides = METHOD_OVERRIDES.get(method, ())
    extra = (f"method={method}", f"model.num_classes={classes}", *overrides)
    cfg = stage_config(settings, 1, extra=extra)
    pl.seed_everything(0, verbose=False)
    module = build_module(cfg, num_classes=classes).to(settings.device).eval()
    name = f"method={method}" + ("" if classes == 10 else f" ({classes} classes)")
    noted = overrides if classes == 10 else (f"model.num_classes={classes}", *overrides)
    return selector_figure(
        settings,
        module,
        request_for(inputs, labeled, query),
        name,
        lambda: build(cfg.method.selector),
        settings.heavy_repeats,
        note=" ".join(noted),
    )


def method_figures(settings: Settings) -> list[Figure]:
    """Every method on digits-sized inputs, once per size and class count (10 unless
    `METHOD_CLASSES` says otherwise)."""
    labeled, query = settings.pick(1000, 100), settings.pick(100, 20)
    methods = sorted(path.stem for path in (CONF_DIR / "method").glob("*.yaml"))
    figures = []
    for size in settings.pick((1_000, 10_000), (500,)):
        inputs = in_memory_inputs(labeled + size)
        for method in methods:
            for classes in METHOD_CLASSES.get(method, (10,)):
                figures.append(method_figure(settings, method, inputs, labeled, query, classes))
    return figures


def run(settings: Settings) -> list[Figure]:
    return (
        selector_figures(settings)
        + method_figures(settings)
        + kcenter_figures(settings)
        + mc_cache_figures(settings)
    )
