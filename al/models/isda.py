"""Implicit semantic data augmentation (Wang et al., NeurIPS 2019): online class-conditional
covariance of penultimate features and the augmented logits of its surrogate loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

COVARIANCES = ("full", "diagonal")


@dataclass(frozen=True)
class IsdaSettings:
    """`enabled`; `lambda0` (λ0, 0.5 for CIFAR) of the schedule λ = λ0·t/T; `covariance`:
    `full` (A×A per class) or `diagonal` (per-dimension variance, for wide features)."""

    enabled: bool = False
    lambda0: float = 0.5
    covariance: str = "full"


class ClassCovariance(nn.Module):
    """Running per-class count, mean and covariance (biased) of every feature seen so far.

    Each batch is merged as in ISDA's `EstimatorCV.update_CV`, for all classes at once:
    w = m/(n+m); Σ ← (1−w)Σ + wΣ' + w(1−w)(μ−μ')(μ−μ')ᵀ; μ ← (1−w)μ + wμ'; n ← n+m.
    """

    def __init__(self, num_classes: int, feature_dim: int, diagonal: bool = False) -> None:
        super().__init__()
        self.diagonal = diagonal
        shape = (num_classes, feature_dim) if diagonal else (num_classes, feature_dim, feature_dim)
        self.register_buffer("count", torch.zeros(num_classes))
        self.register_buffer("mean", torch.zeros(num_classes, feature_dim))
        self.register_buffer("covariance", torch.zeros(shape))

    @torch.no_grad()
    def update(
        self, features: torch.Tensor, labels: torch.Tensor, chunk_elements: int = 2**23
    ) -> None:
        """Merge the features (N, A) of `labels` (N,). The batch goes in chunks of at most
        `chunk_elements` (rows × classes × A) — per-pixel features of a segmentation batch run
        to 10⁴ rows — and the merge is exact, so chunking changes nothing but memory."""
        features = features.detach().float()
        rows = max(1, chunk_elements // (len(self.count) * features.shape[1]))
        for start in range(0, len(features), rows):
            self.merge(features[start : start + rows], labels[start : start + rows])

    def merge(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """One batch's count, mean and covariance merged into the running ones."""
        onehot = F.one_hot(labels, len(self.count)).float()  # (N, C)
        batch_count = onehot.sum(0)
        batch_mean = onehot.T @ features / batch_count.clamp(min=1)[:, None]
        centered = (features[:, None, :] - batch_mean[None]) * onehot[..., None]  # (N, C, A)
        if self.diagonal:
            batch_cov = centered.square().sum(0)
        else:
            batch_cov = torch.einsum("nca,ncb->cab", centered, centered)
        batch_cov = batch_cov / _expand(batch_count.clamp(min=1), batch_cov)
        weight = batch_count / (self.count + batch_count).clamp(min=1)
        shift = self.mean - batch_mean
        spread = shift.square() if self.diagonal else shift[:, :, None] * shift[:, None, :]
        w = _expand(weight, batch_cov)
        self.covariance.mul_(1 - w).add_(w * batch_cov + w * (1 - w) * spread)
        self.mean.mul_(1 - weight[:, None]).add_(weight[:, None] * batch_mean)
        self.count.add_(batch_count)

    def quadratic_terms(self, weight: torch.Tensor) -> torch.Tensor:
        """q[k, j] = (w_j − w_k)ᵀ Σ_k (w_j − w_k) for classifier weights (C, A): (C, C). A
        diagonal Σ_k = diag(σ_k) expands to σ_k·(w_j∘w_j) − 2 (σ_k∘w_k)·w_j + σ_k·(w_k∘w_k):
        memory C × C (C × C × A for the differences: 16 GB at ImageNet's 1,000 × 4,096)."""
        covariance = self.covariance.to(weight.dtype)
        if self.diagonal:
            weighted = covariance * weight  # σ_k ∘ w_k, (C, A)
            own = (weighted * weight).sum(dim=1, keepdim=True)  # σ_k · (w_k ∘ w_k), (C, 1)
            return covariance @ (weight * weight).T - 2 * weighted @ weight.T + own
        differences = weight[None, :, :] - weight[:, None, :]  # (k, j, A)
        return torch.einsum("kja,kab,kjb->kj", differences, covariance, differences)


def _expand(per_class: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return per_class.reshape(-1, *([1] * (like.dim() - 1)))


def augmented_logits(
    logits: torch.Tensor, quadratic: torch.Tensor, labels: torch.Tensor, strength: float
) -> torch.Tensor:
    """ISDA's surrogate: z̃_ij = z_ij + (λ/2)·(w_j − w_y)ᵀ Σ_y (w_j − w_y); use with plain CE."""
    return logits + 0.5 * strength * quadratic[labels]


def isda_strength(lambda0: float, epoch: int, max_epochs: int) -> float:
    """λ = λ0 · t / T with t the 0-based epoch."""
    return lambda0 * epoch / max_epochs
