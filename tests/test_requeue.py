"""A preempted job's `scontrol requeue` survives the SIGTERM SLURM sends the step while it
runs (a fake `scontrol` that signals itself stands in for a busy node)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from submitit.slurm.slurm import SlurmJobEnvironment

from al.runtime.requeue import requeue_ignoring_sigterm, shield_requeue

# Records its arguments, is sent SIGTERM mid-run as the cancelled step's processes are,
# and records that it lived on.
SELF_SIGNALLING_SCONTROL = """#!/bin/sh
echo "$@" >> "$MARKER"
kill -TERM $$
echo survived >> "$MARKER"
"""


@pytest.fixture
def scontrol(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(SELF_SIGNALLING_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    marker = tmp_path / "marker"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("MARKER", str(marker))
    return marker


def test_a_plain_child_dies_by_the_steps_sigterm(scontrol):
    """What submitit's own requeue does: the job is requeued, the call still raises."""
    with pytest.raises(subprocess.CalledProcessError, match="SIGTERM"):
        subprocess.check_call(["scontrol", "requeue", "42"])
    assert scontrol.read_text() == "requeue 42\n"


def test_the_shielded_requeue_survives_it_and_restores_the_handler(scontrol):
    handler = signal.getsignal(signal.SIGTERM)
    requeue_ignoring_sigterm("42")
    assert scontrol.read_text() == "requeue 42\nsurvived\n"
    assert signal.getsignal(signal.SIGTERM) is handler


def test_a_failing_requeue_still_raises(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text("#!/bin/sh\nexit 3\n")
    (bin_dir / "scontrol").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(subprocess.CalledProcessError, match="exit status 3"):
        requeue_ignoring_sigterm("42")


def test_submitit_requeues_through_the_shield(scontrol, monkeypatch):
    monkeypatch.setattr(SlurmJobEnvironment, "_requeue", SlurmJobEnvironment._requeue)
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    shield_requeue()
    SlurmJobEnvironment()._requeue(countdown=3)
    assert scontrol.read_text() == "requeue 7\nsurvived\n"
