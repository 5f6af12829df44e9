"""`python -m al.train` as a user runs it: a real process, killed and rerun in its run dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, read_results, without_timings

FOUR_STAGES = [*TINY, "budget.stages=4", "trainer.max_epochs=30"]


def train(run_dir: Path, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "al.train", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=check,
        env={**os.environ, "WANDB_MODE": "offline"},
    )


def kill_after_stage(run_dir: Path, stage: int, *overrides: str) -> None:
    """Start a run and SIGKILL it as soon as `stage` has finished."""
    command = [sys.executable, "-m", "al.train", *overrides, f"hydra.run.dir={run_dir}"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    snapshot = run_dir / "state" / f"stage_{stage:03d}.pt"
    deadline = time.monotonic() + 120
    while not snapshot.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert snapshot.exists(), process.stderr.read().decode()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_results(tmp_path):
    train(tmp_path / "whole", *FOUR_STAGES)
    kill_after_stage(tmp_path / "killed", 1, *FOUR_STAGES)
    finished = len(list((tmp_path / "killed" / "state").glob("stage_*.pt")))
    assert 2 <= finished < 4, "the kill should land mid-run"
    rerun = train(tmp_path / "killed", *FOUR_STAGES)
    assert f"Resuming {tmp_path / 'killed'} after stage {finished - 1}" in rerun.stdout
    assert without_timings(read_results(tmp_path / "killed")) == without_timings(
        read_results(tmp_path / "whole")
    )


@pytest.mark.slow
def test_different_config_in_a_run_dir_is_refused_and_hydra_files_kept(tmp_path):
    train(tmp_path, *TINY)
    saved_config = (tmp_path / ".hydra" / "config.yaml").read_text()
    results = (tmp_path / "results.jsonl").read_text()
    refused = train(tmp_path, *TINY, "method=margin", check=False)
    assert refused.returncode != 0
    assert "method.name: 'entropy' → 'margin'" in refused.stderr
    assert "new hydra.run.dir" in refused.stderr
    assert (tmp_path / ".hydra" / "config.yaml").read_text() == saved_config
    assert (tmp_path / "results.jsonl").read_text() == results


def test_moons_mlp_margin_from_the_command_line(tmp_path):
    done = train(tmp_path, *TINY, "method=margin", "dataset=moons", "model=mlp", "budget=moons")
    assert "margin on moons, seed 0" in done.stdout
    assert [r["n_labeled"] for r in read_results(tmp_path)] == [20, 30, 40]
    assert (tmp_path / "curve.png").exists() and (tmp_path / ".hydra" / "config.yaml").exists()
