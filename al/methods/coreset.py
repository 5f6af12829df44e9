"""Core-set selection (Sener & Savarese 2018): greedy k-center on penultimate features."""

from __future__ import annotations

from collections.abc import Iterator

import pytorch_lightning as pl
import torch

from al.methods.selector import SelectionRequest, Selector, TieBreak, collect
from al.options import PositiveInt

# Distances below this fraction of ‖a‖² + max‖b‖² are re-checked by explicit differences:
# above it, float64's cancellation error is far below float32's resolution.
RECHECK_FRACTION = 1e-6


def min_distances(points: torch.Tensor, centers: torch.Tensor, chunk: int) -> torch.Tensor:
    """Squared distance from each point to its nearest center, in chunk × chunk blocks.

    One matrix product per block, ‖a‖² + ‖b‖² − 2ab, in float64: where the distance is not
    tiny next to the norms, its cancellation error sits far below float32's resolution, so the
    float32 result is the exact one, rounded. The few points that lie that close to a center
    (duplicates of labeled samples: exact zeros, which the greedy's ties depend on) are
    re-checked by explicit differences. Memory O(N + chunk·d + chunk²) beyond the inputs, in
    buffers allocated once: a fresh chunk² block per product fragments glibc's heap, whose
    peak then grows with N. Devices without float64 (MPS) use explicit differences throughout.
    """
    if points.device.type == "mps" or len(centers) == 0:
        return difference_min_distances(points, centers, chunk)
    center_norms = torch.cat([block.double().square().sum(dim=1) for block in centers.split(chunk)])
    nearest = torch.empty(len(points), dtype=torch.float64, device=points.device)
    suspect = torch.empty(len(points), dtype=torch.bool, device=points.device)
    scratch = torch.empty(
        min(chunk, len(points)) * min(chunk, len(centers)),
        dtype=torch.float64,
        device=points.device,
    )
    for start in range(0, len(points), chunk):
        block = points[start : start + chunk].double()
        block_norms = block.square().sum(dim=1)
        closest = nearest[start : start + chunk].fill_(float("inf"))
        for center_start in range(0, len(centers), chunk):
            center_block = centers[center_start : center_start + chunk].double()
            distances = scratch[: len(block) * len(center_block)].view(len(block), -1)
            block_center_norms = center_norms[center_start : center_start + chunk]
            torch.add(block_norms[:, None], block_center_norms, out=distances)
            distances.addmm_(block, center_block.T, alpha=-2.0)
            torch.minimum(closest, distances.amin(dim=1), out=closest)
        tolerance = RECHECK_FRACTION * (block_norms + center_norms.max())
        torch.le(closest, tolerance, out=suspect[start : start + chunk])
        closest.clamp_(min=0.0)
    recheck = torch.nonzero(suspect).squeeze(1)
    if len(recheck):
        exact = difference_min_distances(points[recheck].double(), centers.double(), chunk)
        nearest[recheck] = exact
    return nearest.to(points.dtype)


def difference_min_distances(
    points: torch.Tensor, centers: torch.Tensor, chunk: int
) -> torch.Tensor:
    """`min_distances` from explicit differences (exact, several times slower on a CPU)."""
    nearest = torch.full((len(points),), float("inf"), dtype=points.dtype, device=points.device)
    for rows, distances in exact_distance_blocks(points, centers, chunk):
        nearest[rows] = torch.minimum(nearest[rows], distances.min(dim=1).values.square())
    return nearest


def exact_distance_blocks(
    points: torch.Tensor, others: torch.Tensor, chunk: int
) -> Iterator[tuple[slice, torch.Tensor]]:
    """(rows, Euclidean distances of `points[rows]` to one chunk of `others`) for every pair of
    chunks, from explicit differences (not cdist's ‖a‖² + ‖b‖² − 2ab, which cancels in
    float32); memory O(chunk²) at a time."""
    for start in range(0, len(points), chunk):
        rows = slice(start, start + chunk)
        for other_start in range(0, len(others), chunk):
            yield (
                rows,
                torch.cdist(
                    points[rows],
                    others[other_start : other_start + chunk],
                    compute_mode="donot_use_mm_for_euclid_dist",
                ),
            )


def k_center_greedy(
    candidates: torch.Tensor,
    centers: torch.Tensor,
    k: int,
    ties: TieBreak,
    chunk: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick `k` candidate positions, each the farthest from all centers chosen so far (equally
    far ones by `ties`).

    Memory O(N·d + chunk²): one vector of nearest-center distances, updated with one new
    center at a time; the N×N matrix is never built. Returns the positions and the
    distance (not squared) each had to its nearest center when picked.
    """
    nearest = min_distances(candidates, centers, chunk)
    buffer = update_buffer(candidates)
    picks, radii = [], []
    for _ in range(k):
        pick = ties.argmax(nearest)
        picks.append(pick)
        radii.append(nearest[pick].sqrt())
        nearest_update(candidates, candidates[pick], nearest, buffer)
        nearest[pick] = -1.0
    return torch.tensor(picks, dtype=torch.long), torch.stack(radii).cpu()


# Rows per block of the per-pick update on a CPU: blocks of about 1 MB stay in the cache.
CACHE_BLOCK_BYTES = 2**20


def update_buffer(candidates: torch.Tensor) -> torch.Tensor:
    """Scratch rows for `nearest_update`: a cache-sized block on a CPU; on a GPU the whole
    pool (one kernel per step beats many small ones)."""
    row_bytes = candidates.shape[1] * candidates.element_size()
    rows = max(1, CACHE_BLOCK_BYTES // row_bytes) if candidates.device.type == "cpu" else None
    rows = len(candidates) if rows is None else min(rows, len(candidates))
    return torch.empty(
        (rows, candidates.shape[1]), dtype=candidates.dtype, device=candidates.device
    )


def nearest_update(
    candidates: torch.Tensor, center: torch.Tensor, nearest: torch.Tensor, buffer: torch.Tensor
) -> None:
    """nearest ← min(nearest, ‖x − center‖²) for every candidate x, in place: explicit
    differences (the same bits as `(x − center).square().sum(1)`), block by block through
    `buffer`, so each pick reads the candidates once and allocates no N×d temporaries."""
    rows = len(buffer)
    for start in range(0, len(candidates), rows):
        block = candidates[start : start + rows]
        differences = buffer[: len(block)]
        torch.sub(block, center, out=differences)
        part = nearest[start : start + rows]
        torch.minimum(part, differences.square_().sum(dim=1), out=part)


class CoresetSelector(Selector):
    """Greedy k-center over the candidates, with the labeled set as initial centers."""

    tasks = ("classification", "segmentation")

    def __init__(self, chunk: PositiveInt = 512) -> None:
        super().__init__()
        self.chunk = chunk

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        def features(x: torch.Tensor) -> torch.Tensor:
            return module.backbone(x).features.float()

        indices, candidates = collect(request.candidates, features, module.device)
        _, centers = collect(request.labeled, features, module.device)
        positions, radii = k_center_greedy(
            candidates, centers, request.query, self.ties, self.chunk
        )
        return indices[positions], radii
