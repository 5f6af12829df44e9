"""`semi=fixmatch|flexmatch`: the unlabeled term a standard task learner adds to its loss, its
unlabeled batches, and the views they are served as."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn

from al.data.datamodule import UnlabeledTraining
from al.options import NonNegativeFloat, PositiveInt, Probability
from al.semi.augment import StrongAugment, weak_augment
from al.semi.losses import fixmatch_loss, flexmatch_thresholds, update_status


@dataclass
class FixMatch:
    """FixMatch (Sohn et al. 2020): `ratio` (μ) unlabeled samples per labeled one in every
    step, pseudo-labels from the weak view kept above `threshold` (τ), the strong view
    trained on them with weight `unlabeled_weight` (λ_u), evaluation and selection with an
    EMA of the weights (`ema_decay`, warmed up with `ema_warmup`: `EmaWeights`). `flip`: the
    views flip images horizontally (not digits: a flip changes their label). `flexible`:
    FlexMatch's class-wise thresholds (Zhang et al. 2021), with its `warmup` and `mapping`
    (convex or linear). `labeled_augmentation`: `weak` trains the labeled batch on its weak
    view (Eq. 2: α(x_b)), `dataset` on the dataset's own training augmentation."""

    labeled_batch_size: PositiveInt = 64
    threshold: Probability = 0.95
    unlabeled_weight: NonNegativeFloat = 1.0
    ratio: PositiveInt = 7
    ema_decay: Probability = 0.999
    ema_warmup: bool = True
    flip: bool = True
    strong: StrongAugment = field(default_factory=StrongAugment)
    flexible: bool = False
    warmup: bool = True
    mapping: Literal["convex", "linear"] = "convex"
    labeled_augmentation: Literal["weak", "dataset"] = "weak"

    def unlabeled_training(self) -> UnlabeledTraining:
        """μ·B unlabeled samples a step (B: `labeled_batch_size`, the loader's), served with
        test-time transforms and turned into `views` on the training device; an epoch is a
        pass over the unlabeled pool, which the protocol bounds by its steps per epoch."""
        return UnlabeledTraining(
            batch_size=self.ratio * self.labeled_batch_size,
            epoch="longest",
            views=self.views,
            labeled_view=self.weak_view if self.labeled_augmentation == "weak" else None,
        )

    def weak_view(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """α: a random flip (where `flip`) and shift of every image."""
        return weak_augment(pixels, generator, flip=0.5 if self.flip else 0.0)

    def views(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The weak and the strong view of a batch of pixel images, stacked on a new first
        dimension; each view draws its own flip and shift, the strong one then RandAugment
        and Cutout (the paper's code)."""
        weak = self.weak_view(pixels, generator)
        strong = self.strong(self.weak_view(pixels, generator), generator)
        return torch.stack([weak, strong])


class UnlabeledTerm(nn.Module):
    """The unlabeled term of the loss and, for FlexMatch, the learning status of every pool
    sample (−2: not unlabeled this stage, −1: no confident prediction yet, else its last
    confident pseudo-label), a buffer of N integers set up at the start of each fit."""

    def __init__(self, settings: FixMatch, num_classes: int) -> None:
        super().__init__()
        self.settings, self.num_classes = settings, num_classes
        self.register_buffer("status", torch.empty(0, dtype=torch.long), persistent=False)

    def start(self, pool_size: int, unlabeled: Sequence[int], device: torch.device) -> None:
        self.status = torch.full((pool_size,), -2, dtype=torch.long, device=device)
        self.status[torch.as_tensor(unlabeled, dtype=torch.long, device=device)] = -1

    def thresholds(self) -> torch.Tensor:
        s = self.settings
        if not s.flexible:
            return torch.full((self.num_classes,), s.threshold, device=self.status.device)
        return flexmatch_thresholds(self.status, self.num_classes, s.threshold, s.warmup, s.mapping)

    def forward(
        self, weak_logits: torch.Tensor, strong_logits: torch.Tensor, index: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """λ_u · ℓ_u and the share of the batch above its threshold. FlexMatch's learning
        status takes every DDP rank's batch, so the class thresholds agree across ranks."""
        loss, mask, _ = fixmatch_loss(weak_logits, strong_logits, self.thresholds())
        if self.settings.flexible:
            index, weak = every_rank(index), every_rank(weak_logits.detach())
            update_status(self.status, index, weak, self.settings.threshold)
        return self.settings.unlabeled_weight * loss, mask.mean()


def every_rank(rows: torch.Tensor) -> torch.Tensor:
    """`rows` of every DDP rank, concatenated in rank order (this process's alone without DDP);
    the ranks' unlabeled batches have equal sizes (the distributed sampler pads them)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return rows
    gathered = [torch.empty_like(rows) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, rows.contiguous())
    return torch.cat(gathered)


def fixmatch_cosine(optimizer: torch.optim.Optimizer, total_steps: int) -> dict:
    """η_k = η · cos(7πk / 16K) per step k of K (Sohn et al. 2020, §3 / Appendix B.1)."""
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda k: math.cos(7 * math.pi * min(k, total_steps) / (16 * total_steps))
    )
    return {"scheduler": schedule, "interval": "step"}
