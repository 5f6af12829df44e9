"""The Selector contract, checked for every conf/method/*.yaml inside a real Trainer."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch

from al.budget import Budget
from al.data import ALData, ArrayDataset
from al.loop import build_data, run_stage
from al.methods.selector import SelectionRequest, Selector
from al.pool import UNLABELED, Pool
from al.progress import stage_progress
from al.sinks import EpochMetricsCallback, Sink

from conftest import FASTER, options

QUERY = 10
SUBSET = 60


def select_once(cfg, data: ALData) -> torch.Tensor:
    budget = Budget(initial=30, query=QUERY, stages=2, subset=SUBSET)
    pool = Pool.with_initial(len(data.pool_targets), budget.initial, cfg.seed)
    epoch_logger = EpochMetricsCallback(Sink(), stage=0, epochs_before=0)
    outcome = run_stage(cfg, data, pool, budget, 0, None, epoch_logger, stage_progress())
    candidates = pool.candidates(budget.subset, cfg.seed, 0)
    picks = outcome.selection.indices
    assert len(picks) == QUERY
    assert len(torch.unique(picks)) == QUERY
    assert np.all(pool.labelled_at[picks.numpy()] == UNLABELED)
    assert np.isin(picks.numpy(), candidates).all()
    return picks, pool


def poison_unlabeled_labels(data: ALData, pool: Pool) -> ALData:
    """The same data with every unlabeled sample's label replaced by a wrong one."""
    targets = data.pool_targets.copy()
    unlabeled = pool.unlabeled_indices
    targets[unlabeled] = (targets[unlabeled] + 1 + unlabeled % 7) % data.num_classes
    poisoned = ArrayDataset(data.pool_train.x, torch.from_numpy(targets))
    return ALData(poisoned, poisoned, data.test, targets, data.num_classes)


@pytest.mark.parametrize("method", options("method"))
def test_selection_contract_and_blindness_to_unlabeled_labels(tiny_config, method):
    cfg = tiny_config(f"method={method}", "trainer.max_epochs=2", *FASTER.get(method, []))
    data = build_data(cfg.dataset)
    picks, pool = select_once(cfg, data)
    poisoned_picks, _ = select_once(cfg, poison_unlabeled_labels(data, pool))
    assert torch.equal(picks, poisoned_picks)


class SpySelector(Selector):
    """Records the first batch of each loader it is given, then picks the first candidates."""

    seen: ClassVar[dict] = {}

    def select(self, module, request: SelectionRequest):
        SpySelector.seen = {
            "candidates": next(iter(request.candidates)),
            "labeled": next(iter(request.labeled)),
        }
        return request.candidate_indices[: request.query], torch.zeros(request.query)


class DuplicatingSelector(Selector):
    def select(self, module, request: SelectionRequest):
        picks = request.candidate_indices[:1].repeat(request.query)
        return picks, torch.zeros(request.query)


def test_candidate_and_labeled_loaders_yield_global_indices_not_labels(tiny_config):
    cfg = tiny_config()
    cfg.method.selector = {"_target_": f"{__name__}.SpySelector"}
    data = build_data(cfg.dataset)
    _, pool = select_once(cfg, data)
    x, indices = SpySelector.seen["candidates"]
    assert x.shape[1:] == (1, 8, 8)
    assert torch.equal(indices, torch.from_numpy(pool.candidates(SUBSET, cfg.seed, 0))[: len(x)])
    x, indices = SpySelector.seen["labeled"]
    assert torch.equal(indices, torch.from_numpy(np.flatnonzero(pool.labelled_at == 0))[: len(x)])


def test_selector_breaking_the_contract_is_stopped(tiny_config):
    cfg = tiny_config()
    cfg.method.selector = {"_target_": f"{__name__}.DuplicatingSelector"}
    with pytest.raises(RuntimeError, match="DuplicatingSelector broke the selection contract"):
        select_once(cfg, build_data(cfg.dataset))
