"""Core-set's greedy k-center (al.methods.coreset) against the full-matrix reference, the
one-pass floor, and its former difference-based first pass."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from al.bench.figures import Figure, PeakMemory, timed
from al.bench.kcenter import floor_k_center, reference_k_center
from al.bench.settings import Settings
from al.methods.coreset import difference_min_distances, k_center_greedy, min_distances
from al.methods.selector import TieBreak

REFERENCE_LIMIT_BYTES = 4 * 2**30  # the reference's float64 N×M matrix must fit in this


@dataclass
class Runs:
    """Seconds per repeat of each contender, and Core-set's peak memory."""

    coreset: list[float]
    floor: list[float]
    reference: list[float]
    peak_mb: list[float]
    agree: bool = True


def features(settings: Settings) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Random candidate and center features on the device, and the number of picks."""
    n, m, d, k = settings.pick((10_000, 1_000, 512, 1_000), (2_000, 200, 64, 100))
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randn(n, d, generator=generator).to(settings.device)
    return candidates, torch.randn(m, d, generator=generator).to(settings.device), k


def measure(settings: Settings, candidates: torch.Tensor, centers: torch.Tensor, k: int) -> Runs:
    """Core-set, floor and (where its matrix fits) reference, `repeats` times each."""
    fits = len(candidates) * len(centers) * 8 <= REFERENCE_LIMIT_BYTES
    nearest = min_distances(candidates, centers, 512)
    runs = Runs([], [], [], [])
    for _ in range(settings.repeats):
        with PeakMemory(settings.device) as peak:
            seconds, (picks, _) = timed(k_center_greedy, candidates, centers, k, TieBreak(0), 512)
        runs.coreset.append(seconds)
        runs.peak_mb.append(peak.megabytes)
        seconds, floor_picks = timed(floor_k_center, candidates, nearest, k)
        runs.floor.append(seconds)
        runs.agree &= floor_picks == picks.tolist()
        if fits:
            host = candidates.cpu().numpy(), centers.cpu().numpy()
            seconds, reference_picks = timed(reference_k_center, *host, k)
            runs.reference.append(seconds)
            runs.agree &= reference_picks == picks.tolist()
    return runs


def first_pass_speedup(
    settings: Settings, candidates: torch.Tensor, centers: torch.Tensor
) -> Figure:
    """The former exact difference-based first pass / the matrix-product one (issue 16, 3)."""
    before, after = [], []
    for _ in range(settings.heavy_repeats):
        before.append(timed(difference_min_distances, candidates, centers, 512)[0])
        after.append(timed(min_distances, candidates, centers, 512)[0])
    return Figure(
        "selection",
        "Core-set first pass: difference cdist / float64 matrix product",
        "float64 matrix-product pass",
        [b / a for b, a in zip(before, after, strict=True)],
        {"seconds": before, "baseline_seconds": after},
        note="speed-up of the new first pass",
    )


def kcenter_figures(settings: Settings) -> list[Figure]:
    candidates, centers, k = features(settings)
    (n, d), m = candidates.shape, len(centers)
    size = f"{n:,} candidates × {m:,} labeled × {d}-d, {k:,} picks"
    runs = measure(settings, candidates, centers, k)
    agree = "picks identical" if runs.agree else "PICKS DIFFER"
    values = {"seconds": runs.coreset, "baseline_seconds": runs.floor, "peak_mb": runs.peak_mb}
    figures = [
        Figure(
            "selection",
            f"Core-set / floor: {size}",
            "one pass over the features per pick",
            [c / f for c, f in zip(runs.coreset, runs.floor, strict=True)],
            values,
            target="<= 1.5",
            note=f"{agree}; features {n * d * 4 / 2**20:.0f} MB",
        )
    ]
    if runs.reference:
        figures.append(
            Figure(
                "selection",
                f"reference / Core-set: {size}",
                "al's Core-set",
                [r / c for r, c in zip(runs.reference, runs.coreset, strict=True)],
                {"seconds": runs.reference, "baseline_seconds": runs.coreset},
                target=">= 1.5",
                note="sklearn pairwise_distances, full N×M matrix",
            )
        )
    return [*figures, first_pass_speedup(settings, candidates, centers)]
