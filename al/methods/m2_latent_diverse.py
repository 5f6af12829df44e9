"""The M2-VAAL slides' Algorithm 1: per predicted class, greedily the candidate farthest (in
summed latent distance) from that class's anchor points, each pick joining the anchors."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.methods.m2 import LatentPools, LatentSelector, distance_sums, latent_pools
from al.methods.selector import SelectionRequest, TieBreak


def class_quotas(query: int, capacities: list[int]) -> list[int]:
    """`query` split over the classes: an equal share for every class with candidates, the
    remainder one each to the classes with the most candidates (ties: the lower class), and
    whatever a class cannot fill (fewer candidates than its share) shared out again."""
    quotas = [0] * len(capacities)
    order = sorted(range(len(capacities)), key=lambda label: (-capacities[label], label))
    remaining = query
    while remaining > 0:
        open_classes = [label for label in order if quotas[label] < capacities[label]]
        if not open_classes:
            raise ValueError(f"{query} picks but only {sum(capacities)} candidates")
        share, extra = divmod(remaining, len(open_classes))
        for rank, label in enumerate(open_classes):
            given = min(share + (rank < extra), capacities[label] - quotas[label])
            quotas[label] += given
            remaining -= given
    return quotas


def greedy_farthest(
    points: torch.Tensor, anchors: torch.Tensor, count: int, ties: TieBreak
) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` positions of `points`, each maximising the sum of distances to the anchors and
    the earlier picks (Algorithm 1, steps 2–3; equal sums by `ties`); returns them with each
    pick's mean distance to the anchors at the time it was picked."""
    sums = distance_sums(points, anchors)
    anchor_count = len(anchors)
    taken = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    positions, scores = [], []
    for _ in range(count):
        best = ties.argmax(sums.masked_fill(taken, float("-inf")))
        positions.append(best)
        scores.append(sums[best] / anchor_count)
        taken[best] = True
        sums += (points - points[best]).norm(dim=1)
        anchor_count += 1
    return torch.tensor(positions, device=points.device), torch.stack(scores)


class LatentDiverseSelector(LatentSelector):
    """Algorithm 1 in M2's latent space μ_z: `class_quotas(query)` picks per class the model
    predicts among the candidates, each the candidate of that class farthest from the class's
    anchors (labeled samples classified correctly into it). A class without anchors uses every
    labeled sample instead (farthest from all known samples). Picks come class by class; a
    pick's score is its mean distance to the anchors when picked."""

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pools = latent_pools(module, request)
        positions, scores = diverse_picks(pools, request.query, self.ties)
        return pools.candidate_indices[positions], scores


def diverse_picks(
    pools: LatentPools, query: int, ties: TieBreak
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1's `query` candidate positions (class by class) and their scores."""
    predicted = pools.candidate_probabilities.argmax(1)
    classes = pools.candidate_probabilities.shape[1]
    capacities = torch.bincount(predicted, minlength=classes).tolist()
    picks, scores = [], []
    for label, quota in enumerate(class_quotas(query, capacities)):
        if quota == 0:
            continue
        members = torch.nonzero(predicted == label).squeeze(1)
        positions, distances = greedy_farthest(
            pools.candidate_latents[members], pools.anchors(label), quota, ties
        )
        picks.append(members[positions])
        scores.append(distances)
    return torch.cat(picks).cpu(), torch.cat(scores).float().cpu()
