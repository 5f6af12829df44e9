"""`python -m al.train --help` and `--cfg job` answer without loading torch, Lightning, W&B or
matplotlib (seconds of CPU): they load when a run starts."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT

HEAVY = {"torch", "pytorch_lightning", "lightning_fabric", "wandb", "matplotlib"}


def imported_packages(*args: str) -> tuple[set[str], str]:
    """The top-level packages `python -X importtime ARGS` imports, and its stdout."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
    names = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines[1:]}  # [0]: header
    return names, done.stdout


def test_importing_the_entry_point_loads_no_heavy_package():
    packages, _ = imported_packages("-c", "import al.train")
    assert "al" in packages and "hydra" in packages
    assert packages & HEAVY == set()


@pytest.mark.parametrize(
    ("flag", "printed"),
    [("--help", "== Configuration groups =="), ("--cfg", "budget:")],
)
def test_help_and_the_composed_config_load_no_heavy_package(flag, printed):
    args = ["-m", "al.train", flag] + (["job"] if flag == "--cfg" else [])
    packages, stdout = imported_packages(*args)
    assert printed in stdout
    assert packages & HEAVY == set()


def test_lightning_logs_apart_from_the_run_log_as_when_imported_first():
    """Lightning, imported once logging is configured (as `main` does), still prints its
    notices itself, apart from the run's log file: with `al.train` imported first, its loggers
    are as when Lightning was imported before logging was configured."""
    code = (
        "import logging, sys\n"
        "if sys.argv[1] == 'entry point first': import al.train\n"
        "logging.basicConfig()\n"
        "import pytorch_lightning\n"
        "for name in ('pytorch_lightning', 'lightning_fabric'):\n"
        "    logger = logging.getLogger(name)\n"
        "    print(name, logger.level, len(logger.handlers), logger.propagate)\n"
    )

    def loggers(order: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, order],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    own_handler = "pytorch_lightning 20 1 False\nlightning_fabric 20 1 False\n"
    assert loggers("entry point first") == own_handler
    propagating = "pytorch_lightning 20 0 True\nlightning_fabric 20 0 True\n"
    assert loggers("lightning after logging") == propagating  # what `main` would get without it
