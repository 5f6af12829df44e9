"""Entry point: `python -m al.train [overrides]` runs one active-learning experiment."""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from al.errors import build, report_user_errors
from al.loop import run
from al.runtime import signals
from al.runtime.distributed import is_global_zero
from al.runtime.notices import quiet_notices
from al.runtime.requeue import shield_requeue

quiet_notices()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Compose, run (or resume) in Hydra's output directory; return the final stage's value of
    the task's test metric (accuracy, or mIoU for segmentation). SIGTERM and SIGINT stop the
    run wherever it is, with exit status 143 or 130."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if os.environ.get("SUBMITIT_FOLDER"):  # a submitit job (hydra/launcher=slurm)
        shield_requeue()
    signals.install()
    with signals.exit_when_stopped(is_global_zero()), report_user_errors(run_dir):
        records = run(cfg, run_dir)
    return records[-1][build(cfg.dataset.task).primary_metric]


if __name__ == "__main__":
    main()
