"""`sharded`: entropy's scoring sharded over 2 processes (gloo, one thread each: one core a
rank, as one GPU a rank) against one process with one thread, on the same streamed pool —
the speed-up — and a 1.28M-candidate pool sharded the same way against a 10k one: each rank's
peak memory, which grows with the N scores and indices only (nothing per feature)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pytorch_lightning.strategies import DDPStrategy

from al.bench.figures import Figure, PeakMemory, timed
from al.bench.overhead import stage_config
from al.bench.pools import StreamedInputs, request_for, task_module
from al.bench.selection import select
from al.bench.settings import Settings
from al.build import build_experiment
from al.data import datamodule_for
from al.methods.entropy import EntropySelector
from al.methods.selector import SelectionRequest
from al.methods.shards import scoring_shards
from al.pool import Pool

LABELED, QUERY, RANKS = 1_000, 100, 2
# VAAL's selection benched: 1,000 digits candidates and 20 labeled, the default VAE (quick: one
# epoch of a narrow one on 300).
VAAL_FIT = ("budget.initial=20", "budget.subset=1000", "method.selector.epochs_v=2")
VAAL_FIT_QUICK = (
    "budget.initial=20",
    "budget.subset=300",
    "method.selector.epochs_v=1",
    "method.selector.channels=[16,32,64,128]",
    "method.selector.image_size=16",
)


class Ranks:
    """What `Selector.on_train_end` reads of a Trainer: this process's rank among
    `world_size` (the default process group's when above 1) and a broadcast from rank 0."""

    def __init__(self, global_rank: int, world_size: int) -> None:
        self.global_rank, self.world_size = global_rank, world_size
        self.strategy = SimpleNamespace(broadcast=self.broadcast)

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=src)
        return box[0]


def rank_trainer(rank: int, world: int, device: torch.device) -> pl.Trainer:
    """The stage Trainer of rank `rank` among `world` processes already in the default process
    group (as a DDP launcher starts them: `LOCAL_RANK` set), or of one process: what a selector
    reads of it (ranks, broadcasts) and builds its own networks' Trainer from."""
    settings = {"accelerator": device.type, "barebones": True}
    if world == 1:
        return pl.Trainer(devices=[device.index or 0] if device.type == "cuda" else 1, **settings)
    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE=str(world))
    strategy = DDPStrategy(process_group_backend=dist.get_backend())
    return pl.Trainer(devices=world, strategy=strategy, **settings)


def method_picks(
    method: str, overrides: Sequence[str], trainer: pl.Trainer, device: torch.device
) -> tuple[list[int], list[float], int, float]:
    """Stage 0's picks and scores of `method` (with `overrides`) on `device`, its module freshly
    initialised from seed 0, selected as rank `trainer.global_rank` of `trainer.world_size`;
    the rows this process's backbone computed while selecting, and the selection's seconds."""
    cfg = stage_config(settings_on(device), 1, extra=(f"method={method}", *overrides))
    experiment = build_experiment(cfg)
    torch.manual_seed(0)
    module = experiment.make_module().to(device)
    budget, seed = experiment.budget, experiment.seed
    pool = Pool.with_initial(len(experiment.data.pool_targets), budget.initial, seed)
    data = datamodule_for(experiment.data, pool.labeled_indices, **cfg.loader)
    candidates = pool.candidates(budget.subset, seed, 0)
    selector = experiment.make_selector()
    selector.request(
        SelectionRequest(
            candidates=data.inputs_loader(candidates),
            labeled=data.inputs_loader(pool.labeled_indices),
            candidate_indices=torch.from_numpy(candidates),
            query=budget.query,
            seed=11,
            labeled_labels=torch.as_tensor(experiment.data.pool_targets[pool.labeled_indices]),
        )
    )
    rows = [0]
    backbone = getattr(module, "backbone", module)
    backbone.register_forward_pre_hook(lambda _, x: rows.__setitem__(0, rows[0] + len(x[0])))
    torch.manual_seed(1)
    selector.on_train_end(trainer, module)
    picked = selector.selection
    return picked.indices.tolist(), picked.scores.tolist(), rows[0], picked.seconds


def settings_on(device: torch.device) -> Settings:
    """Bench settings that only name `device` (what `stage_config` reads)."""
    return Settings(quick=True, repeats=1, device=device, threads=1)


def scored(
    settings: Settings, size: int, ranks: Ranks, memory: bool = False
) -> tuple[float, float]:
    """Seconds of entropy over `size` streamed candidates as rank `ranks.global_rank` of
    `ranks.world_size`, and with `memory` its peak memory growth (MB; 0 without: the
    resident-set sampler is a thread of its own, which would take a rank's core)."""
    module = task_module(settings)
    request = request_for(StreamedInputs(LABELED + size), LABELED, QUERY)
    if ranks.world_size > 1:
        dist.barrier()  # the clocks start together, as ranks reach selection after a fit
    peak = PeakMemory(settings.device) if memory else nullcontext()
    with peak, scoring_shards(ranks):
        seconds, _ = timed(select, EntropySelector(), module, request)
    return seconds, peak.megabytes if memory else 0.0


def rank_run(rank: int, settings: Settings, jobs: list[tuple[int, bool]], out: str) -> None:
    """One of `RANKS` gloo processes (one thread each): `scored` for every (size, memory)
    job in turn, written to `out`/rank{rank}.json."""
    torch.set_num_threads(1)
    init = f"file://{Path(out) / 'init'}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=RANKS)
    results = [scored(settings, size, Ranks(rank, RANKS), memory) for size, memory in jobs]
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def sharded_runs(settings: Settings, jobs: list[tuple[int, bool]]) -> list[tuple[float, float]]:
    """Per job: the slowest rank's seconds and the largest rank's peak MB."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_run, args=(settings, jobs, out), nprocs=RANKS, join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(RANKS)]
    return [(max(r[i][0] for r in ranks), max(r[i][1] for r in ranks)) for i in range(len(jobs))]


def one_process(settings: Settings, size: int) -> float:
    """`scored`'s seconds in this process with one thread (the baseline)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return scored(settings, size, Ranks(0, 1))[0]
    finally:
        torch.set_num_threads(threads)


def run(settings: Settings) -> list[Figure]:
    cpu = replace(settings, device=torch.device("cpu"))  # gloo ranks on one core each
    size, small, large = settings.pick((200_000, 10_000, 1_280_000), (20_000, 10_000, 50_000))
    single, sharded, base_peaks, peaks = [], [], [], []
    for repeat in range(settings.repeats):
        single.append(one_process(cpu, size))
        heavy = repeat < settings.heavy_repeats
        memory_jobs = [(small, True), (large, True)] if heavy else []
        runs = sharded_runs(cpu, [(size, False), *memory_jobs])
        sharded.append(runs[0][0])
        if heavy:
            base_peaks.append(runs[1][1])
            peaks.append(runs[2][1])
    base_peak = max(min(base_peaks), 1.0)  # MB; a floor keeps the ratio finite
    return [
        speed_up(
            f"entropy: {size:,} streamed candidates scored on {RANKS} processes, seconds",
            sharded,
            single,
            target="≤ 0.59 (a 1.7× speed-up)",
            note="one thread a process: a CPU core stands for a GPU",
        ),
        Figure(
            "sharded",
            f"entropy: {large:,} streamed candidates on {RANKS} processes, peak memory a rank",
            f"{small:,} candidates (MB, best run)",
            [p / base_peak for p in peaks],
            {
                "peak_mb": peaks,
                "baseline_peak_mb": base_peaks,
                "bytes_per_candidate": [p * 2**20 / large for p in peaks],
            },
            note="N scores and indices and the top-k's sort a rank; nothing per feature",
        ),
        vaal_fit_figure(settings),
    ]


def vaal_fit_figure(settings: Settings) -> Figure:
    """VAAL's selection — its VAE and discriminator fitted across the ranks, then scoring — on
    `RANKS` gloo processes against one, `heavy_repeats` times."""
    overrides = settings.pick(VAAL_FIT, VAAL_FIT_QUICK)
    single, sharded = [], []
    for _ in range(settings.heavy_repeats):
        row = compare_picks({"vaal": overrides}, [], RANKS)["vaal"]
        single.append(row["single_seconds"])
        sharded.append(row["seconds"])
    return speed_up(
        f"vaal: selection on {RANKS} processes ({' '.join(overrides)}), seconds",
        sharded,
        single,
        note="each rank computes its share of every VAE and discriminator batch",
    )


def speed_up(name: str, sharded: list[float], single: list[float], **text: str) -> Figure:
    """`sharded` seconds (the slowest rank's, per run) against the best of one process's."""
    return Figure(
        "sharded",
        name,
        "1 process (seconds, best run; slowest rank)",
        [s / min(single) for s in sharded],
        {"seconds": sharded, "baseline_seconds": single},
        **text,
    )


def picks_on_ranks(rank: int, world: int, methods: dict, common: Sequence[str], out: str) -> None:
    """Rank `rank` of `world` (nccl on CUDA device `rank`, else gloo on the CPU): every
    method's sharded picks, and on rank 0 one device's too, written to `out`/rank{rank}.json."""
    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    init = f"file://{Path(out) / 'init'}"
    dist.init_process_group(
        "nccl" if cuda else "gloo", init_method=init, rank=rank, world_size=world
    )
    results = {}
    for method, overrides in methods.items():
        arguments = (method, [*common, *overrides])
        sharded = method_picks(*arguments, rank_trainer(rank, world, device), device)
        single = method_picks(*arguments, rank_trainer(0, 1, device), device) if rank == 0 else None
        results[method] = {"sharded": sharded, "single": single}
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def compare_picks(methods: dict, common: Sequence[str], world: int) -> dict[str, dict]:
    """Each method (name → its overrides, after `common`) selected on `world` processes and on
    one: whether the picks are equal, how many they share, the largest score difference, the
    rows each rank's backbone computed (`rank_rows`) against one device's (`single_rows`), and
    the seconds of the slowest rank's selection against one device's."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(picks_on_ranks, args=(world, methods, common, out), nprocs=world, join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(world)]
    rows = {}
    for method in methods:
        (picks, scores, _, _), (single_picks, single_scores, single_rows, single_seconds) = (
            ranks[0][method]["sharded"],
            ranks[0][method]["single"],
        )
        rows[method] = {
            "equal": picks == single_picks and all(r[method]["sharded"][0] == picks for r in ranks),
            "common_picks": len(set(picks) & set(single_picks)),
            "max_score_difference": max(
                (abs(a - b) for a, b in zip(scores, single_scores, strict=True)), default=0.0
            ),
            "rank_rows": [r[method]["sharded"][2] for r in ranks],
            "single_rows": single_rows,
            "seconds": max(r[method]["sharded"][3] for r in ranks),
            "single_seconds": single_seconds,
        }
    return rows
