"""Entry point: `python -m al.train [overrides]` runs one active-learning experiment.

Torch, Lightning (which imports matplotlib), W&B and the methods load when a run starts, in
`main`: `--help` and `--cfg job` answer without them.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig

from al.errors import build, report_user_errors
from al.runtime import signals
from al.runtime.notices import quiet_notices
from al.runtime.requeue import shield_requeue


def lightning_logs_apart() -> None:
    """Lightning's loggers print to stderr by themselves, apart from the run's log file, when
    Lightning is imported before anything configured logging (its own rule). `main` imports it
    after Hydra configured logging, so this sets them up first (Lightning keeps them)."""
    if logging.getLogger().hasHandlers():
        return
    for name in ("pytorch_lightning", "lightning_fabric"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(logging.StreamHandler())
        logger.propagate = False


quiet_notices()
lightning_logs_apart()


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Compose, run (or resume) in Hydra's output directory; return the final stage's value of
    the task's test metric (accuracy, or mIoU for segmentation). SIGTERM and SIGINT stop the
    run wherever it is, with exit status 143 or 130."""
    from al.loop import run
    from al.runtime.distributed import is_global_zero

    if os.environ.pop(RAISED_BY_CLI, None):
        os.environ.pop("HYDRA_FULL_ERROR", None)  # the run's own errors as the user asked
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if os.environ.get("SUBMITIT_FOLDER"):  # a submitit job (hydra/launcher=slurm)
        shield_requeue()
    signals.install()
    with signals.exit_when_stopped(is_global_zero()), report_user_errors(run_dir):
        records = run(cfg, run_dir)
    return records[-1][build(cfg.dataset.task).primary_metric]


# Hydra's refusals of the command line, raised before the run starts.
COMPOSITION_ERRORS = (ConfigCompositionException, MissingConfigException, OverrideParseException)
RAISED_BY_CLI = "AL_HYDRA_FULL_ERROR_FROM_CLI"


def cli() -> None:
    """`python -m al.train`: Hydra's own refusals of the command line (a misspelt key, a
    config group option that does not exist, an override it cannot parse) are one line and
    exit status 2, as every other user error (HYDRA_FULL_ERROR=1 keeps Hydra's report)."""
    if os.environ.get("HYDRA_FULL_ERROR") == "1":
        main()
        return
    os.environ["HYDRA_FULL_ERROR"] = os.environ[RAISED_BY_CLI] = "1"  # main() undoes it
    try:
        main()
    except COMPOSITION_ERRORS as error:
        print(f"Error: {one_line(error)}", file=sys.stderr)
        raise SystemExit(2) from None


def one_line(error: Exception) -> str:
    """Hydra's message (and OmegaConf's cause) on one line: the lines a list follows (an
    "Available options" heading) joined by commas, OmegaConf's key dump dropped."""
    text = str(error)
    if error.__cause__ is not None and str(error.__cause__) not in text:
        text += "\n" + str(error.__cause__)
    text = text.split("Config search path")[0]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    joined, listing = "", False
    for line in lines:
        if line.startswith(("full_key:", "object_type=")):
            continue
        separator = " " if joined.endswith((".", ":")) else ", " if listing else "; "
        listing = listing or line.endswith(":")
        joined += (separator if joined else "") + line
    return joined


if __name__ == "__main__":
    cli()
