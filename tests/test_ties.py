"""Exact ties between scores are broken by a key drawn from the selection seed, never by pool
order, and each selection counts the picks the key decided."""

from __future__ import annotations

import torch

from al.methods.classifier import ClassifierModule
from al.methods.selector import SelectionRequest, Selector, TieBreak
from al.models.mlp import MLP

CLASSES, PER_CLASS, QUERY = 10, 1_000, 1_000


class CoarseScore(Selector):
    """A score with 7 values, spread alike over every class (the first input): the number of
    a sample within its class modulo 7, as a committee's vote entropy takes few values."""

    def score(self, module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1] % 7


def class_sorted_pool() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (class, number within the class) of a pool sorted by class, as image folders
    are, and the classes."""
    classes = torch.arange(CLASSES).repeat_interleave(PER_CLASS)
    within = torch.arange(PER_CLASS).repeat(CLASSES)
    return torch.stack([classes, within], 1).float(), classes


def coarse_picks(seed: int) -> tuple[torch.Tensor, int]:
    x, _ = class_sorted_pool()
    indices = torch.arange(len(x))
    loader = [
        (x[start : start + 512], indices[start : start + 512]) for start in range(0, len(x), 512)
    ]
    selector = CoarseScore()
    request = SelectionRequest(loader, loader, indices, QUERY, seed=seed)
    selector.request(request)
    module = ClassifierModule(MLP([2], CLASSES), torch.optim.Adam, num_classes=CLASSES)
    picks, _ = selector.select(module, request)
    return picks, selector.ties.decided


def test_a_coarse_score_on_a_class_sorted_pool_picks_every_class_alike():
    """1,420 candidates share the top score 6 (142 per class): 1,000 of them are picked, each
    class's share hypergeometric with mean 100 and sd ≈ 5.2; pool order would give classes
    0–6 142 picks each, class 7 six and the rest none."""
    _, classes = class_sorted_pool()
    for seed in (0, 1):
        picks, decided = coarse_picks(seed)
        per_class = torch.bincount(classes[picks], minlength=CLASSES)
        assert ((per_class >= 100 - 26) & (per_class <= 100 + 26)).all(), per_class  # 5 sd
        assert decided == QUERY  # every pick came out of the one tied group
        again, _ = coarse_picks(seed)
        assert torch.equal(picks, again)
    assert not torch.equal(coarse_picks(0)[0], coarse_picks(1)[0])


def test_top_k_counts_exactly_the_picks_a_tie_decided():
    scores = torch.tensor([0.75, 0.5, 0.5, 0.5, 0.25, 0.5])
    ties = TieBreak(3)
    indices, picked = ties.top_k(torch.arange(10, 16), scores, 3)
    assert indices[0] == 10 and set(indices[1:].tolist()) <= {11, 12, 13, 15}
    assert picked.tolist() == [0.75, 0.5, 0.5]
    assert ties.decided == 2  # two of the four 0.5s were chosen by the key
    ties.top_k(torch.arange(6), scores, 5)  # all four 0.5s fit: no choice made
    assert ties.decided == 2


def test_top_k_leaves_distinct_scores_in_score_order():
    ties = TieBreak(0)
    indices, scores = ties.top_k(torch.tensor([7, 3, 9]), torch.tensor([0.25, 0.75, 0.5]), 2)
    assert indices.tolist() == [3, 9] and scores.tolist() == [0.75, 0.5]
    assert ties.decided == 0


def test_argmax_draws_among_equal_maxima_and_counts_only_those_picks():
    values = torch.tensor([1.0, 3.0, 0.0, 3.0, 3.0])
    drawn = set()
    for seed in range(30):
        ties = TieBreak(seed)
        drawn.add(ties.argmax(values))
        assert ties.decided == 1
        assert ties.argmax(torch.tensor([1.0, 2.0, 0.5])) == 1 and ties.decided == 1
    assert drawn == {1, 3, 4}


def test_the_same_seed_gives_the_same_order():
    scores = torch.zeros(50)
    assert torch.equal(TieBreak(5).order(scores, 20), TieBreak(5).order(scores, 20))
    assert not torch.equal(TieBreak(5).order(scores, 20), TieBreak(6).order(scores, 20))
