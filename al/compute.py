"""A stage's compute: device seconds of training and of selection, peak memory, and the run's
cumulative device seconds (the x-axis of compute-aware curves).

Device seconds are wall seconds read after the device finished its queued work (CUDA is
synchronised before every reading). Peak memory is CUDA's peak allocated bytes on a GPU (the
peak is reset when the stage starts), and on any other device the process's peak resident set
(`resource.getrusage` maxrss: the peak since the process started, so never below an earlier
stage's of the same process; DataLoader workers are not counted).
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass

import torch

CUDA_PEAK = "cuda_max_allocated"
RSS_PEAK = "max_rss"


@dataclass(frozen=True)
class StageCompute:
    """Device seconds of the stage's training and of its selection, and its peak memory in
    bytes, measured as `memory_measure` says (CUDA_PEAK or RSS_PEAK)."""

    train_seconds: float
    select_seconds: float
    peak_memory_bytes: int
    memory_measure: str


def device_clock(device: torch.device) -> float:
    """Seconds on a monotonic clock, once `device` has finished the work queued on it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def reset_peak_memory(device: torch.device) -> None:
    """Start a new CUDA peak on `device` (the resident set's peak cannot be reset)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, measure): CUDA's peak allocated bytes on `device` since the last reset, or the
    process's peak resident set (maxrss is in KiB on Linux, in bytes on macOS)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), CUDA_PEAK
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(max_rss if sys.platform == "darwin" else 1024 * max_rss), RSS_PEAK


def cumulative_seconds(records: list[dict]) -> list[float]:
    """Per record, the device seconds of training and selection of its stage and every stage
    before it: its `cumulative_device_seconds`, or, for records written before compute fields
    existed, the running sum of their wall `train_seconds` + `select_seconds`."""
    totals, total = [], 0.0
    for record in records:
        stage = record["train_seconds"] + record["select_seconds"]
        total = record.get("cumulative_device_seconds", total + stage)
        totals.append(total)
    return totals


def compute_fields(compute: StageCompute, earlier: list[dict]) -> dict:
    """A stage's compute fields of results.jsonl; the cumulative total continues the `earlier`
    records' (a resumed run's too)."""
    train, select = round(compute.train_seconds, 3), round(compute.select_seconds, 3)
    before = cumulative_seconds(earlier)[-1] if earlier else 0.0
    return {
        "train_device_seconds": train,
        "select_device_seconds": select,
        "cumulative_device_seconds": round(before + train + select, 3),
        "peak_memory_bytes": compute.peak_memory_bytes,
        "memory_measure": compute.memory_measure,
    }
