"""What one bench run is given: size (`quick`), repeats, device, threads; and the machine."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """`quick`: toy sizes (the smoke test); `repeats`: runs per figure (the heaviest cases —
    the 1M pool and the default `al.train` — run `heavy_repeats` times)."""

    quick: bool
    repeats: int
    device: torch.device
    threads: int

    @property
    def heavy_repeats(self) -> int:
        return 1 if self.quick else max(1, self.repeats // 3)

    def pick(self, full: T, quick: T) -> T:
        """`quick` in a quick run, else `full`."""
        return quick if self.quick else full


def choose_device(name: str) -> torch.device:
    """`auto` → CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def default_threads() -> int:
    """OMP_NUM_THREADS when set, else every CPU this process may use."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return int(os.environ["OMP_NUM_THREADS"])
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def apply_threads(threads: int) -> None:
    """The same thread count for torch here and for every subprocess the bench starts."""
    os.environ["OMP_NUM_THREADS"] = str(threads)
    torch.set_num_threads(threads)


def machine(settings: Settings) -> dict:
    """What the figures were measured on."""
    device = settings.device
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }
