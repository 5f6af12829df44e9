"""TypiClust and ProbCover: the faiss paths against brute-force references in plain NumPy (dense
distances, exhaustive greedy) on constructed clusters, the purity heuristic on data whose δ is
known, and both methods end to end on digits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al.loop import run
from al.methods.cold_start import (
    delta_ball_graph,
    delta_grid,
    probcover_picks,
    purity_delta,
    typiclust_picks,
    typiclust_rule,
)
from al.methods.probcover import ProbCoverSelector
from al.methods.selector import TieBreak

from conftest import TINY, compose_config

SIZES = (40, 31, 25, 18, 12, 9, 4)


def blobs(sizes=SIZES, dim=8, spread=1.0, gap=60.0, seed=0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters of the given sizes, centres `gap` apart on the axes; their ids."""
    rng = np.random.default_rng(seed)
    centres = (
        gap * np.eye(len(sizes), dim)
        if len(sizes) <= dim
        else rng.normal(size=(len(sizes), dim)) * gap
    )
    rows = [
        centre + spread * rng.normal(size=(size, dim))
        for centre, size in zip(centres, sizes, strict=True)
    ]
    ids = np.repeat(np.arange(len(sizes)), sizes)
    return np.concatenate(rows).astype(np.float32), ids


def dense_distances(features: np.ndarray) -> np.ndarray:
    """Euclidean distances of every pair, float64, from explicit differences."""
    x = features.astype(np.float64)
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def brute_typiclust(features, clusters, labeled, query, min_size, neighbours, distance):
    """The rule spelled out: clusters by (fewest labeled, largest), cycled; in each, the row of
    least mean distance to its K = min(neighbours, n // 2) nearest other available rows."""
    pairwise = dense_distances(features)
    if distance == "squared":
        pairwise = pairwise**2
    ids = [c for c in np.unique(clusters) if (clusters == c).sum() >= min_size]
    ids.sort(key=lambda c: ((clusters[labeled] == c).sum(), -(clusters == c).sum()))
    available = ~labeled.copy()
    picks = []
    for step in range(query):
        members = np.flatnonzero((clusters == ids[step % len(ids)]) & available)
        k = min(neighbours, len(members) // 2)
        within = pairwise[np.ix_(members, members)]
        means = [np.sort(np.delete(row, i))[:k].mean() for i, row in enumerate(within)]
        pick = members[int(np.argmin(means))]
        picks.append(pick)
        available[pick] = False
    return picks


def labeled_mask(n: int, rows) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[list(rows)] = True
    return mask


@pytest.mark.parametrize("distance", ["squared", "euclidean"])
def test_typiclust_rule_equals_brute_force_given_the_clusters(distance):
    """Two labeled rows in the 40-row cluster, one in the 25-row one; the 4-row cluster is too
    small; a query of 9 visits the 4 clusters without labels (31, 18, 12, 9 rows), then the
    25-row one, the 40-row one, and cycles back (each one's most typical among the rest)."""
    features, clusters = blobs()
    labeled = labeled_mask(len(features), [0, 1, 75])
    picks, scores = typiclust_rule(features, clusters, labeled, 9, TieBreak(0), 6, 20, distance)
    expected = brute_typiclust(features, clusters, labeled, 9, 6, 20, distance)
    assert picks.tolist() == expected
    assert clusters[picks].tolist() == [1, 3, 4, 5, 2, 0, 1, 3, 4]
    assert np.all(scores > 0) and not labeled[picks].any()


def test_typiclust_rule_typicality_is_the_inverse_mean_knn_distance():
    """On a line, clusters {0, 1, 2, 4, 10} and {20, 21, 23, 27, 40, 41}, the larger first;
    the most typical by mean squared distance to K = min(20, n // 2) neighbours: 23 (K = 3:
    4, 9, 16, mean 29/3; 21's 1, 4, 36 mean 41/3) and 1 (K = 2: 1, 1; 2's 1, 4)."""
    line = np.array([0, 1, 2, 4, 10, 20, 21, 23, 27, 40, 41], dtype=np.float32)[:, None]
    clusters = np.array([0] * 5 + [1] * 6)
    labeled = np.zeros(len(line), dtype=bool)
    picks, scores = typiclust_rule(line, clusters, labeled, 2, TieBreak(0), 1, 20, "squared")
    assert picks.tolist() == [7, 1]
    assert scores == pytest.approx([1 / (29 / 3 + 1e-5), 1 / (1 + 1e-5)], rel=1e-6)


def test_typiclust_draws_at_random_once_no_cluster_has_rows_left():
    """Two clusters of 6 and one of 2 (dropped): 12 picks empty both, the last 2 at random."""
    features, clusters = blobs(sizes=(6, 6, 2), dim=4)
    ties = TieBreak(3)
    picks, scores = typiclust_rule(
        features, clusters, np.zeros(14, dtype=bool), 14, ties, 6, 20, "squared"
    )
    assert sorted(picks.tolist()) == list(range(14))
    assert sorted(picks[12:].tolist()) == [12, 13] and scores[12:].tolist() == [0.0, 0.0]


def test_typiclust_with_kmeans_on_unambiguous_clusters_equals_brute_force():
    """|L| + query = 7 clusters, so far apart that k-means finds the 7 blobs: the picks are
    the brute-force rule's on the true clusters, one from each blob without a label."""
    features, clusters = blobs()
    labeled = labeled_mask(len(features), [3, 100])  # in the 40- and 18-row blobs
    picks, _ = typiclust_picks(features, labeled, 5, TieBreak(1), seed=5, min_cluster_size=1)
    expected = brute_typiclust(features, clusters, labeled, 5, 1, 20, "squared")
    assert picks.tolist() == expected
    assert clusters[picks].tolist() == [1, 2, 4, 5, 6]


def brute_probcover(features, delta, labeled, query, ties):
    """The exhaustive greedy on the dense ball matrix, ranked by the same tie-break."""
    ball = dense_distances(features) < delta
    covered = ball[labeled].any(axis=0)
    eligible = ~labeled.copy()
    picks, gains = [], []
    for _ in range(query):
        degree = ball[:, ~covered].sum(axis=1)
        pick = ties.argmax(torch.from_numpy(np.where(eligible, degree, -1)))
        gains.append(int(degree[pick]))
        covered |= ball[pick]
        eligible[pick] = False
        picks.append(pick)
    return picks, gains


def test_the_delta_ball_graph_holds_exactly_the_pairs_closer_than_delta():
    features, _ = blobs(spread=3.0, gap=12.0)
    offsets, targets = delta_ball_graph(features, 6.0, chunk=17)
    sources = np.repeat(np.arange(len(features)), np.diff(offsets))
    found = set(zip(sources.tolist(), targets.tolist(), strict=True))
    expected = set(zip(*np.nonzero(dense_distances(features) < 6.0), strict=True))
    assert found == {(int(a), int(b)) for a, b in expected}


@pytest.mark.parametrize("delta", [6.0, 9.0, 13.0])
def test_probcover_picks_and_coverage_counts_equal_the_exhaustive_greedy(delta):
    features, _ = blobs(spread=3.0, gap=12.0)
    labeled = labeled_mask(len(features), [0, 50, 120])
    graph = delta_ball_graph(features, delta, chunk=32)
    picks, gains, covered = probcover_picks(graph, labeled, 12, TieBreak(7))
    expected_picks, expected_gains = brute_probcover(features, delta, labeled, 12, TieBreak(7))
    assert picks.tolist() == expected_picks
    assert gains.tolist() == expected_gains
    ball = dense_distances(features) < delta
    assert covered.tolist() == ball[labeled | np.isin(np.arange(len(ball)), picks)].any(0).tolist()


def test_probcover_covers_the_largest_uncovered_blob_first_then_draws_at_random():
    """Tight blobs of 40, 31, 25 (a label in the 31): δ covers a blob per pick; the 40 then
    the 25 are covered, and the other 3 picks cover nothing and are drawn at random."""
    features, clusters = blobs(sizes=(40, 31, 25), spread=0.1, gap=10.0)
    labeled = labeled_mask(len(features), [45])
    ties = TieBreak(0)
    picks, gains, covered = probcover_picks(delta_ball_graph(features, 2.0), labeled, 5, ties)
    assert clusters[picks[:2]].tolist() == [0, 2] and gains.tolist() == [40, 25, 0, 0, 0]
    assert covered.all() and len(set(picks.tolist())) == 5 and not labeled[picks].any()
    assert ties.decided >= 3 + 2  # the random picks, and which row of each blob


def test_purity_delta_on_a_line_with_known_nearest_other_label_distances():
    """Labels A = {0, 0.1, …, 0.9}, B = {1.52, 10, 10.1, …, 10.8}: the distances to the
    nearest other label start 0.62 (0.9's and 1.52's), 0.72, 0.82, 0.92, …; of 20 rows, α =
    0.95 allows one impure ball, so none here (δ ≤ 0.62: grid 0.60), α = 0.85 three
    (δ ≤ 0.82: 0.80, purity 17/20)."""
    a = np.arange(10) * 0.1
    b = np.concatenate([[1.52], 10 + np.arange(9) * 0.1])
    features = np.stack([np.concatenate([a, b]), np.zeros(20)], axis=1).astype(np.float32)
    labels = np.repeat([0, 1], 10)
    grid = delta_grid(0.05, 2.0)
    assert purity_delta(features, labels, 0.95, grid) == pytest.approx((0.60, 1.0))
    assert purity_delta(features, labels, 0.85, grid) == pytest.approx((0.80, 0.85))
    pairwise = dense_distances(features)
    other = np.where(labels[:, None] != labels[None, :], pairwise, np.inf).min(axis=1)
    pure = [(other >= delta).mean() for delta in grid]  # brute force: every ball checked
    for alpha in (0.5, 0.9, 0.97):
        best = max([d for d, p in zip(grid, pure, strict=True) if p >= alpha], default=grid[0])
        assert purity_delta(features, labels, alpha, grid)[0] == pytest.approx(best)


def test_the_purity_heuristic_with_kmeans_pseudo_labels_finds_the_known_delta():
    """Two groups on a line, 1.02 apart at their closest, 0.19 wide: k-means (k = 2 classes)
    finds them, every ball is pure up to δ = 1.0, and at 1.05 only 34 of 40 are."""
    left = -np.arange(20) * 0.01
    right = 1.02 + np.arange(20) * 0.01
    features = np.stack([np.concatenate([left, right]), np.zeros(40)], axis=1)
    selector = ProbCoverSelector(normalize=False)
    assert selector.purest_delta(features.astype(np.float32), 2, seed=0) == pytest.approx(1.0)
    assert selector.metrics["probcover/purity"] == 1.0


def test_a_delta_grid_without_a_value_is_refused():
    with pytest.raises(ValueError, match=r"method.selector.delta_step=3.0 is larger"):
        ProbCoverSelector(delta_step=3.0, delta_max=2.0)


@pytest.mark.parametrize("method", ["typiclust", "probcover"])
def test_one_selection_stage_on_digits(tmp_path, method):
    cfg = compose_config(*TINY, f"method={method}", "budget.stages=2")
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert all(sum(r["pick_class_counts"]) == 10 for r in records)
    if method == "probcover":
        assert all(0 < r["probcover/delta"] <= 2.0 for r in records)
        assert all(0 < r["probcover/coverage"] <= 1.0 for r in records)
