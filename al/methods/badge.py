"""BADGE (Ash et al. 2020): k-means++ seeding on gradient embeddings of the last layer.

The embedding of x is the gradient of the cross-entropy at the predicted label ŷ with respect
to the classifier's weights (§3, Algorithm 1): g_x = (p − onehot(ŷ)) ⊗ h(x), p the softmax and
h(x) the classifier's input (the penultimate feature; the dropout slot before the classifier
is an identity in eval mode). Its C·d entries are never built: every distance follows from the
two factors, so memory stays O(N·(C + d)) for N candidates.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from al.methods.selector import SelectionRequest, Selector, TieBreak, collect


def gradient_factors(module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
    """[p − onehot(ŷ) | h] of each sample of `x` (B × (C + d)): g_x is their outer product."""
    backbone = module.backbone
    output = backbone(x)
    hidden = backbone.dropout(output.features).float()
    probs = F.softmax(output.logits.float(), dim=1)
    predicted = F.one_hot(probs.argmax(dim=1), probs.shape[1])
    return torch.cat([probs - predicted, hidden], dim=1)


def squared_norms(pminus: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """‖g‖² = ‖p − onehot(ŷ)‖² ‖h‖² of each row."""
    return pminus.square().sum(dim=1) * hidden.square().sum(dim=1)


def squared_distances(
    pminus: torch.Tensor, hidden: torch.Tensor, norms: torch.Tensor, center: int
) -> torch.Tensor:
    """‖g_a − g_c‖² from every row a to the row `center`, by (a ⊗ b)·(c ⊗ d) = (a·c)(b·d):
    ‖g_a‖² + ‖g_c‖² − 2 (a_p·c_p)(h_a·h_c), with `norms` the ‖g‖²; clamped at 0 against rounding."""
    cross = (pminus @ pminus[center]) * (hidden @ hidden[center])
    return (norms + norms[center] - 2 * cross).clamp_min(0)


def next_center(
    nearest: torch.Tensor, chosen: torch.Tensor, generator: torch.Generator, ties: TieBreak
) -> int:
    """A row drawn with probability ∝ D² (k-means++); when every D² is 0 (all rows left
    coincide with a center), a row not chosen yet, by `ties`."""
    if nearest.sum() > 0:
        return int(torch.multinomial(nearest, 1, generator=generator))
    return ties.argmax((~chosen).float())


def kmeans_pp_seeds(
    pminus: torch.Tensor,
    hidden: torch.Tensor,
    k: int,
    generator: torch.Generator,
    ties: TieBreak,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`k` distinct rows seeded by k-means++ over the embeddings (p − onehot(ŷ)) ⊗ h, the first
    the largest-norm one (as the BADGE code; equal norms by `ties`). Returns the rows and the
    D² each had when picked (the first: its squared norm). One new center at a time: O(N)
    extra memory."""
    norms = squared_norms(pminus, hidden)
    nearest = norms  # what the first pick is scored by
    chosen = torch.zeros(len(norms), dtype=torch.bool, device=norms.device)
    picks, scores = [], []
    for step in range(k):
        pick = ties.argmax(norms) if step == 0 else next_center(nearest, chosen, generator, ties)
        picks.append(pick)
        scores.append(float(nearest[pick]))
        chosen[pick] = True
        distances = squared_distances(pminus, hidden, norms, pick)
        nearest = distances if step == 0 else torch.minimum(nearest, distances)
        nearest[pick] = 0.0
    return torch.tensor(picks, dtype=torch.long), torch.tensor(scores)


class BadgeSelector(Selector):
    """k-means++ seeds of the candidates' gradient embeddings, drawn from `request.seed`."""

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        indices, factors = collect(
            request.candidates, lambda x: gradient_factors(module, x), module.device
        )
        classes = module.backbone.classifier.out_features
        pminus, hidden = factors[:, :classes], factors[:, classes:]
        generator = torch.Generator(device=factors.device).manual_seed(request.seed)
        positions, scores = kmeans_pp_seeds(pminus, hidden, request.query, generator, self.ties)
        return indices[positions], scores
