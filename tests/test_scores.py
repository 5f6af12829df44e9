"""Known-answer tests: probability rows whose uncertainty order is known by construction."""

import math

import torch

from al.methods.entropy import EntropySelector, entropy
from al.methods.least_confidence import LeastConfidenceSelector, least_confidence
from al.methods.margin import MarginSelector, margin
from al.methods.selector import TieBreak

# Rows from certain to uniform: every uncertainty score must rank them 3 > 2 > 1 > 0.
PROBS = torch.tensor(
    [
        [0.9, 0.05, 0.05, 0.0],
        [0.6, 0.2, 0.1, 0.1],
        [0.4, 0.3, 0.2, 0.1],
        [0.25, 0.25, 0.25, 0.25],
    ]
)


def h(*ps: float) -> float:
    return -sum(p * math.log(p) for p in ps if p > 0)


def test_entropy_values():
    expected = [h(0.9, 0.05, 0.05), h(0.6, 0.2, 0.1, 0.1), h(0.4, 0.3, 0.2, 0.1), math.log(4)]
    assert torch.allclose(entropy(PROBS), torch.tensor(expected), atol=1e-6)
    assert entropy(torch.tensor([[1.0, 0.0]])).item() == 0.0


def test_least_confidence_values():
    assert torch.allclose(least_confidence(PROBS), torch.tensor([0.1, 0.4, 0.6, 0.75]))


def test_margin_values():
    assert torch.allclose(margin(PROBS), torch.tensor([-0.85, -0.4, -0.1, 0.0]))


def test_margin_and_entropy_disagree_where_they_should():
    # Margin looks only at the top two classes; entropy at all of them.
    probs = torch.tensor([[0.45, 0.45, 0.10, 0.00], [0.40, 0.20, 0.20, 0.20]])
    assert margin(probs).argmax() == 0
    assert entropy(probs).argmax() == 1


def test_selectors_rank_the_uncertain_rows_first():
    indices = torch.tensor([10, 11, 12, 13])
    for selector in (EntropySelector(), LeastConfidenceSelector(), MarginSelector()):
        picked, _ = TieBreak(0).top_k(indices, selector.score_probabilities(PROBS), 3)
        assert picked.tolist() == [13, 12, 11]


def test_top_k_returns_scores_with_global_indices():
    indices, scores = TieBreak(0).top_k(torch.tensor([7, 3, 9]), torch.tensor([0.25, 0.75, 0.5]), 2)
    assert indices.tolist() == [3, 9]
    assert scores.tolist() == [0.75, 0.5]


def test_maxp_ranks_by_the_max_probability_from_either_end():
    from al.errors import ConfigError
    from al.methods.least_confidence import MaxProbabilitySelector

    indices = torch.arange(4)
    highest = MaxProbabilitySelector("highest").score_probabilities(PROBS)
    lowest = MaxProbabilitySelector("lowest").score_probabilities(PROBS)
    assert TieBreak(0).top_k(indices, highest, 2)[0].tolist() == [0, 1]  # the most confident first
    assert TieBreak(0).top_k(indices, lowest, 2)[0].tolist() == [3, 2]  # = least confidence
    assert torch.equal(lowest, least_confidence(PROBS))
    try:
        MaxProbabilitySelector("middle")
    except ConfigError as error:
        assert "method.selector.direction='middle'" in str(error)
    else:
        raise AssertionError("an unknown direction must be refused")
