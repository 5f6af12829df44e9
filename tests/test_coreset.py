"""Greedy k-center: equal to an exact brute-force reference, small memory on a large pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from al.methods import coreset
from al.methods.coreset import CoresetSelector, k_center_greedy
from al.methods.selector import SelectionRequest, TieBreak

from conftest import ROOT


def brute_force_k_center(candidates, centers, k):
    """The textbook greedy on the full float64 distance matrix, from explicit differences."""
    points = torch.cat([centers, candidates]).double()
    distances = (candidates.double()[:, None] - points[None]).square().sum(-1)
    chosen = list(range(len(centers)))
    picks = []
    for _ in range(k):
        pick = int(torch.argmax(distances[:, chosen].min(dim=1).values))
        picks.append(pick)
        chosen.append(len(centers) + pick)
    return picks


def test_known_answer_on_a_line():
    centers = torch.tensor([[0.0]])
    candidates = torch.tensor([[1.0], [2.0], [10.0], [11.0]])
    ties = TieBreak(0)
    picks, radii = k_center_greedy(candidates, centers, 3, ties)
    # 11 (farthest from 0), then 2, then 1 or 10 (both 1 away): the tie-break's one pick
    assert picks.tolist()[:2] == [3, 1] and picks.tolist()[2] in (0, 2)
    assert torch.allclose(radii, torch.tensor([11.0, 2.0, 1.0]))
    assert ties.decided == 1
    thirds = {
        int(k_center_greedy(candidates, centers, 3, TieBreak(seed))[0][2]) for seed in range(20)
    }
    assert thirds == {0, 2}


def test_equals_brute_force_on_random_points_even_far_from_the_origin():
    for seed in range(6):
        generator = torch.Generator().manual_seed(seed)
        offset = 10.0 * (seed % 2)  # a common offset defeats ‖a‖² + ‖b‖² − 2ab in float32
        candidates = torch.randn(300, 6, generator=generator) + offset
        centers = torch.randn(20, 6, generator=generator) + offset
        picks, _ = k_center_greedy(candidates, centers, 25, TieBreak(0), 7)
        assert picks.tolist() == brute_force_k_center(candidates, centers, 25)


def test_picks_are_distinct_even_among_duplicates():
    candidates = torch.zeros(10, 3)
    picks, _ = k_center_greedy(candidates, torch.ones(1, 3), 10, TieBreak(0))
    assert sorted(picks.tolist()) == list(range(10))


@pytest.mark.slow
def test_large_pool_needs_megabytes_not_the_distance_matrix():
    # 200k × 200k float32 distances would take 160 GB.
    script = textwrap.dedent(
        """
        import resource, torch
        from al.methods.coreset import k_center_greedy
        from al.methods.selector import TieBreak
        generator = torch.Generator().manual_seed(0)
        candidates = torch.randn(200_000, 8, generator=generator)
        centers = torch.randn(1_000, 8, generator=generator)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        picks, radii = k_center_greedy(candidates, centers, 5, TieBreak(0))
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert len(set(picks.tolist())) == 5 and bool((radii[:-1] >= radii[1:]).all())
        print(grown // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert int(done.stdout) < 200  # MB of peak growth; features alone are 6 MB


class KnownFeatures(torch.nn.Module):
    """A stand-in task module whose penultimate features are the inputs themselves."""

    device = torch.device("cpu")

    def __init__(self):
        super().__init__()
        self.backbone = lambda x: type("Out", (), {"features": x})()


def test_selector_uses_features_of_candidates_and_labeled_centers_with_global_indices():
    generator = torch.Generator().manual_seed(0)
    candidates, labeled = torch.randn(40, 4, generator=generator), torch.randn(5, 4)
    candidate_ids, labeled_ids = torch.arange(1000, 1040), torch.arange(7, 12)
    request = SelectionRequest(
        candidates=[(candidates[:25], candidate_ids[:25]), (candidates[25:], candidate_ids[25:])],
        labeled=[(labeled, labeled_ids)],
        candidate_indices=candidate_ids,
        query=6,
        seed=0,
    )
    picks, _ = CoresetSelector(chunk=8).select(KnownFeatures(), request)
    expected = [1000 + i for i in brute_force_k_center(candidates, labeled, 6)]
    assert picks.tolist() == expected


def test_matrix_product_first_pass_matches_exact_differences_far_from_the_origin():
    from al.methods.coreset import difference_min_distances, min_distances

    generator = torch.Generator().manual_seed(0)
    candidates = torch.randn(500, 64, generator=generator) + 100.0
    centers = torch.randn(70, 64, generator=generator) + 100.0
    exact = (candidates.double()[:, None] - centers.double()[None]).square().sum(-1).min(1).values
    fast = min_distances(candidates, centers, chunk=32)
    assert torch.allclose(fast.double(), exact, rtol=1e-6, atol=0)
    assert torch.allclose(
        difference_min_distances(candidates, centers, 32).double(), exact, rtol=1e-5
    )
    picks, _ = k_center_greedy(candidates, centers, 30, TieBreak(0), 32)
    assert picks.tolist() == brute_force_k_center(candidates, centers, 30)


def test_candidates_that_duplicate_labeled_samples_tie_at_zero_as_exact_differences_do():
    # ‖a‖² + ‖b‖² − 2ab leaves ~1e-11 of noise where the exact distance is 0; ties then
    # broke by noise. Duplicates of centers must come last, in the tie-break's order.
    generator = torch.Generator().manual_seed(0)
    centers = torch.randn(50, 512, generator=generator) * 3 + 5
    distinct = torch.randn(5, 512, generator=generator) * 3 + 5
    candidates = torch.cat([centers[[3, 1, 4, 0, 2]], distinct, centers[[7, 9]]])
    ties = TieBreak(0)
    picks, radii = k_center_greedy(candidates, centers, 12, ties, 16)
    assert sorted(picks[:5].tolist()) == [5, 6, 7, 8, 9]
    assert picks[:5].tolist() == [5 + p for p in brute_force_k_center(distinct, centers, 5)]
    assert sorted(picks[5:].tolist()) == [0, 1, 2, 3, 4, 10, 11]
    assert picks[5:].tolist() != [0, 1, 2, 3, 4, 10, 11]  # not pool order
    assert (radii[5:] == 0).all()
    assert ties.decided == 6  # 7 duplicates at distance 0: the last one was alone


@pytest.mark.parametrize("block_bytes", [4 * 3 * 7, 2**20])
def test_the_blocked_update_gives_the_bits_of_the_plain_one(monkeypatch, block_bytes):
    """Blocks of 7 rows (not dividing 50) or one block: min(nearest, (x − c)².sum(1)) exactly."""
    monkeypatch.setattr(coreset, "CACHE_BLOCK_BYTES", block_bytes)
    generator = torch.Generator().manual_seed(4)
    candidates = torch.randn(50, 3, generator=generator) * 1e3
    nearest = torch.rand(50, generator=generator) * 1e6
    expected = torch.minimum(nearest, (candidates - candidates[9]).square().sum(dim=1))
    buffer = coreset.update_buffer(candidates)
    assert len(buffer) == (7 if block_bytes < 100 else 50)
    coreset.nearest_update(candidates, candidates[9], nearest, buffer)
    assert torch.equal(nearest, expected)
