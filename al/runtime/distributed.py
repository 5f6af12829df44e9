"""Runs across processes (`trainer=ddp`): who writes, and a check that every rank agrees.

Lightning's subprocess launcher starts ranks 1… at the first `fit` by re-running this
command line; they redo the loop's setup, read the same resume snapshot and then follow
rank 0 stage by stage (Trainers built later reuse the process group). Under SLURM, srun
starts every rank itself. Either way only global rank 0 writes the run directory.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import numpy as np
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig
from pytorch_lightning.strategies import Strategy
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from al.errors import ConfigError, build

log = logging.getLogger(__name__)


def is_global_zero() -> bool:
    """True in the one process that writes the run directory: always, unless under DDP."""
    return rank_zero_only.rank == 0


def pool_digest(labelled_at: np.ndarray) -> int:
    """A 63-bit fingerprint of the pool state: which samples are labeled, and at which stage."""
    data = np.ascontiguousarray(labelled_at, dtype=np.int64).tobytes()
    return int.from_bytes(hashlib.sha256(data).digest()[:8], "little") >> 1


def gather_digests(strategy: Strategy, labelled_at: np.ndarray) -> list[int]:
    """Every rank's pool digest, in rank order (one entry without DDP)."""
    digest = torch.tensor([pool_digest(labelled_at)], device=strategy.root_device)
    with warnings.catch_warnings():
        # Lightning 2.6 gathers with a torch.distributed API that torch ≥ 2.10 deprecates.
        warnings.filterwarnings("ignore", message=r".*all_gather is deprecated")
        return strategy.all_gather(digest).reshape(-1).tolist()


def check_same_pool(strategy: Strategy, labelled_at: np.ndarray, stage: int) -> None:
    """Raise unless every rank ends `stage` with the same pool; log the agreement on rank 0."""
    digests = gather_digests(strategy, labelled_at)
    if len(set(digests)) > 1:
        per_rank = ", ".join(f"rank {rank}: {digest:016x}" for rank, digest in enumerate(digests))
        raise RuntimeError(
            f"stage {stage}: the ranks hold different pools after labeling ({per_rank}); "
            "every rank must label rank 0's picks from the same resume snapshot"
        )
    if len(digests) > 1 and is_global_zero():
        log.info("stage %d: pool identical on %d ranks (%016x)", stage, len(digests), digests[0])


def spawns_ranks(trainer: pl.Trainer) -> bool:
    """Whether `fit` would start this node's other ranks itself, by re-running the command line."""
    environment = getattr(trainer.strategy, "cluster_environment", None)
    if environment is None or trainer.num_devices < 2:
        return False
    return not environment.creates_processes_externally


def refuse_spawning_in_multirun(trainer_cfg: DictConfig) -> None:
    """A Hydra multirun cannot start DDP ranks locally: each rank would re-run the whole sweep."""
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    trainer: pl.Trainer = build(trainer_cfg)
    if spawns_ranks(trainer):
        raise ConfigError(
            f"trainer.devices={trainer.num_devices} starts its DDP ranks by re-running the command "
            "line, which under a multirun (-m) would re-run the whole sweep. Run one experiment "
            "per command (drop -m), or sweep with hydra/launcher=slurm and "
            f"hydra.launcher.tasks_per_node={trainer.num_devices} (srun starts the ranks)"
        )


def refuse_distributed_for(
    module: pl.LightningModule, trainer_cfg: DictConfig, method: str
) -> None:
    """A task module that updates in several backward passes per step (`single_device`)
    cannot train under DDP, whose gradient sync expects one: refused before any work."""
    if not module.single_device:
        return
    trainer: pl.Trainer = build(trainer_cfg)
    if trainer.world_size > 1:
        raise ConfigError(
            f"method={method} updates its networks in several backward passes per step, which "
            f"DDP's gradient sync does not support, and this trainer runs {trainer.world_size} "
            "processes: train on one device (trainer=default)"
        )
