"""The exponential moving average of the task learner's weights that FixMatch evaluates and
selects with (Sohn et al. 2020, §3 and Appendix B.1: decay 0.999)."""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch


class EmaWeights(pl.Callback):
    """After every optimisation step t, θ̄ ← d_t·θ̄ + (1 − d_t)·θ for floating-point parameters
    and buffers (integer buffers such as BatchNorm's counts are copied); at the end of training
    the module's weights become θ̄, before the selector, which follows it in the callback list,
    and the test see them. d_t = `decay`, or with `warmup` min(decay, (1 + t)/(10 + t))
    (TensorFlow's ExponentialMovingAverage with num_updates), so that θ̄ forgets the initial
    weights within a short run: after K steps a plain EMA still holds decay^K of them."""

    def __init__(self, decay: float, warmup: bool = False) -> None:
        self.decay, self.warmup = decay, warmup
        self.updates = 0
        self.average: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.average = copy.deepcopy(pl_module.state_dict())
        self.updates = 0

    def rate(self) -> float:
        """d_t of the update about to be made."""
        if not self.warmup:
            return self.decay
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        decay = self.rate()
        self.updates += 1
        for name, value in pl_module.state_dict().items():
            average = self.average[name]
            if average.is_floating_point():
                average.mul_(decay).add_(value, alpha=1 - decay)
            else:
                average.copy_(value)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.load_state_dict(self.average)
