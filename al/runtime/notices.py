"""Library notices that would repeat every stage or do not apply, silenced once for every entry
point (`al.train`, `al.reports.toy`, `al.reports.analysis`): a run's output is its progress,
its table and real warnings."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping


def quiet_notices(environ: Mapping[str, str] = os.environ) -> None:
    """Install the filters; `environ` tells whether this process runs in a SLURM allocation."""
    # faiss's loader reports which instruction set it loaded, at INFO, on import.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # Lightning's per-Trainer notices (devices, tips, "max_epochs reached").
    logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
    # Lightning 2.6 calls a torch.utils._pytree API that torch ≥ 2.10 deprecates.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # Task modules validate only under eval_model=best_val; otherwise there is no validation set.
    warnings.filterwarnings(
        "ignore", message="You defined a `validation_step` but have no `val_dataloader`"
    )
    # Every Trainer warns that `srun` exists but is unused: outside a SLURM allocation (a login
    # node, a workstation with SLURM installed) that is no mistake; inside one, say it once.
    warnings.filterwarnings(
        "once" if "SLURM_JOB_ID" in environ else "ignore",
        message="The `srun` command is available on your system but is not used",
    )
