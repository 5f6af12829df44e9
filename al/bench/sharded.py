"""`sharded`: entropy's scoring sharded over 2 processes (gloo, one thread each: one core a
rank, as one GPU a rank) against one process with one thread, on the same streamed pool —
the speed-up — and a 1.28M-candidate pool sharded the same way against a 10k one: each rank's
peak memory, which must stay flat (it holds the N scores and indices, nothing per feature)."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from al.bench.figures import Figure, PeakMemory, timed
from al.bench.pools import StreamedInputs, request_for, task_module
from al.bench.selection import select
from al.bench.settings import Settings
from al.methods.entropy import EntropySelector
from al.methods.shards import scoring_shards

LABELED, QUERY, RANKS = 1_000, 100, 2


@dataclass(frozen=True)
class Ranks:
    """What `scoring_shards` reads of a Trainer."""

    global_rank: int
    world_size: int


def scored(settings: Settings, size: int, ranks: Ranks) -> tuple[float, float]:
    """Seconds and peak memory growth (MB) of entropy over `size` streamed candidates, as
    rank `ranks.global_rank` of `ranks.world_size`."""
    module = task_module(settings)
    request = request_for(StreamedInputs(LABELED + size), LABELED, QUERY)
    with PeakMemory(settings.device) as peak, scoring_shards(ranks):
        seconds, _ = timed(select, EntropySelector(), module, request)
    return seconds, peak.megabytes


def rank_run(rank: int, settings: Settings, sizes: list[int], out: str) -> None:
    """One of `RANKS` gloo processes (one thread each): `scored` at every size in turn,
    written to `out`/rank{rank}.json."""
    torch.set_num_threads(1)
    init = f"file://{Path(out) / 'init'}"
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=RANKS)
    results = [scored(settings, size, Ranks(rank, RANKS)) for size in sizes]
    Path(out, f"rank{rank}.json").write_text(json.dumps(results))
    dist.destroy_process_group()


def sharded_runs(settings: Settings, sizes: list[int]) -> list[tuple[float, float]]:
    """Per size: the slowest rank's seconds and the largest rank's peak MB."""
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_run, args=(settings, sizes, out), nprocs=RANKS, join=True)
        ranks = [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(RANKS)]
    return [(max(r[i][0] for r in ranks), max(r[i][1] for r in ranks)) for i in range(len(sizes))]


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
        runs = sharded_runs(cpu, [size, small, large] if heavy else [size])
        sharded.append(runs[0][0])
        if heavy:
            base_peaks.append(runs[1][1])
            peaks.append(runs[2][1])
    base_peak = max(min(base_peaks), 1.0)  # MB; a floor keeps the ratio finite
    return [
        Figure(
            "sharded",
            f"entropy: {size:,} streamed candidates scored on {RANKS} processes, seconds",
            "1 process (seconds, best run; slowest rank)",
            [s / min(single) for s in sharded],
            {"seconds": sharded, "baseline_seconds": single},
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
            target="flat: N scores and indices (12 bytes a candidate)",
        ),
    ]
