"""SIGTERM and SIGINT stop `python -m al.train` in any phase — a selector's own training loop,
BatchBALD's joint entropies, a snapshot being written — with exit status 143 or 130 and one
line naming where, and rerunning the command resumes to the uninterrupted results."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from al.runtime import signals

from conftest import FASTER, ROOT, TINY, read_results, without_timings

STAGES = [*TINY, "budget.stages=2", "trainer.max_epochs=2", "budget.subset=100"]
SELECTION = "al.methods.selector:Selector.score_loader"  # the default method's scoring


def run_train(run_dir: Path, *overrides: str, stop_at: str = "", stop_signal: str = "SIGTERM"):
    """`python -m al.train` (through tests/stop_run.py when `stop_at` names a function to stop
    in), waited for."""
    script = [str(ROOT / "tests" / "stop_run.py")] if stop_at else ["-m", "al.train"]
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "OMP_NUM_THREADS": "1",
        "STOP_AT": stop_at,
        "STOP_SIGNAL": stop_signal,
    }
    return subprocess.run(
        [sys.executable, *script, *STAGES, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def check_stop_and_resume(tmp_path: Path, overrides: list[str], stop_at: str, where: str):
    """The run stopped at `stop_at` exits 143 with one line naming `where`; rerun, it ends
    with the results of a run never stopped."""
    stopped = run_train(tmp_path / "stopped", *overrides, stop_at=stop_at)
    assert stopped.returncode == 143, stopped.stderr
    line = (
        f"Stopped by SIGTERM during {where}: rerun the same command to resume after the last "
        "finished stage\n"
    )
    assert stopped.stderr.endswith(line), stopped.stderr
    assert "Traceback" not in stopped.stderr
    resumed = run_train(tmp_path / "stopped", *overrides)
    whole = run_train(tmp_path / "whole", *overrides)
    assert resumed.returncode == whole.returncode == 0, resumed.stderr + whole.stderr
    assert without_timings(read_results(tmp_path / "stopped")) == without_timings(
        read_results(tmp_path / "whole")
    )


@pytest.mark.slow
def test_sigterm_in_a_vaal_selectors_own_training_loop_stops_it(tmp_path):
    check_stop_and_resume(
        tmp_path,
        ["method=vaal", *FASTER["vaal"]],
        "al.methods.vaal:VaalSelector.discriminator_objective",
        "stage 0 (selection)",
    )


@pytest.mark.slow
def test_sigterm_in_batchbalds_joint_entropies_stops_it(tmp_path):
    check_stop_and_resume(
        tmp_path,
        ["method=batchbald", *FASTER["batchbald"]],
        "al.methods.batchbald:joint_entropies",
        "stage 0 (selection)",
    )


def test_sigterm_while_a_snapshot_is_written_lets_the_stage_finish_first(tmp_path):
    stopped = run_train(tmp_path, stop_at="al.store:RunStore.save_stage")
    assert stopped.returncode == 143, stopped.stderr
    assert "during stage 0 (saving)" in stopped.stderr
    assert [record["stage"] for record in read_results(tmp_path)] == [0]  # saved whole
    assert sorted(p.name for p in (tmp_path / "state").glob("stage_*")) == [
        "stage_000.pt",
        "stage_000.pt.sha256",
    ]
    assert not list(tmp_path.rglob("*.tmp"))
    resumed = run_train(tmp_path)
    assert resumed.returncode == 0 and "Resuming" in resumed.stdout


def test_sigint_stops_training_with_status_130(tmp_path):
    stopped = run_train(
        tmp_path,
        stop_at="al.methods.classifier:ClassifierModule.training_step",
        stop_signal="SIGINT",
    )
    assert stopped.returncode == 130, stopped.stderr
    assert stopped.stderr.endswith(
        "Stopped by SIGINT during stage 0 (training): rerun the same command to resume after the "
        "last finished stage\n"
    )


def test_a_signal_inside_deferred_waits_for_the_block_and_later_ones_are_ignored(monkeypatch):
    previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    try:
        signal.signal(signal.SIGTERM, signals._stop)
        done = []
        with pytest.raises(signals.RunStopped) as stop, signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            done.append("written")
        assert done == ["written"] and stop.value.exit_status == 143
        os.kill(os.getpid(), signal.SIGTERM)  # while the run unwinds: ignored
        monkeypatch.setattr(signals, "_stopping", False)  # a new run
        signal.signal(signal.SIGINT, signals._stop)
        with pytest.raises(signals.RunStopped) as stop:
            os.kill(os.getpid(), signal.SIGINT)  # outside a deferred block: at once
        assert stop.value.exit_status == 130
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
        monkeypatch.setattr(signals, "_stopping", False)


def test_a_sigterm_handler_already_in_place_is_kept():
    """submitit's (it lets SLURM's SIGTERM pass while USR2 requeues the job)."""

    def bypass(signum, frame):
        pass

    previous = (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT))
    signal.signal(signal.SIGTERM, bypass)
    try:
        signals.install()
        assert signal.getsignal(signal.SIGTERM) is bypass
        assert signal.getsignal(signal.SIGINT) is signals._stop
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])


@pytest.mark.slow
def test_sigterm_to_rank_zero_of_a_ddp_run_during_selection_stops_every_rank(tmp_path):
    ddp = ["trainer=ddp", "trainer.devices=2", "logger=csv"]
    stopped = run_train(tmp_path / "stopped", *ddp, stop_at=SELECTION)
    assert stopped.returncode == 143, stopped.stderr
    assert stopped.stderr.endswith(
        "Stopped by SIGTERM during stage 0 (selection): rerun the same command to resume after "
        "the last finished stage\n"
    )
    assert "Traceback" not in stopped.stderr
    left = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True)
    assert left.stdout == "", "every rank has exited"
    resumed = run_train(tmp_path / "stopped", *ddp)
    whole = run_train(tmp_path / "whole", *ddp)
    assert resumed.returncode == whole.returncode == 0, resumed.stderr[-2000:]
    assert without_timings(read_results(tmp_path / "stopped")) == without_timings(
        read_results(tmp_path / "whole")
    )
