"""The two k-center baselines Core-set is measured against: the public reference codes'
full-matrix pattern, and the one-pass-per-pick floor."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.metrics import pairwise_distances

from al.methods.coreset import nearest_update, update_buffer


def reference_k_center(candidates: np.ndarray, centers: np.ndarray, k: int) -> list[int]:
    """The reference codes' greedy (Sener & Savarese; google/active-learning's kcenter_greedy):
    sklearn `pairwise_distances` of every candidate to every center (the whole N×M matrix),
    its row minima, then per pick the distances to the new center."""
    nearest = pairwise_distances(candidates, centers).min(axis=1)
    picks = []
    for _ in range(k):
        pick = int(np.argmax(nearest))
        picks.append(pick)
        update = pairwise_distances(candidates, candidates[[pick]])[:, 0]
        nearest = np.minimum(nearest, update)
        nearest[pick] = -1.0
    return picks


def floor_k_center(candidates: torch.Tensor, nearest: torch.Tensor, k: int) -> list[int]:
    """The greedy's physical limit: given the nearest-center distances, each pick reads every
    candidate once (distance to the new center, min, argmax) — no first pass at all — with
    the same cache-blocked exact update as Core-set (`coreset.nearest_update`)."""
    nearest, buffer = nearest.clone(), update_buffer(candidates)
    picks = []
    for _ in range(k):
        pick = int(torch.argmax(nearest))
        picks.append(pick)
        nearest_update(candidates, candidates[pick], nearest, buffer)
        nearest[pick] = -1.0
    return picks


def exact_nearest(candidates: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Squared distance of each candidate to its nearest center, by explicit differences, one
    center at a time (the floor's input, outside its timing)."""
    nearest = torch.full((len(candidates),), float("inf"), device=candidates.device)
    for center in centers:
        nearest = torch.minimum(nearest, (candidates - center).square().sum(dim=1))
    return nearest
