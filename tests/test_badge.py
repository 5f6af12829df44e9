"""BADGE: factorised distances equal those of the materialised gradient embeddings, which are
the last layer's gradients; k-means++ seeding with known draws; memory linear in the pool."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from al.methods.badge import (
    BadgeSelector,
    gradient_factors,
    kmeans_pp_seeds,
    squared_distances,
    squared_norms,
)
from al.methods.classifier import ClassifierModule
from al.methods.selector import SelectionRequest, TieBreak
from al.models.mlp import MLP

from conftest import ROOT


def random_factors(seed: int, rows: int = 40, classes: int = 5, width: int = 7):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(rows, classes, generator=generator), torch.randn(
        rows, width, generator=generator
    )


def materialised(pminus: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The B × (C·d) embeddings the selector never builds, in float64."""
    return (pminus.double()[:, :, None] * hidden.double()[:, None, :]).flatten(1)


def test_factorised_distances_equal_those_of_materialised_embeddings():
    for seed in range(4):
        pminus, hidden = random_factors(seed)
        embeddings = materialised(pminus, hidden)
        norms = squared_norms(pminus, hidden)
        assert torch.allclose(norms.double(), embeddings.square().sum(1), rtol=1e-5)
        for center in (0, 13, 39):
            expected = (embeddings - embeddings[center]).square().sum(1)
            got = squared_distances(pminus, hidden, norms, center).double()
            assert torch.allclose(got, expected, rtol=1e-4, atol=1e-3)
            assert got[center] >= 0  # rounding clamped, never negative


def test_factors_are_the_last_layer_gradient_at_the_predicted_label():
    torch.manual_seed(0)
    module = ClassifierModule(MLP([3], 4, dropout=0.5), torch.optim.Adam, num_classes=4).eval()
    x = torch.randn(5, 3)
    with torch.no_grad():
        factors = gradient_factors(module, x)
    embeddings = materialised(factors[:, :4], factors[:, 4:])
    weight = module.backbone.classifier.weight
    for sample in range(len(x)):
        logits = module(x[sample : sample + 1])
        loss = F.cross_entropy(logits, logits.argmax(1))
        (gradient,) = torch.autograd.grad(loss, weight)
        assert torch.allclose(embeddings[sample].float(), gradient.flatten(), atol=1e-6)


def test_first_pick_is_the_largest_norm_embedding_and_picks_are_distinct():
    for seed in range(4):
        pminus, hidden = random_factors(seed)
        generator = torch.Generator().manual_seed(seed)
        picks, scores = kmeans_pp_seeds(pminus, hidden, 15, generator, TieBreak(0))
        norms = materialised(pminus, hidden).square().sum(1)
        assert int(picks[0]) == int(norms.argmax())
        assert torch.isclose(scores[0].double(), norms.max(), rtol=1e-5)
        assert len(set(picks.tolist())) == 15
        assert not torch.isnan(scores).any() and (scores >= 0).all()


def test_scores_are_the_squared_distance_to_the_nearest_earlier_pick():
    pminus, hidden = random_factors(5)
    picks, scores = kmeans_pp_seeds(
        pminus, hidden, 6, torch.Generator().manual_seed(0), TieBreak(0)
    )
    embeddings = materialised(pminus, hidden)
    for step in range(1, 6):
        earlier = embeddings[picks[:step]]
        nearest = (embeddings[picks[step]] - earlier).square().sum(1).min()
        assert torch.isclose(scores[step].double(), nearest, rtol=1e-4, atol=1e-4)


def test_later_picks_are_drawn_in_proportion_to_d_squared():
    # Embeddings on a line: 3 (the largest, picked first), a duplicate of it (D² = 0: never
    # drawn), 2 (D² = 1) and 3 − √3 (D² = 3): the second pick is 2 a quarter of the time.
    hidden = torch.tensor([[3.0], [3.0], [2.0], [3.0 - 3.0**0.5]])
    pminus = torch.ones(4, 1)
    second = [
        int(
            kmeans_pp_seeds(pminus, hidden, 2, torch.Generator().manual_seed(seed), TieBreak(0))[0][
                1
            ]
        )
        for seed in range(400)
    ]
    assert set(second) == {2, 3}
    assert abs(second.count(2) / 400 - 0.25) < 0.06


def test_when_every_d_squared_is_zero_the_tie_break_orders_the_rest():
    pminus, hidden = torch.ones(5, 2), torch.ones(5, 3)
    ties = TieBreak(0)
    picks, scores = kmeans_pp_seeds(pminus, hidden, 5, torch.Generator().manual_seed(0), ties)
    assert sorted(picks.tolist()) == [0, 1, 2, 3, 4]
    assert scores[0] == 6.0 and (scores[1:] == 0).all()
    assert ties.decided == 4  # the first by norm among 5 equal ones, then 3 of 4, 3, 2
    orders = {
        tuple(kmeans_pp_seeds(pminus, hidden, 5, torch.Generator(), TieBreak(seed))[0].tolist())
        for seed in range(10)
    }
    assert len(orders) > 5


@pytest.mark.slow
def test_memory_grows_with_the_factors_not_the_embeddings():
    # 50k candidates × 100 classes × 256 features: the embeddings alone would take 5 GB.
    script = textwrap.dedent(
        """
        import resource, torch
        from al.methods.badge import kmeans_pp_seeds
        from al.methods.selector import TieBreak
        generator = torch.Generator().manual_seed(0)
        pminus = torch.randn(50_000, 100, generator=generator)
        hidden = torch.randn(50_000, 256, generator=generator)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        picks, scores = kmeans_pp_seeds(pminus, hidden, 5, generator, TieBreak(0))
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        assert len(set(picks.tolist())) == 5
        print(grown // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert int(done.stdout) < 100  # MB of peak growth; the factors alone are 71 MB


def request_for(x: torch.Tensor, query: int, seed: int) -> SelectionRequest:
    indices = torch.arange(500, 500 + len(x))
    loader = [(x[:7], indices[:7]), (x[7:], indices[7:])]
    return SelectionRequest(loader, loader, indices, query, seed=seed)


def test_selector_seeds_the_candidates_factors_with_global_indices_from_the_seed():
    torch.manual_seed(0)
    module = ClassifierModule(MLP([3], 4, dropout=0.5), torch.optim.Adam, num_classes=4).eval()
    x = torch.randn(20, 3)
    with torch.no_grad():
        picks, scores = BadgeSelector().select(module, request_for(x, 6, seed=3))
        factors = gradient_factors(module, x)
    expected, _ = kmeans_pp_seeds(
        factors[:, :4], factors[:, 4:], 6, torch.Generator().manual_seed(3), TieBreak(3)
    )
    assert picks.tolist() == (500 + expected).tolist()
    assert scores[0] == squared_norms(factors[:, :4], factors[:, 4:]).max()
    with torch.no_grad():
        again, _ = BadgeSelector().select(module, request_for(x, 6, seed=3))
    assert torch.equal(picks, again)
