"""Loss prediction module (Yoo & Kweon 2019) — TA-VAAL's ranker — and its pair losses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from al.errors import ConfigError

SCHEDULES = ("detach", "freeze")


@dataclass(frozen=True)
class LossPredictionSettings:
    """`hidden` width per stage (None: no per-stage layer); loss weight `eta` (η); hinge
    `margin` (ξ); `stages`: the backbone stage outputs it reads (None = all).

    Joint training ends after `switch_epoch` (None: `switch_fraction` of the epochs). Then,
    by `schedule`: `detach` — the module still learns, but its gradient no longer reaches the
    backbone (both codes, epoch 120 of 200; TA-VAAL §7.2); `freeze` — the module is no longer
    trained and the task learner trains alone (TA-VAAL Algorithm 1: the ranker is updated
    while n ≤ 0.8·N)."""

    hidden: int | None = 128
    eta: float = 1.0
    margin: float = 1.0
    schedule: str = "detach"
    switch_epoch: int | None = None
    switch_fraction: float = 0.6
    stages: Sequence[int] | None = None

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ConfigError(
                f"loss_prediction.schedule={self.schedule!r} is not one of {', '.join(SCHEDULES)}"
            )
        if not 0 < self.switch_fraction <= 1:
            raise ConfigError(
                f"loss_prediction.switch_fraction={self.switch_fraction} must lie in (0, 1], "
                "e.g. 0.6 (the codes) or 0.8 (TA-VAAL Algorithm 1)"
            )

    def last_joint_epoch(self, max_epochs: int) -> int:
        """The last epoch of joint training: `switch_epoch`, or `switch_fraction` of
        `max_epochs` (0.6: epoch 120 of 200 as both codes)."""
        if self.switch_epoch is not None:
            return self.switch_epoch
        if max_epochs < 1:
            raise ConfigError(
                f"loss_prediction.switch_epoch=null needs trainer.max_epochs (got {max_epochs}): "
                "set one of them"
            )
        return int(self.switch_fraction * max_epochs)


class LossPredictionModule(nn.Module):
    """Yoo & Kweon's module: per read stage output, global average pool → Linear(C_i → hidden)
    → ReLU; concatenate → Linear(→ 1). `hidden=None` drops the per-stage layers: one
    Linear(ΣC_i → 1), TA-VAAL §4.1's "single layer perceptron". `stages` picks the stage
    outputs read (None = all; TA-VAAL §4.1: the mid-layer). One predicted loss per sample, no
    output activation."""

    def __init__(
        self,
        stage_channels: Sequence[int],
        hidden: int | None = 128,
        stages: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.stages = read_stages(len(stage_channels), stages)
        channels = [stage_channels[i] for i in self.stages]
        if hidden is None:
            self.heads = nn.ModuleList(nn.Identity() for _ in channels)
            self.out = nn.Linear(sum(channels), 1)
        else:
            self.heads = nn.ModuleList(
                nn.Sequential(nn.Linear(width, hidden), nn.ReLU()) for width in channels
            )
            self.out = nn.Linear(hidden * len(channels), 1)

    def forward(self, stages: Sequence[torch.Tensor]) -> torch.Tensor:
        read = [stages[i] for i in self.stages]
        pooled = [s.flatten(2).mean(2) if s.dim() > 2 else s for s in read]
        hidden = [head(p) for head, p in zip(self.heads, pooled, strict=True)]
        return self.out(torch.cat(hidden, dim=1)).squeeze(1)


def read_stages(count: int, stages: Sequence[int] | None) -> list[int]:
    """The indices of the `count` backbone stage outputs the module reads (None = all)."""
    if stages is None:
        return list(range(count))
    chosen = [int(i) for i in stages]
    if not chosen or any(not 0 <= i < count for i in chosen):
        raise ConfigError(
            f"loss_prediction.stages={chosen} must name some of the backbone's {count} stage "
            f"outputs (0 … {count - 1}), or be null for all"
        )
    return chosen


def flipped_pairs(values: torch.Tensor) -> torch.Tensor:
    """`values[i] − values[n−1−i]` for i < n/2: a batch of n paired with itself flipped.

    An odd batch drops its last sample.
    """
    even = values[: len(values) // 2 * 2]
    return (even - even.flip(0))[: len(even) // 2]


def needs_a_pair(pair_loss):
    """A batch of fewer than two samples has no pair: its pair loss is zero (with a graph)."""

    def guarded(predicted: torch.Tensor, target: torch.Tensor, **kwargs) -> torch.Tensor:
        if len(predicted) < 2:
            return predicted.sum() * 0.0
        return pair_loss(predicted, target, **kwargs)

    guarded.__doc__ = pair_loss.__doc__
    return guarded


@needs_a_pair
def hinge_pair_loss(
    predicted: torch.Tensor, target: torch.Tensor, margin: float = 1.0
) -> torch.Tensor:
    """Yoo & Kweon Eq. 2: mean over pairs of max(0, −I·(l̂_i − l̂_j) + ξ), I = ±1 by l_i > l_j."""
    predicted_gap = flipped_pairs(predicted)
    sign = torch.where(flipped_pairs(target.detach()) > 0, 1.0, -1.0)
    return torch.clamp(margin - sign * predicted_gap, min=0).mean()


@needs_a_pair
def ranking_pair_loss(
    predicted: torch.Tensor, target: torch.Tensor, margin: float | None = None
) -> torch.Tensor:
    """TA-VAAL Eq. 1: BCE of sigmoid(l̂_i − l̂_j) against 1[l_i > l_j] (no margin)."""
    truth = (flipped_pairs(target.detach()) > 0).float()
    return F.binary_cross_entropy_with_logits(flipped_pairs(predicted), truth)
