"""Greedy k-center: equal to a brute-force reference, O(N) memory on a large pool."""

from __future__ import annotations

import torch

from al.methods.coreset import k_center_greedy


def brute_force_k_center(candidates, centers, k):
    """The textbook greedy with the full distance matrix."""
    distances = torch.cdist(candidates, torch.cat([centers, candidates])).double()
    chosen = list(range(len(centers)))
    picks = []
    for _ in range(k):
        nearest = distances[:, chosen].min(dim=1).values
        pick = int(torch.argmax(nearest))
        picks.append(pick)
        chosen.append(len(centers) + pick)
    return picks


def test_known_answer_on_a_line():
    centers = torch.tensor([[0.0]])
    candidates = torch.tensor([[1.0], [2.0], [10.0], [11.0]])
    picks, radii = k_center_greedy(candidates, centers, k=3)
    assert picks.tolist() == [3, 1, 0]  # 11 (farthest from 0), then 2, then 1 (ties → first)
    assert torch.allclose(radii, torch.tensor([11.0, 2.0, 1.0]))


def test_equals_brute_force_on_random_points():
    for seed in range(5):
        generator = torch.Generator().manual_seed(seed)
        candidates = torch.randn(300, 6, generator=generator)
        centers = torch.randn(20, 6, generator=generator)
        picks, _ = k_center_greedy(candidates, centers, k=25, chunk=7)
        assert picks.tolist() == brute_force_k_center(candidates, centers, 25)


def test_picks_are_distinct_even_among_duplicates():
    candidates = torch.zeros(10, 3)
    picks, _ = k_center_greedy(candidates, torch.ones(1, 3), k=10)
    assert sorted(picks.tolist()) == list(range(10))


def test_large_pool_never_builds_the_full_distance_matrix():
    # 200k × 200k float32 distances would take 160 GB; the greedy needs a few MB.
    generator = torch.Generator().manual_seed(0)
    candidates = torch.randn(200_000, 8, generator=generator)
    centers = torch.randn(1_000, 8, generator=generator)
    picks, radii = k_center_greedy(candidates, centers, k=5, chunk=256)
    assert len(set(picks.tolist())) == 5
    assert torch.all(radii[:-1] >= radii[1:])  # each pick is no farther than the previous
