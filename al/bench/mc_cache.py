"""MC-dropout caching (al.methods.mc_dropout): BALD and BatchBALD on ResNet-18 (CIFAR-sized
inputs, `model.dropout=0.5`) at T = 20, T full passes against the trunk once per batch, in the
same process, on the same candidates, under the same masks (their scores are compared)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.bench.figures import Figure, PeakMemory, timed
from al.bench.overhead import stage_config
from al.bench.pools import in_memory_inputs, request_for
from al.bench.settings import Settings
from al.build import build_module
from al.errors import build
from al.methods.selector import SelectionRequest, Selector

METHODS = ("bald", "batchbald")
OVERRIDES = ("model=resnet18", "dataset=cifar10", "model.dropout=0.5", "method.selector.passes=20")
SHAPE = (3, 32, 32)


def selection(
    selector: Selector, module: pl.LightningModule, request: SelectionRequest, device: torch.device
) -> tuple[float, torch.Tensor, torch.Tensor, float]:
    """Seconds, picks, scores and peak MB of `selector` on `request` (BALD's masks come from
    the default generator seeded per batch, BatchBALD's from the request's seed)."""
    torch.manual_seed(0)
    selector.request(request)
    with PeakMemory(device) as peak, torch.no_grad():
        seconds, (picks, scores) = timed(selector.select, module, request)
    return seconds, picks, scores, peak.megabytes


def mc_cache_figure(settings: Settings, method: str, request: SelectionRequest) -> Figure:
    """`method`'s selector with full passes / with the cached trunk, `repeats` times."""
    cfg = stage_config(settings, 1, extra=(f"method={method}", *OVERRIDES))
    pl.seed_everything(0, verbose=False)
    module = build_module(cfg, num_classes=10).to(settings.device).eval()
    full, cached, full_peaks, cached_peaks, identical = [], [], [], [], True
    selection(build(cfg.method.selector), module, request, settings.device)  # warm-up
    for _ in range(settings.repeats):
        seconds, picks, scores, peak = selection(
            build(cfg.method.selector, cache_features=False), module, request, settings.device
        )
        full.append(seconds)
        full_peaks.append(peak)
        seconds, cached_picks, cached_scores, peak = selection(
            build(cfg.method.selector), module, request, settings.device
        )
        cached.append(seconds)
        cached_peaks.append(peak)
        identical &= torch.equal(picks, cached_picks) and torch.equal(scores, cached_scores)
    return Figure(
        "selection",
        f"method={method}, ResNet-18, T = 20: {len(request.candidate_indices):,} candidates, "
        f"{request.query} picks: full passes / cached trunk",
        "the trunk once per batch, the head T times",
        [f / c for f, c in zip(full, cached, strict=True)],
        {
            "seconds": full,
            "baseline_seconds": cached,
            "peak_mb": cached_peaks,
            "full_passes_peak_mb": full_peaks,
        },
        note=("picks and scores identical" if identical else "SCORES DIFFER") + ", 32×32 inputs",
    )


def mc_cache_figures(settings: Settings) -> list[Figure]:
    """Both methods on the same synthetic CIFAR-sized candidates."""
    labeled, candidates = settings.pick(32, 4), settings.pick(48, 8)
    inputs = in_memory_inputs(labeled + candidates, shape=SHAPE)
    request = request_for(inputs, labeled, settings.pick(10, 2))
    return [mc_cache_figure(settings, method, request) for method in METHODS]
