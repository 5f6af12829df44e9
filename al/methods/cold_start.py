"""Cold-start selection on a feature space: TypiClust (Hacohen et al., ICML 2022) and ProbCover
(Yehuda et al., NeurIPS 2022), as functions of NumPy arrays, so that a selector and the initial
pool can both call them.

Every function takes the features of the labeled samples and the candidates as the rows of
one float32 array and a boolean `labeled` mask over those rows; picks are row positions, never
labeled ones. faiss does the nearest-neighbour, range and k-means work on the CPU (`IndexFlatL2`
is exact search, squared L2 distances in float32; `faiss.Kmeans` is seeded), so memory stays
linear in the rows (plus the δ-ball graph's edges): no N×N matrix is ever built. Exact ties go
through `al.methods.selector.TieBreak`, never by row order.
"""

from __future__ import annotations

from typing import Literal

import faiss
import numpy as np
import pytorch_lightning as pl
import torch

from al.methods.selector import SelectionRequest, TieBreak, collect

# TypiClust's typicality is 1 / (mean distance + ε); ε from the authors' code
# (avihu111/TypiClust deep-al/pycls/al/typiclust.py, calculate_typicality).
TYPICALITY_EPSILON = 1e-5

Distance = Literal["squared", "euclidean"]


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return np.ascontiguousarray(features / np.maximum(norms, np.finfo(np.float32).tiny), np.float32)


def kmeans_assign(features: np.ndarray, clusters: int, seed: int, iterations: int) -> np.ndarray:
    """The k-means cluster of each row: faiss, k-means++ seeding from `seed`, every row used
    (no subsampling), `iterations` Lloyd steps."""
    kmeans = faiss.Kmeans(
        features.shape[1],
        clusters,
        niter=iterations,
        seed=seed,
        init_method=faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS,
        min_points_per_centroid=1,
        max_points_per_centroid=len(features),
        verbose=False,
    )
    kmeans.train(features)
    _, assigned = kmeans.index.search(features, 1)
    return assigned[:, 0]


def typicality(features: np.ndarray, neighbours: int, distance: Distance) -> np.ndarray:
    """Typicality(x) = (1/K Σ_{x_i ∈ K-NN(x)} d(x, x_i))⁻¹ (TypiClust; + ε as the code),
    K = `neighbours` among the other rows; d the squared L2 distance (the code: faiss returns
    squared distances) or the Euclidean one (the paper). One row alone: typicality 0."""
    if len(features) < 2:
        return np.zeros(len(features))
    index = faiss.IndexFlatL2(features.shape[1])
    index.add(features)
    found, _ = index.search(features, neighbours + 1)
    found = np.maximum(found[:, 1:].astype(np.float64), 0.0)  # column 0: the row itself
    if distance == "euclidean":
        found = np.sqrt(found)
    return 1.0 / (found.mean(axis=1) + TYPICALITY_EPSILON)


def cluster_visit_order(
    clusters: np.ndarray, labeled: np.ndarray, min_cluster_size: int, ties: TieBreak
) -> np.ndarray:
    """Cluster ids in the order TypiClust visits them: fewest labeled samples first, then the
    largest; clusters of fewer than `min_cluster_size` rows are left out (the code drops those
    of ≤ 5); equal ones in the order `ties` draws."""
    ids, sizes = np.unique(clusters, return_counts=True)
    held = np.bincount(clusters[labeled], minlength=ids.max() + 1)[ids]
    kept = sizes >= min_cluster_size
    ids, sizes, held = ids[kept], sizes[kept], held[kept]
    rank = torch.from_numpy(sizes - held * (len(clusters) + 1))
    return ids[ties.order(rank, len(rank)).numpy()]


def typiclust_rule(
    features: np.ndarray,
    clusters: np.ndarray,
    labeled: np.ndarray,
    query: int,
    ties: TieBreak,
    min_cluster_size: int = 6,
    neighbours: int = 20,
    distance: Distance = "squared",
) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust's selection given the cluster of each row (as the authors' code runs it):
    the clusters in `cluster_visit_order`, cycled; from each, the most typical row not labeled
    nor picked, typicality among those rows with K = min(`neighbours`, n // 2). A cluster with
    no such row left is skipped; when none has any, the rest are drawn at random by `ties`
    (score 0; the code would fail). Returns the picked rows and their typicality."""
    order = cluster_visit_order(clusters, labeled, min_cluster_size, ties)
    by_cluster = np.argsort(clusters, kind="stable")
    starts = np.searchsorted(clusters[by_cluster], order)
    ends = np.searchsorted(clusters[by_cluster], order, side="right")
    available = ~labeled
    picks, scores, visit = [], [], 0
    for _ in range(query):
        members = np.empty(0, dtype=np.int64)
        for _ in range(len(order)):
            slot, visit = visit % len(order), visit + 1
            members = by_cluster[starts[slot] : ends[slot]]
            members = members[available[members]]
            if len(members):
                break
        if len(members):
            values = typicality(features[members], min(neighbours, len(members) // 2), distance)
            best = ties.argmax(torch.from_numpy(values))
            pick, score = int(members[best]), float(values[best])
        else:
            pick, score = ties.argmax(torch.from_numpy(available.astype(np.int8))), 0.0
        available[pick] = False
        picks.append(pick)
        scores.append(score)
    return np.array(picks, dtype=np.int64), np.array(scores)


def typiclust_picks(
    features: np.ndarray,
    labeled: np.ndarray,
    query: int,
    ties: TieBreak,
    seed: int,
    max_clusters: int = 500,
    min_cluster_size: int = 6,
    neighbours: int = 20,
    distance: Distance = "squared",
    kmeans_iterations: int = 100,
) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust: k-means into min(|L| + `query`, `max_clusters`) clusters, then
    `typiclust_rule`."""
    clusters = min(int(labeled.sum()) + query, max_clusters, len(features))
    assigned = kmeans_assign(features, clusters, seed, kmeans_iterations)
    return typiclust_rule(
        features, assigned, labeled, query, ties, min_cluster_size, neighbours, distance
    )


Graph = tuple[np.ndarray, np.ndarray]


def delta_ball_graph(features: np.ndarray, delta: float, chunk: int = 4096) -> Graph:
    """The directed graph x → y iff ‖x − y‖ < δ (the code's strict ball; every row reaches
    itself), as CSR: `offsets` (N + 1) and `targets`. faiss range search over blocks of `chunk`
    query rows: memory O(N + edges), never N×N."""
    index = faiss.IndexFlatL2(features.shape[1])
    index.add(features)
    offsets, targets, total = [np.zeros(1, dtype=np.int64)], [], 0
    for start in range(0, len(features), chunk):
        limits, _, found = index.range_search(features[start : start + chunk], delta**2)
        offsets.append(limits[1:].astype(np.int64) + total)
        targets.append(found.astype(np.int32))
        total += len(found)
    return np.concatenate(offsets), np.concatenate(targets)


def csr_rows(offsets: np.ndarray, values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The entries of `rows` of a CSR array, concatenated (no Python loop over rows)."""
    starts = offsets[rows]
    lengths = offsets[rows + 1] - starts
    first = np.cumsum(lengths) - lengths
    return values[np.repeat(starts - first, lengths) + np.arange(lengths.sum())]


def reversed_graph(graph: Graph) -> Graph:
    """The same edges as CSR by target: for each y, the rows x with x → y."""
    offsets, targets = graph
    sources = np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))
    by_target = np.argsort(targets, kind="stable")
    counts = np.bincount(targets, minlength=len(offsets) - 1)
    return np.concatenate([[0], np.cumsum(counts)]), sources[by_target]


def probcover_picks(
    graph: Graph, labeled: np.ndarray, query: int, ties: TieBreak
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ProbCover's greedy max coverage: rows covered by a labeled row's ball
    start covered; each pick is the unlabeled row whose ball holds the most uncovered rows
    (its out-degree once edges into covered rows are removed), and what it covers becomes
    covered. Once no row covers anything new, picks are drawn at random by `ties` (the code
    would repeat row 0). Returns the picks, how many rows each newly covered, and which rows
    are covered after them."""
    offsets, targets = graph
    rows = len(offsets) - 1
    in_offsets, in_sources = reversed_graph(graph)
    covered = np.zeros(rows, dtype=bool)
    covered[csr_rows(offsets, targets, np.flatnonzero(labeled))] = True
    uncovered = np.concatenate([[0], np.cumsum(~covered[targets])])
    degree = uncovered[offsets[1:]] - uncovered[offsets[:-1]]
    eligible = ~labeled
    picks, gains = [], []
    for _ in range(query):
        pick = ties.argmax(torch.from_numpy(np.where(eligible, degree, -1)))
        reached = csr_rows(offsets, targets, np.array([pick]))
        new = np.unique(reached[~covered[reached]])
        covered[new] = True
        degree -= np.bincount(csr_rows(in_offsets, in_sources, new), minlength=rows)
        eligible[pick] = False
        picks.append(pick)
        gains.append(len(new))
    return np.array(picks, dtype=np.int64), np.array(gains, dtype=np.float64), covered


def nearest_other_label(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The distance from each row to the nearest row of another label (inf where there is
    none): a row's δ-ball is pure iff δ ≤ this distance. One faiss index per label."""
    nearest = np.full(len(features), np.inf)
    for label in np.unique(labels):
        inside = labels == label
        if inside.all():
            continue
        index = faiss.IndexFlatL2(features.shape[1])
        index.add(np.ascontiguousarray(features[~inside]))
        found, _ = index.search(np.ascontiguousarray(features[inside]), 1)
        nearest[inside] = np.sqrt(np.maximum(found[:, 0].astype(np.float64), 0.0))
    return nearest


def delta_grid(step: float, maximum: float) -> np.ndarray:
    """The candidate radii step, 2·step, …, up to `maximum`."""
    return step * np.arange(1, int(np.floor(maximum / step + 1e-9)) + 1)


def purity_delta(
    features: np.ndarray, labels: np.ndarray, alpha: float, grid: np.ndarray
) -> tuple[float, float]:
    """ProbCover's purity heuristic: the largest δ of `grid` whose purity π(δ), the share of
    rows whose δ-ball holds only rows of their own (pseudo-)label, is ≥ α (π falls as δ
    grows); the smallest δ of the grid when none reaches α. Returns δ and π(δ)."""
    nearest = np.sort(nearest_other_label(features, labels))
    purity = (len(nearest) - np.searchsorted(nearest, grid, side="left")) / len(nearest)
    passing = np.flatnonzero(purity >= alpha)
    chosen = passing[-1] if len(passing) else 0
    return float(grid[chosen]), float(purity[chosen])


def penultimate_features(
    module: pl.LightningModule, request: SelectionRequest, normalize: bool
) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """The global indices, penultimate features (`backbone(x).features`, computed batch by batch
    on the module's device, then moved to the CPU as float32 NumPy for faiss; unit rows where
    `normalize`) and `labeled` mask of the labeled samples followed by the candidates."""

    def features(x: torch.Tensor) -> torch.Tensor:
        return module.backbone(x).features.float().cpu()

    labeled_indices, labeled = collect(request.labeled, features, module.device)
    candidate_indices, candidates = collect(request.candidates, features, module.device)
    rows = np.ascontiguousarray(torch.cat([labeled, candidates]).numpy(), np.float32)
    mask = np.arange(len(rows)) < len(labeled)
    return (
        torch.cat([labeled_indices, candidate_indices]),
        unit_rows(rows) if normalize else rows,
        mask,
    )
