"""Learning Loss (Yoo & Kweon 2019): label the candidates with the highest predicted loss.

The module is the standard classifier with its loss prediction module trained jointly
(`train_loss_prediction: true`); `pair_loss` picks the paper's hinge or TA-VAAL's ranking loss.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.methods.selector import Selector


class LearningLossSelector(Selector):
    """Scores each candidate by the loss its module's loss prediction module predicts."""

    tasks = ("classification", "segmentation")

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        return module.predicted_loss(x)
