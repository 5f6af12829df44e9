"""Selection sharded across DDP ranks: inside `scoring_shards(trainer)`, every pass a selector
makes over a loader (`collect`) runs on this rank's share of its batches, and the rows every
rank computed are gathered, in the loader's order, onto every rank. Each sample is scored once
across ranks; what a selector does with the gathered rows (a top-k, a greedy) sees exactly
what one process would have computed, batch for batch."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Subset


@dataclass(frozen=True)
class Shards:
    """This process's `rank` among `world` processes of the default process group."""

    rank: int
    world: int

    def batch_range(self, batches: int) -> range:
        """The contiguous run of a loader's `batches` this rank computes (the last ranks take
        one more where they do not divide evenly)."""
        return range(self.rank * batches // self.world, (self.rank + 1) * batches // self.world)

    def loader(self, loader: DataLoader) -> DataLoader:
        """The batches of `loader` (unshuffled, no sampler of its own) in this rank's range:
        the same batches, cut at the same sample positions, as the whole loader serves."""
        size, total = loader.batch_size, len(loader.dataset)
        share = self.batch_range(len(loader))
        positions = range(share.start * size, min(share.stop * size, total))
        return DataLoader(
            Subset(loader.dataset, positions),
            batch_size=size,
            num_workers=loader.num_workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
        )

    def gather_rows(self, rows: torch.Tensor | None) -> torch.Tensor:
        """Every rank's `rows` (None: this rank had no batch) concatenated in rank order, on
        every rank, on the device of the rows (exchanged on the backend's device)."""
        shapes: list = [None] * self.world
        layout = None if rows is None else (len(rows), tuple(rows.shape[1:]), rows.dtype)
        dist.all_gather_object(shapes, layout)
        _, tail, dtype = next(shape for shape in shapes if shape is not None)
        longest = max(shape[0] for shape in shapes if shape is not None)
        exchange = self.device()
        padded = torch.zeros((longest, *tail), dtype=dtype, device=exchange)
        if rows is not None:
            padded[: len(rows)] = rows
        gathered = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(gathered, padded)
        parts = [part[: shape[0]] for part, shape in zip(gathered, shapes, strict=True) if shape]
        return torch.cat(parts).to(exchange if rows is None else rows.device)

    @staticmethod
    def device() -> torch.device:
        """Where the backend exchanges tensors: this rank's CUDA device for nccl, else the CPU."""
        if dist.get_backend() == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")


log = logging.getLogger(__name__)
_CURRENT: ContextVar[Shards | None] = ContextVar("scoring_shards", default=None)


def current_shards() -> Shards | None:
    """The shards of the selection running now, or None (one process, or not selecting)."""
    return _CURRENT.get()


@contextmanager
def scoring_shards(trainer: pl.Trainer) -> Iterator[Shards | None]:
    """Shard every `collect` inside the block across `trainer`'s processes (under DDP)."""
    shards = None
    if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
        shards = Shards(trainer.global_rank, trainer.world_size)
        if shards.rank == 0:
            log.info("selection sharded over %d ranks", shards.world)
    token = _CURRENT.set(shards)
    try:
        yield shards
    finally:
        _CURRENT.reset(token)
