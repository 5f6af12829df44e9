"""`scale`: entropy and Core-set over a pool streamed from a Dataset (never one array), at a
large size against the 10k case: peak memory and seconds per candidate, as ratios."""

from __future__ import annotations

from al.bench.figures import Figure, PeakMemory, timed
from al.bench.pools import StreamedInputs, request_for, task_module
from al.bench.selection import SELECTORS, select
from al.bench.settings import Settings

LABELED, QUERY = 1_000, 100


def sizes(settings: Settings) -> dict[str, tuple[int, int]]:
    """(baseline, large) candidates per selector. Core-set keeps N×128 features (O(N·d) by
    design) and one pass per pick, so on a 2-core CPU it is scaled to fit the bench's budget."""
    if settings.quick:
        return {"entropy": (5_000, 50_000), "coreset": (2_000, 10_000)}
    coreset_large = 1_000_000 if settings.device.type == "cuda" else 200_000
    return {"entropy": (10_000, 1_000_000), "coreset": (10_000, coreset_large)}


def measure(settings: Settings, name: str, size: int, repeats: int) -> tuple[list, list]:
    """Seconds and peak MB of `name` over `size` streamed candidates, `repeats` times."""
    module = task_module(settings)
    request = request_for(StreamedInputs(LABELED + size), LABELED, QUERY)
    seconds, peaks = [], []
    for _ in range(repeats):
        with PeakMemory(settings.device) as peak:
            seconds.append(timed(select, SELECTORS[name](), module, request)[0])
        peaks.append(peak.megabytes)
    return seconds, peaks


def run(settings: Settings) -> list[Figure]:
    figures = []
    for name, (small, large) in sizes(settings).items():
        base_seconds, base_peaks = measure(settings, name, small, settings.repeats)
        seconds, peaks = measure(settings, name, large, settings.heavy_repeats)
        base_per_sample = min(base_seconds) / small
        base_peak = max(min(base_peaks), 1.0)  # MB; a floor keeps the ratio finite
        common = f"{name}: {large:,} streamed candidates vs {small:,}"
        note = "" if large >= 1_000_000 or settings.quick else "scaled to fit 15 min on 2 CPUs"
        figures += [
            Figure(
                "scale",
                f"{common}, time per candidate",
                f"{small:,} candidates (best run)",
                [s / large / base_per_sample for s in seconds],
                {"seconds": seconds, "baseline_seconds": base_seconds},
                target="≈ 1 (linear)",
                note=note,
            ),
            Figure(
                "scale",
                f"{common}, peak memory",
                f"{small:,} candidates (MB, best run)",
                [p / base_peak for p in peaks],
                {
                    "peak_mb": peaks,
                    "baseline_peak_mb": base_peaks,
                    "bytes_per_candidate": [p * 2**20 / large for p in peaks],
                },
                note=note or ("features are N×128 floats" if name == "coreset" else ""),
            ),
        ]
    return figures
