"""Selection sharded across DDP ranks (al.methods.shards, al.methods.rank_split): two gloo
processes pick exactly what one process picks, for every method, and each candidate is scored
once across the ranks."""

from __future__ import annotations

import pytest
import torch

from al.bench.sharded import Ranks, compare_picks
from al.methods.selector import collect
from al.methods.shards import Shards, current_shards, scoring_shards

from conftest import FASTER, options

# Selectors that fit networks of their own with the stage's Trainer (`fitting_like`): under
# DDP each rank computes its share of every batch (al.methods.rank_split), so the fit is one
# process's to rounding, which training compounds: their scores agree to 1e-4 after the
# epoch these tests train (tests/test_rank_split.py checks the gradients to 1e-6).
OWN_NETWORK_FITS = {"vaal", "ta_vaal", "sraal"}
METHODS = sorted(options("method"))
# 300 candidates in 5 batches of 64: 2 on rank 0, 3 on rank 1.
SMALL = ["budget.initial=20", "budget.query=10", "budget.subset=300", "loader.eval_batch_size=64"]


@pytest.fixture(scope="module")
def compared() -> dict[str, dict]:
    return compare_picks({m: FASTER.get(m, []) for m in METHODS}, SMALL, world=2)


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_pick_what_one_process_picks(compared, method):
    assert compared[method]["equal"]
    tolerance = 1e-4 if method in OWN_NETWORK_FITS else 1e-6
    assert compared[method]["max_score_difference"] <= tolerance


@pytest.mark.parametrize("method", METHODS)
def test_each_candidate_is_scored_once_across_the_ranks(compared, method):
    rank_rows, single_rows = compared[method]["rank_rows"], compared[method]["single_rows"]
    assert sum(rank_rows) == single_rows
    if single_rows:
        assert 0 < rank_rows[1] < single_rows


def test_batches_are_cut_where_one_process_cuts_them():
    """5 batches of 64 over 300 samples: rank 0 gets batches 0-1 (samples 0-127), rank 1
    batches 2-4 (128-299); 3 ranks take 1, 2 and 2 batches."""
    dataset = [(torch.tensor([i]), i) for i in range(300)]
    loader = torch.utils.data.DataLoader(dataset, batch_size=64)
    first = [len(b[1]) for b in Shards(0, 2).loader(loader)]
    second = torch.cat([b[1] for b in Shards(1, 2).loader(loader)])
    assert first == [64, 64] and second.tolist() == list(range(128, 300))
    assert [len(Shards(r, 3).batch_range(5)) for r in range(3)] == [1, 2, 2]


def test_one_process_is_not_sharded():
    with scoring_shards(Ranks(0, 1)) as shards:
        assert shards is None and current_shards() is None
        indices, rows = collect([(torch.ones(2, 1), torch.tensor([4, 9]))], lambda x: x, "cpu")
    assert indices.tolist() == [4, 9] and rows.shape == (2, 1)
