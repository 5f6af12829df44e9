"""Entry point: `python -m al.train [overrides]` runs one active-learning experiment."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from al.errors import report_user_errors
from al.loop import run

# Lightning's per-Trainer notices (devices, tips, "max_epochs reached") would repeat every stage.
logging.getLogger("pytorch_lightning.utilities.rank_zero").setLevel(logging.WARNING)
# Lightning 2.6 calls a torch.utils._pytree API that torch ≥ 2.10 deprecates; nothing to act on.
warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
# Task modules validate only under eval_model=best_val; otherwise there is no validation set.
warnings.filterwarnings(
    "ignore", message="You defined a `validation_step` but have no `val_dataloader`"
)


def quiet_srun_notice(environ: Mapping[str, str] = os.environ) -> None:
    """Every Trainer warns that `srun` exists but is unused: outside a SLURM allocation (a login
    node, a workstation with SLURM installed) that is no mistake; inside one, say it once."""
    warnings.filterwarnings(
        "once" if "SLURM_JOB_ID" in environ else "ignore",
        message="The `srun` command is available on your system but is not used",
    )


quiet_srun_notice()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Compose, run (or resume) in Hydra's output directory; return the final test accuracy."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    with report_user_errors(run_dir):
        records = run(cfg, run_dir)
    return records[-1]["test/acc"]


if __name__ == "__main__":
    main()
