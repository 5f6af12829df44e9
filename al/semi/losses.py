"""FixMatch's unlabeled loss (Sohn et al. 2020, Eq. 4) and FlexMatch's class-wise thresholds
(Zhang et al. 2021, Eqs. 6, 7 and 11)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fixmatch_loss(
    weak_logits: torch.Tensor, strong_logits: torch.Tensor, thresholds: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """ℓ_u = (1/μB) Σ 1[max q_b ≥ τ(q̂_b)] · H(q̂_b, p(y | A(u_b))) (Eq. 4): hard pseudo-labels
    q̂ = argmax q of the weak view's prediction (no gradient), cross-entropy of the strong
    view's logits on them, kept where the confidence reaches the pseudo-label's threshold
    (`thresholds[c]`; FixMatch: τ for every class); the mean over the whole unlabeled batch.
    Returns the loss, the mask and the pseudo-labels."""
    probabilities = weak_logits.detach().softmax(dim=1)
    confidence, pseudo_labels = probabilities.max(dim=1)
    mask = (confidence >= thresholds[pseudo_labels]).float()
    losses = F.cross_entropy(strong_logits, pseudo_labels, reduction="none")
    return (losses * mask).mean(), mask, pseudo_labels


def flexmatch_thresholds(
    status: torch.Tensor, classes: int, threshold: float, warmup: bool, mapping: str
) -> torch.Tensor:
    """τ_t(c) = M(β_t(c)) · τ (Eq. 6/11) from the learning status: `status[i]` is unlabeled
    sample i's latest pseudo-label predicted above τ, −1 (none yet), or −2 (not an unlabeled
    sample of this stage: not counted). σ_t(c) counts them
    per class (Eq. 6); β_t(c) = σ_t(c) / max_c σ_t(c), or with the warm-up (Eq. 11)
    / max(max_c σ_t(c), N − Σ_c σ_t(c)); M is the convex x / (2 − x) (Eq. 7) or linear."""
    counts = torch.bincount(status[status >= 0], minlength=classes).float()
    unused = (status == -1).sum().float()
    denominator = counts.max()
    if warmup:
        denominator = torch.maximum(denominator, unused)
    beta = counts / denominator.clamp(min=1.0)
    mapped = beta / (2 - beta) if mapping == "convex" else beta
    return mapped * threshold


def update_status(
    status: torch.Tensor,
    index: torch.Tensor,
    weak_logits: torch.Tensor,
    threshold: float,
) -> None:
    """Record the pseudo-labels of the samples at `index` whose weak-view confidence exceeds
    the fixed τ (FlexMatch Alg. 1, line 8); the others keep their last status."""
    confidence, pseudo_labels = weak_logits.detach().softmax(dim=1).max(dim=1)
    confident = confidence > threshold
    status[index[confident]] = pseudo_labels[confident]
