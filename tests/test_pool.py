import numpy as np
import pytest

from al.pool import UNLABELED, Pool


def test_labeled_and_unlabeled_partition_the_pool():
    pool = Pool.with_initial(100, initial=10, seed=0)
    pool.label(pool.unlabeled_indices[:5], stage=1)
    labeled, unlabeled = pool.labeled_indices, pool.unlabeled_indices
    assert len(labeled) == 15 and len(unlabeled) == 85
    assert np.intersect1d(labeled, unlabeled).size == 0
    assert np.array_equal(np.sort(np.concatenate([labeled, unlabeled])), np.arange(100))
    assert pool.stage == 1
    assert np.bincount(pool.labelled_at[labeled]).tolist() == [10, 5]


def test_initial_pool_depends_on_seed_only():
    first = Pool.with_initial(1000, initial=50, seed=3).labeled_indices
    again = Pool.with_initial(1000, initial=50, seed=3).labeled_indices
    other = Pool.with_initial(1000, initial=50, seed=4).labeled_indices
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize(
    ("indices", "error"),
    [([5, 5], ValueError), ([1000], IndexError), ([-1], IndexError)],
)
def test_label_rejects_duplicates_and_unknown_ids(indices, error):
    pool = Pool(10)
    with pytest.raises(error):
        pool.label(np.array(indices), stage=0)


def test_label_rejects_labeled_ids_and_keeps_state():
    pool = Pool(10)
    pool.label([1, 2], stage=0)
    with pytest.raises(ValueError, match="already labeled: \\[2\\]"):
        pool.label([3, 2], stage=1)
    assert pool.labelled_at[3] == UNLABELED


def test_label_rejects_an_earlier_stage():
    pool = Pool(10)
    pool.label([1], stage=2)
    with pytest.raises(ValueError, match="cannot label at stage 1: the pool is at stage 2"):
        pool.label([3], stage=1)


def test_state_round_trip():
    pool = Pool.with_initial(50, initial=5, seed=1)
    pool.label(pool.unlabeled_indices[:7], stage=1)
    restored = Pool(50)
    restored.load_state_dict(pool.state_dict())
    assert np.array_equal(restored.labelled_at, pool.labelled_at)
    with pytest.raises(ValueError, match="49"):
        Pool(49).load_state_dict(pool.state_dict())


def test_candidates_are_unlabeled_sorted_and_sized():
    pool = Pool.with_initial(500, initial=100, seed=0)
    candidates = pool.candidates(subset=50, seed=0, stage=0)
    assert len(candidates) == 50
    assert np.all(np.diff(candidates) > 0)
    assert np.all(pool.labelled_at[candidates] == UNLABELED)
    assert np.array_equal(pool.candidates(None, 0, 0), pool.unlabeled_indices)
    assert np.array_equal(pool.candidates(10_000, 0, 0), pool.unlabeled_indices)


def test_candidates_depend_on_seed_and_stage_not_on_the_labeled_set():
    one, two = Pool(1000), Pool(1000)
    one.label(np.arange(0, 100), stage=0)
    two.label(np.arange(900, 1000), stage=0)
    a = one.candidates(subset=100, seed=7, stage=2)
    b = two.candidates(subset=100, seed=7, stage=2)
    unlabeled_in_both = np.arange(100, 900)
    # Both pools rank the shared unlabeled samples by the same (seed, stage) keys.
    shared_a = np.intersect1d(a, unlabeled_in_both)
    shared_b = np.intersect1d(b, unlabeled_in_both)
    small, large = sorted([shared_a, shared_b], key=len)
    assert np.isin(small, large).all() and len(small) >= 70
    assert not np.array_equal(a, one.candidates(subset=100, seed=7, stage=3))
    assert not np.array_equal(a, one.candidates(subset=100, seed=8, stage=2))
