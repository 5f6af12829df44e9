"""The M2-VAAL slides' Algorithm 2: the least confident candidates, weighted by how far they
lie (in M2's latent space) from the labeled samples correctly classified into their class."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.methods.m2 import LatentPools, LatentSelector, distance_sums, latent_pools
from al.methods.selector import SelectionRequest


def weighted_uncertainty(confidence: torch.Tensor, mean_distance: torch.Tensor) -> torch.Tensor:
    """(1 − confidence) · d / max d over the candidates: high for a candidate the model is
    unsure of AND far from its class's known samples, 0 for a certain one.

    The slides say "the minimum prediction confidence, weighted by normalised distance" in
    words only; this product keeps both factors in [0, 1] with "higher = label first", so
    neither can dominate by scale, and a distance weight never rescues a certain prediction
    (dividing the confidence by the distance instead would rank a far, certain sample above a
    near, unsure one)."""
    normalised = mean_distance / mean_distance.max().clamp_min(
        torch.finfo(mean_distance.dtype).tiny
    )
    return (1.0 - confidence) * normalised


class LatentWeightedSelector(LatentSelector):
    """Algorithm 2 in M2's latent space μ_z: for every candidate, the mean distance to its
    predicted class's anchors (labeled samples classified correctly into it; every labeled
    sample when the class has none), scored by `weighted_uncertainty`. Unlike Algorithm 1 it
    does not force picks from every class."""

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        pools = latent_pools(module, request)
        confidence = pools.candidate_probabilities.max(1).values
        mean_distance = anchor_mean_distances(pools)
        scores = weighted_uncertainty(confidence, mean_distance).float().cpu()
        self.diagnostics = {
            "candidate_index": pools.candidate_indices.numpy(),
            "candidate_mean_distance": mean_distance.cpu().numpy(),
            "candidate_confidence": confidence.cpu().numpy(),
        }
        return self.ties.top_k(pools.candidate_indices, scores, request.query)


def anchor_mean_distances(pools: LatentPools) -> torch.Tensor:
    """Each candidate's mean latent distance to the anchors of its predicted class."""
    predicted = pools.candidate_probabilities.argmax(1)
    mean_distance = torch.zeros(len(predicted), device=predicted.device)
    for label in torch.unique(predicted).tolist():
        members = predicted == label
        anchors = pools.anchors(label)
        sums = distance_sums(pools.candidate_latents[members], anchors)
        mean_distance[members] = sums / len(anchors)
    return mean_distance
