"""DAST-AL (diversity-aware semantic transformation AL): EPMCM selection on an ISDA-trained model.

Expected partial model change maximisation scores each candidate by the upper bound of
DAST-AL Eq. 7 on the change its ISDA-augmented features would cause to the classifier bias:
with ŷ the predicted class, z the logits and Σ_ŷ the class covariance the module tracks,

    Ē = Σ_j exp((w_j − w_ŷ)ᵀa + (b_j − b_ŷ) + ½ (w_j − w_ŷ)ᵀ Σ_ŷ (w_j − w_ŷ)) − 1.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.errors import ConfigError
from al.methods.selector import Selector
from al.tasks.extensions import LogScoreReduction, require


def log_epmcm_bound(logits: torch.Tensor, quadratic: torch.Tensor) -> torch.Tensor:
    """log Ē of DAST-AL Eq. 7 by logsumexp over j ≠ ŷ (the j = ŷ term is the "− 1"):
    finite and order-preserving for any feature norm, even where Ē underflows next to 1.

    `logits` (B, C); `quadratic[k, j]` = (w_j − w_k)ᵀ Σ_k (w_j − w_k) (C, C).
    """
    predicted = logits.argmax(dim=1)
    exponents = logits - logits.gather(1, predicted[:, None]) + 0.5 * quadratic[predicted]
    exponents = exponents.scatter(1, predicted[:, None], float("-inf"))
    return torch.logsumexp(exponents, dim=1)


def pixel_log_bounds(logits: torch.Tensor, quadratic: torch.Tensor) -> torch.Tensor:
    """log Ē of every element: (B,) for logits (B, C), (B, H, W) for (B, C, H, W)."""
    classes = logits.shape[1]
    flat = logits.movedim(1, -1).reshape(-1, classes)
    return log_epmcm_bound(flat, quadratic).reshape(logits.shape[:1] + logits.shape[2:])


class EpmcmSelector(Selector):
    """Labels the candidates with the largest EPMCM upper bound first (scores are log Ē,
    the same order). Segmentation: Ē of every pixel under ISDA's per-pixel covariance, and an
    image's score is the log of its pixels' mean Ē (the expected change summed over its
    pixels, over their count), computed in log space."""

    tasks = ("classification", "segmentation")

    def check_module(self, module: pl.LightningModule) -> None:
        require(module.task, LogScoreReduction, "EPMCM")
        if getattr(module, "covariance", None) is None:
            raise ConfigError(
                "EPMCM reads the class covariance of ISDA training: set method.module.isda.enabled"
                "=true (conf/method/dast_al.yaml does)"
            )

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        covariance = module.covariance
        logits = module.backbone(x).logits.float()
        quadratic = covariance.quadratic_terms(module.backbone.classifier.weight.float())
        return module.task.reduce_log_scores(pixel_log_bounds(logits, quadratic))
