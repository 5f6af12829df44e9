"""Stopping rules: end a run before `budget.stages` when a finished stage's record says so.

A rule is chosen in the `stop` config group (`conf/stop/`) and reads the metrics a method's
selector declares in `reported_metrics`; the loop refuses a rule whose metric the method does
not report, before anything is written.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from al.errors import ConfigError


class StopRule(Protocol):
    """What the loop asks of a stopping rule: the record key it reads, and its verdict."""

    metric: str

    def reason(self, record: dict) -> str | None: ...


@dataclass(frozen=True)
class MetricNear:
    """End the run after the first stage whose `metric` lies within `within` of `target` — the
    M2-VAAL slides' "stop when the discriminator is unable to differentiate" is
    `discriminator/acc` within 0.05 of 0.5 (`conf/stop/discriminator_chance.yaml`)."""

    metric: str
    target: float
    within: float

    def __post_init__(self) -> None:
        for key in ("target", "within"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
                raise ConfigError(f"stop.{key}={value!r} must be a number, e.g. stop.{key}=0.05")
        if self.within < 0:
            raise ConfigError(f"stop.within={self.within!r} must be ≥ 0, e.g. stop.within=0.05")

    def reason(self, record: dict) -> str | None:
        """Why the run ends after the stage of `record`, or None to go on."""
        value = record[self.metric]
        if abs(value - self.target) > self.within:
            return None
        return f"{self.metric} {value:.3f} is within {self.within} of {self.target} (stop rule)"
