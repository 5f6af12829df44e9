"""The exponential moving average of the task learner's weights that FixMatch evaluates and
selects with (Sohn et al. 2020, §3 and Appendix B.1: decay 0.999)."""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch


class EmaWeights(pl.Callback):
    """After every optimisation step, θ̄ ← d·θ̄ + (1 − d)·θ for floating-point parameters and
    buffers (integer buffers such as BatchNorm's counts are copied); at the end of training the
    module's weights become θ̄, before the selector, which follows it in the callback list,
    and the test see them."""

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.average: dict[str, torch.Tensor] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.average = copy.deepcopy(pl_module.state_dict())

    @torch.no_grad()
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        for name, value in pl_module.state_dict().items():
            average = self.average[name]
            if average.is_floating_point():
                average.mul_(self.decay).add_(value, alpha=1 - self.decay)
            else:
                average.copy_(value)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.load_state_dict(self.average)
