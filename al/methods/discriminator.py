"""How well a discriminator whose output is P(labeled) tells the labeled pool from the
candidates: the stage metrics the VAAL family and M2-VAAL report, and a stopping rule may read."""

from __future__ import annotations

import torch
import torch.nn.functional as F

DISCRIMINATOR_METRICS = (
    "discriminator/loss",
    "discriminator/acc_labeled",
    "discriminator/acc_unlabeled",
    "discriminator/acc",
)


def discriminator_metrics(
    labeled_probability: torch.Tensor, unlabeled_probability: torch.Tensor
) -> dict[str, float]:
    """How well a discriminator whose output is P(labeled) tells the pools apart: its loss
    (mean BCE on each pool, summed, as VAAL's L_D), its accuracy on each pool at 0.5, and their
    mean `discriminator/acc` — 0.5 is chance whatever the pools' sizes."""
    p_l, p_u = labeled_probability.float(), unlabeled_probability.float()
    loss = F.binary_cross_entropy(p_l, torch.ones_like(p_l)) + F.binary_cross_entropy(
        p_u, torch.zeros_like(p_u)
    )
    accuracy_l = (p_l > 0.5).float().mean().item()
    accuracy_u = (p_u <= 0.5).float().mean().item()
    return {
        "discriminator/loss": loss.item(),
        "discriminator/acc_labeled": accuracy_l,
        "discriminator/acc_unlabeled": accuracy_u,
        "discriminator/acc": (accuracy_l + accuracy_u) / 2,
    }
