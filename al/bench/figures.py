"""Figures and their statistics: min / median / max over repeats, and the timers behind them."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max of `values` (one value: all three equal)."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


@dataclass
class Figure:
    """One benchmark figure: `ratio` = measured / `baseline` (same process), with the
    absolute `values` (seconds, MB, …) each as min / median / max over `runs` repeats."""

    suite: str
    name: str
    baseline: str
    ratios: list[float]
    values: dict[str, list[float]] = field(default_factory=dict)
    target: str = ""
    note: str = ""

    def to_json(self) -> dict:
        row = asdict(self)
        row["runs"] = len(self.ratios)
        row["ratio"] = spread(row.pop("ratios"))
        row["values"] = {key: spread(v) for key, v in self.values.items()}
        return row


def timed(fn: Callable[..., object], *args: object) -> tuple[float, object]:
    """Seconds `fn(*args)` took (device work included: CUDA is synchronised), and its result."""
    synchronize()
    start = time.perf_counter()
    result = fn(*args)
    synchronize()
    return time.perf_counter() - start, result


def synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def resident_bytes() -> int:
    """This process's resident set size (Linux /proc; 0 elsewhere)."""
    statm = Path("/proc/self/statm")
    if not statm.exists():
        return 0
    return int(statm.read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory growth over a `with` block, in MB: CUDA's max allocated on a GPU, else the
    resident set sampled every 2 ms (torch's CPU tensors bypass tracemalloc)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.megabytes = 0.0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._start = self._peak = resident_bytes()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, resident_bytes())

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, resident_bytes())
        self.megabytes = max(peak - self._start, 0) / 2**20
