"""Core-set selection (Sener & Savarese 2018): greedy k-center on penultimate features."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.methods.selector import SelectionRequest, Selector, collect


def min_distances(points: torch.Tensor, centers: torch.Tensor, chunk: int) -> torch.Tensor:
    """Squared distance from each point to its nearest center, in chunk × chunk blocks.

    Distances are exact differences (not cdist's ‖a‖² + ‖b‖² − 2ab shortcut, which loses
    the precision the greedy's argmax needs in float32).
    """
    nearest = torch.full((len(points),), float("inf"), device=points.device)
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk]
        for center_start in range(0, len(centers), chunk):
            distances = torch.cdist(
                block,
                centers[center_start : center_start + chunk],
                compute_mode="donot_use_mm_for_euclid_dist",
            )
            closest = distances.min(dim=1).values.square()
            nearest[start : start + chunk] = torch.minimum(nearest[start : start + chunk], closest)
    return nearest


def k_center_greedy(
    candidates: torch.Tensor, centers: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `k` candidate positions, each the farthest from all centers chosen so far.

    Memory O(N·d + chunk²): one vector of nearest-center distances, updated with one new
    center at a time; the N×N matrix is never built. Returns the positions and the
    distance (not squared) each had to its nearest center when picked.
    """
    nearest = min_distances(candidates, centers, chunk)
    picks, radii = [], []
    for _ in range(k):
        pick = int(torch.argmax(nearest))
        picks.append(pick)
        radii.append(nearest[pick].sqrt())
        update = (candidates - candidates[pick]).square().sum(dim=1)
        nearest = torch.minimum(nearest, update)
        nearest[pick] = -1.0
    return torch.tensor(picks, dtype=torch.long), torch.stack(radii).cpu()


class CoresetSelector(Selector):
    """Greedy k-center over the candidates, with the labeled set as initial centers."""

    def __init__(self, chunk: int = 512) -> None:
        super().__init__()
        self.chunk = chunk

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def features(x: torch.Tensor) -> torch.Tensor:
            return module.backbone(x).features.float()

        indices, candidates = collect(request.candidates, features, module.device)
        _, centers = collect(request.labeled, features, module.device)
        positions, radii = k_center_greedy(candidates, centers, request.query, self.chunk)
        return indices[positions], radii
