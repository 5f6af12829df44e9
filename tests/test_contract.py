"""The Selector contract, checked for every conf/method/*.yaml inside a real Trainer, and the
labels of unlabeled samples out of every selector's reach."""

from __future__ import annotations

import dataclasses
import functools
import types
import weakref
from typing import ClassVar

import numpy as np
import pytest
import torch

from al.budget import Budget
from al.build import build_data
from al.data import ALData
from al.loop import run_stage
from al.methods.selector import Selection, SelectionRequest, Selector
from al.pool import UNLABELED, Pool
from al.progress import stage_progress
from al.sinks import EpochMetricsCallback, Sink

from conftest import FASTER, experiment_for, options

QUERY = 10
SUBSET = 60
BUDGET = Budget(initial=30, query=QUERY, stages=2, subset=SUBSET)


def permuted(targets: np.ndarray, unlabeled: np.ndarray, num_classes: int) -> np.ndarray:
    """The unlabeled samples' labels rolled by one among themselves."""
    return np.roll(targets[unlabeled], 1)


def shifted(targets: np.ndarray, unlabeled: np.ndarray, num_classes: int) -> np.ndarray:
    """Every unlabeled sample's label replaced by the next class: all of them wrong."""
    return (targets[unlabeled] + 1) % num_classes


def poisoned(data: ALData, pool: Pool, poison) -> ALData:
    """The same data with the labels of the samples unlabeled now replaced by `poison`'s."""
    targets = data.pool_targets.copy()
    unlabeled = pool.unlabeled_indices
    targets[unlabeled] = poison(targets, unlabeled, data.num_classes)
    return dataclasses.replace(data, pool_targets=targets)


def two_stages(cfg, data: ALData, poisons=()) -> list[Selection]:
    """Stages 0 and 1 as the loop runs them (the oracle labels the picks truthfully in
    between); stage k sees the labels of its unlabeled samples replaced by `poisons[k]`'s."""
    pool = Pool.with_initial(len(data.pool_targets), BUDGET.initial, cfg.seed)
    experiment = experiment_for(cfg, data, BUDGET)
    selections = []
    for stage in range(BUDGET.stages):
        stage_data = poisoned(data, pool, poisons[stage]) if poisons else data
        epoch_logger = EpochMetricsCallback(Sink(), stage=stage, epochs_before=0)
        outcome = run_stage(
            dataclasses.replace(experiment, data=stage_data),
            pool,
            stage,
            None,
            epoch_logger,
            stage_progress(),
        )
        picks = outcome.selection.indices
        assert len(picks) == QUERY and len(torch.unique(picks)) == QUERY
        assert np.all(pool.labelled_at[picks.numpy()] == UNLABELED)
        assert np.isin(picks.numpy(), pool.candidates(BUDGET.subset, cfg.seed, stage)).all()
        assert 0 <= outcome.selection.tied_picks <= QUERY
        selections.append(outcome.selection)
        pool.label(picks.numpy(), stage=stage + 1)
    return selections


@pytest.mark.parametrize("method", options("method"))
def test_selection_contract_and_blindness_to_unlabeled_labels(tiny_config, method):
    """Picks and scores of both stages are unchanged when stage 0 sees the unlabeled labels
    permuted and stage 1 sees them all shifted to a wrong class."""
    cfg = tiny_config(f"method={method}", "trainer.max_epochs=2", *FASTER.get(method, []))
    assert_blind_to_unlabeled_labels(cfg, build_data(cfg.dataset))


def assert_blind_to_unlabeled_labels(cfg, data: ALData) -> None:
    """Both stages' picks and scores equal those of a run whose stage 0 sees the unlabeled
    labels permuted and whose stage 1 sees them all shifted to a wrong class."""
    clean = two_stages(cfg, data)
    blind = two_stages(cfg, data, poisons=(permuted, shifted))
    for stage, (truth, seen) in enumerate(zip(clean, blind, strict=True)):
        assert torch.equal(truth.indices, seen.indices), stage
        assert torch.equal(truth.scores, seen.scores), stage


def integer_arrays(roots: dict[str, object]):
    """(path, values) of every 1-D integer array, tensor or int list reachable from `roots`
    through attributes, slots, containers, closures and partials (not module globals)."""
    seen, stack = set(), list(roots.items())
    while stack:
        path, obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (types.ModuleType, type, str, bytes, float)):
            continue
        seen.add(id(obj))
        if isinstance(obj, weakref.ref):
            stack.append((f"{path}()", obj()))
        elif isinstance(obj, torch.Tensor):
            if obj.ndim == 1 and not obj.is_floating_point() and not obj.is_complex():
                yield path, obj.detach().cpu().numpy()
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend((f"{path}[{i}]", item) for i, item in enumerate(obj.ravel()))
            elif obj.ndim == 1 and np.issubdtype(obj.dtype, np.integer):
                yield path, obj
        elif isinstance(obj, (list, tuple, set, frozenset)):
            items = list(obj)
            if items and all(isinstance(v, int) and not isinstance(v, bool) for v in items):
                yield path, np.asarray(items)
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(items))
        elif isinstance(obj, dict):
            stack.extend((f"{path}[{key!r}]", value) for key, value in obj.items())
        elif isinstance(obj, functools.partial):
            stack.extend([(f"{path}.func", obj.func), (f"{path}.args", obj.args)])
            stack.append((f"{path}.keywords", obj.keywords))
        elif isinstance(obj, types.FunctionType):
            cells = [cell.cell_contents for cell in obj.__closure__ or () if cell_filled(cell)]
            stack.extend((f"{path}.<closure>", value) for value in [*cells, obj.__defaults__])
        elif isinstance(obj, types.MethodType):
            stack.append((f"{path}.__func__", obj.__func__))
        else:
            attributes = dict(getattr(obj, "__dict__", {}))
            for slot in getattr(type(obj), "__slots__", ()):
                if hasattr(obj, slot):
                    attributes[slot] = getattr(obj, slot)
            stack.extend((f"{path}.{name}", value) for name, value in attributes.items())


def cell_filled(cell) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True


class LabelHunter(Selector):
    """A cheat: walks everything reachable from its arguments and the trainer for an array
    that holds the labels of unlabeled samples, then picks the first candidates."""

    targets: ClassVar[np.ndarray] = np.array([])
    planted: ClassVar[object] = None
    found: ClassVar[list[str]] = []

    def select(self, module, request: SelectionRequest):
        unlabeled = np.setdiff1d(np.arange(len(self.targets)), request_labeled(request))
        candidates = request.candidate_indices.numpy()
        roots = {"self": self, "module": module, "trainer": module.trainer, "request": request}
        roots["planted"] = LabelHunter.planted
        LabelHunter.found = [
            path
            for path, values in integer_arrays(roots)
            if reveals(values, self.targets, unlabeled, candidates)
        ]
        return request.candidate_indices[: request.query], torch.zeros(request.query)


def request_labeled(request: SelectionRequest) -> np.ndarray:
    return torch.cat([indices for _, indices in request.labeled]).numpy()


def reveals(values: np.ndarray, targets: np.ndarray, unlabeled, candidates) -> bool:
    """Whether `values` are the pool's labels, the unlabeled samples' or the candidates'."""
    if len(values) == len(targets):
        return np.mean(values[unlabeled] == targets[unlabeled]) > 0.9
    return any(
        len(values) == len(positions) and np.array_equal(values, targets[positions])
        for positions in (unlabeled, candidates)
    )


@pytest.mark.parametrize(
    ("dataset", "method"),
    [("digits", "entropy"), ("moons", "entropy"), ("digits", "m2_random"), ("moons", "m2_random")],
)
def test_a_selector_walking_every_reachable_attribute_finds_no_unlabeled_labels(
    tiny_config, dataset, method
):
    """Also with a task module that trains on unlabeled samples (M2): its unlabeled training
    loader, reachable through the trainer, holds inputs and indices only."""
    cfg = tiny_config(
        f"dataset={dataset}",
        f"budget={dataset}",
        f"method={method}",
        "trainer.max_epochs=1",
        *FASTER.get(method, []),
    )
    cfg.method.selector = {"_target_": f"{__name__}.LabelHunter"}
    data = build_data(cfg.dataset)
    LabelHunter.targets = data.pool_targets
    LabelHunter.planted = None
    two_stages(cfg, data)
    assert LabelHunter.found == []
    # The hunter finds labels wherever they are reachable: plant the oracle's data and a copy.
    LabelHunter.planted = types.SimpleNamespace(data=data, hidden=[data.pool_targets.tolist()])
    two_stages(cfg, data)
    assert sorted(LabelHunter.found) == ["planted.data.pool_targets", "planted.hidden[0]"]


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
    pool = Pool.with_initial(len(data.pool_targets), BUDGET.initial, cfg.seed)
    epoch_logger = EpochMetricsCallback(Sink(), stage=0, epochs_before=0)
    run_stage(experiment_for(cfg, data, BUDGET), pool, 0, None, epoch_logger, stage_progress())
    x, indices = SpySelector.seen["candidates"]
    assert x.shape[1:] == (1, 8, 8)
    assert torch.equal(indices, torch.from_numpy(pool.candidates(SUBSET, cfg.seed, 0))[: len(x)])
    x, indices = SpySelector.seen["labeled"]
    assert torch.equal(indices, torch.from_numpy(np.flatnonzero(pool.labelled_at == 0))[: len(x)])


def test_selector_breaking_the_contract_is_stopped(tiny_config):
    cfg = tiny_config()
    cfg.method.selector = {"_target_": f"{__name__}.DuplicatingSelector"}
    with pytest.raises(RuntimeError, match="DuplicatingSelector broke the selection contract"):
        two_stages(cfg, build_data(cfg.dataset))
