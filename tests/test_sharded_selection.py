"""Selection sharded across DDP ranks (al.methods.shards): two gloo processes pick exactly what
one process picks, for every method whose selection is a function of the trained module, and
each candidate is scored once across the ranks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from al.build import build_experiment
from al.data import datamodule_for
from al.methods.selector import SelectionRequest, collect
from al.methods.shards import Shards, current_shards, scoring_shards
from al.pool import Pool

from conftest import FASTER, TINY, compose_config, options

# Selectors that fit networks of their own with the stage's Trainer (`fitting_like`): under
# DDP that fit is data-parallel, so their picks are not one process's (tests/test_ddp.py runs
# them in real two-process runs).
OWN_NETWORK_FITS = {"vaal", "ta_vaal", "sraal"}
METHODS = sorted(set(options("method")) - OWN_NETWORK_FITS)
SUBSET = ["budget.subset=300"]  # 5 batches of 64: 2 on rank 0, 3 on rank 1


class FakeTrainer(SimpleNamespace):
    """What `Selector.on_train_end` reads of a Trainer: ranks and a broadcast."""

    def __init__(self, rank: int, world: int) -> None:
        super().__init__(global_rank=rank, world_size=world)
        self.strategy = SimpleNamespace(broadcast=self.broadcast)

    def broadcast(self, obj, src: int = 0):
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]


def selection(method: str, trainer: FakeTrainer) -> tuple[list[int], list[float], int]:
    """Stage 0's picks and scores of `method` with its freshly initialised module (seed 0),
    and the rows this process's backbone computed while selecting."""
    cfg = compose_config(*TINY, *SUBSET, f"method={method}", *FASTER.get(method, []))
    experiment = build_experiment(cfg)
    torch.manual_seed(0)
    module = experiment.make_module()
    budget = experiment.budget
    pool = Pool.with_initial(len(experiment.data.pool_targets), budget.initial, experiment.seed)
    data = datamodule_for(experiment.data, pool.labeled_indices, batch_size=32, eval_batch_size=64)
    candidates = pool.candidates(budget.subset, experiment.seed, 0)
    selector = experiment.make_selector()
    labels = torch.as_tensor(experiment.data.pool_targets[pool.labeled_indices])
    selector.request(
        SelectionRequest(
            candidates=data.inputs_loader(candidates),
            labeled=data.inputs_loader(pool.labeled_indices),
            candidate_indices=torch.from_numpy(candidates),
            query=budget.query,
            seed=11,
            labeled_labels=labels,
        )
    )
    rows = [0]
    backbone = getattr(module, "backbone", module)
    backbone.register_forward_pre_hook(
        lambda _, inputs: rows.__setitem__(0, rows[0] + len(inputs[0]))
    )
    torch.manual_seed(1)
    selector.on_train_end(trainer, module)
    picked = selector.selection
    return picked.indices.tolist(), picked.scores.tolist(), rows[0]


def two_ranks(rank: int, init_file: str, methods: list[str], out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    results = {}
    for method in methods:
        sharded = selection(method, FakeTrainer(rank, 2))
        single = selection(method, FakeTrainer(0, 1)) if rank == 0 else None
        results[method] = {"sharded": sharded, "single": single}
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded_and_single(tmp_path_factory) -> dict[int, dict]:
    out = tmp_path_factory.mktemp("shards")
    mp.spawn(two_ranks, args=(str(out / "init"), METHODS, str(out)), nprocs=2, join=True)
    return {rank: json.loads((out / f"rank{rank}.json").read_text()) for rank in (0, 1)}


@pytest.mark.parametrize("method", METHODS)
def test_two_ranks_pick_what_one_process_picks(sharded_and_single, method):
    rank0, rank1 = sharded_and_single[0][method], sharded_and_single[1][method]
    picks, scores, _ = rank0["sharded"]
    single_picks, single_scores, _ = rank0["single"]
    assert picks == single_picks and rank1["sharded"][0] == picks
    assert scores == pytest.approx(single_scores, abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_each_candidate_is_scored_once_across_the_ranks(sharded_and_single, method):
    rank0, rank1 = sharded_and_single[0][method], sharded_and_single[1][method]
    single_rows = rank0["single"][2]
    assert rank0["sharded"][2] + rank1["sharded"][2] == single_rows
    if single_rows:
        assert 0 < rank1["sharded"][2] < single_rows


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
    with scoring_shards(FakeTrainer(0, 1)) as shards:
        assert shards is None and current_shards() is None
        indices, rows = collect([(torch.ones(2, 1), torch.tensor([4, 9]))], lambda x: x, "cpu")
    assert indices.tolist() == [4, 9] and rows.shape == (2, 1)
