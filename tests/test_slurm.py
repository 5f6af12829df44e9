"""Sweeps through `hydra/launcher=slurm` on a real single-node SLURM cluster started per module.

Skipped, with the install command, where the SLURM and munge programs are absent.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, read_results, without_timings
from slurm_cluster import INSTALL_HINT, SlurmCluster, missing_binaries
from test_cli import train

pytestmark = pytest.mark.slow

# The test node has 2 cores and the cluster's default partition is `debug`.
SMALL_JOBS = [
    "hydra/launcher=slurm",
    "hydra.launcher.partition=debug",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
]
# Long enough per stage (about a second) that a signal after stage 0 lands mid-run.
FIVE_STAGES = [*TINY, "budget.stages=5", "trainer.max_epochs=200"]
# A busy node: `scontrol requeue` is still running when SLURM's cancellation of the step
# sends it SIGTERM (the job must requeue and report itself requeued, not failed).
SLOW_SCONTROL = """#!/bin/sh
trap 'exit 143' TERM  # killed by that SIGTERM, as scontrol is, unless started ignoring it
PATH="$AL_REAL_PATH" scontrol "$@"
status=$?
[ "$1" = requeue ] && sleep 3
exit $status
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    missing = missing_binaries()
    if missing:
        pytest.skip(f"SLURM programs missing ({', '.join(missing)}); {INSTALL_HINT}")
    if os.geteuid() != 0:
        pytest.skip(f"the test cluster's slurmd must run as root; {INSTALL_HINT}")
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    slurm.start()
    yield slurm
    slurm.stop()


def sweep_command(sweep_dir: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "al.train",
        "-m",
        *SMALL_JOBS,
        *overrides,
        f"hydra.sweep.dir={sweep_dir}",
    ]


def start_sweep(
    cluster: SlurmCluster, sweep_dir: Path, *overrides: str, env: dict | None = None
) -> subprocess.Popen:
    sweep_dir.mkdir(parents=True)
    return subprocess.Popen(
        sweep_command(sweep_dir, *overrides),
        cwd=ROOT,
        env={**cluster.env(), "WANDB_MODE": "offline", **(env or {})},
        stdout=sweep_log(sweep_dir).open("w"),
        stderr=subprocess.STDOUT,
    )


def sweep_log(sweep_dir: Path) -> Path:
    return sweep_dir.parent / f"{sweep_dir.name}.log"


def finish(
    process: subprocess.Popen, sweep_dir: Path, cluster: SlurmCluster, timeout_s: float = 400
) -> None:
    """Wait for the sweep; on failure show its own log's end, its jobs' logs and SLURM's."""
    try:
        status = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        status = "timeout"
    if status != 0:
        jobs = "".join(path.read_text() for path in sweep_dir.glob(".submitit/*/*_log.*"))
        sweep = sweep_log(sweep_dir).read_text()[-4000:]
        logs = f"--- sweep\n{sweep}\n--- jobs\n{jobs[-6000:]}\n{cluster.logs()}"
        pytest.fail(f"sweep ended with {status}\n{logs}")


def job_folders(sweep_dir: Path) -> list[Path]:
    """submitit's per-job folders (`JOB` or `JOB_TASK`) of one sweep."""
    folders = (sweep_dir / ".submitit").iterdir()
    return sorted(path for path in folders if re.fullmatch(r"\d+(_\d+)?", path.name))


def wait_for(path: Path, process: subprocess.Popen, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.exists(), f"{path} never appeared"


def test_two_methods_by_two_seeds_run_as_four_array_tasks(cluster, tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep = start_sweep(cluster, sweep_dir, *TINY, "method=random,entropy", "seed=0,1")
    train(tmp_path / "local", *TINY, "method=entropy", "seed=1")
    finish(sweep, sweep_dir, cluster)
    run_dirs = sorted(path.parent for path in sweep_dir.glob("*/results.jsonl"))
    assert [path.name for path in run_dirs] == [
        "0-digits-random-seed0",
        "1-digits-random-seed1",
        "2-digits-entropy-seed0",
        "3-digits-entropy-seed1",
    ]
    assert all(len(read_results(path)) == 3 for path in run_dirs)
    tasks = [path.name for path in job_folders(sweep_dir) if "_" in path.name]
    array_id = tasks[0].split("_")[0]
    assert tasks == [f"{array_id}_{task}" for task in range(4)], "one array task per point"
    assert without_timings(read_results(run_dirs[3])) == without_timings(
        read_results(tmp_path / "local")
    ), "a SLURM job runs the same experiment as a local run"


def test_preempted_job_is_requeued_and_ends_as_an_uninterrupted_run(cluster, tmp_path):
    point = [*FIVE_STAGES, "method=entropy", "seed=0"]
    whole = start_sweep(cluster, tmp_path / "whole", *point)
    preempted = start_sweep(cluster, tmp_path / "preempted", *point, env=busy_node(tmp_path))
    run_dir = tmp_path / "preempted" / "0-digits-entropy-seed0"
    wait_for(run_dir / "state" / "stage_000.pt", preempted)
    (job,) = job_folders(tmp_path / "preempted")
    subprocess.run(["scancel", "--signal=USR2", job.name], env=cluster.env(), check=True)
    finish(preempted, tmp_path / "preempted", cluster)
    finish(whole, tmp_path / "whole", cluster)
    job_log = "".join(path.read_text() for path in job.glob("*_log.*"))
    assert "this job is preempted" in job_log
    assert "Requeued" in job_log or job_log.count("Starting with JobEnvironment") == 2
    assert re.search(r"Resuming \S+ after stage [0-3]\b", job_log + run_log(run_dir))
    assert without_timings(read_results(run_dir)) == without_timings(
        read_results(tmp_path / "whole" / "0-digits-entropy-seed0")
    )


def busy_node(tmp_path: Path) -> dict:
    """The environment of a sweep whose jobs find SLOW_SCONTROL first on their PATH."""
    bin_dir = tmp_path / "busy-bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(SLOW_SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "AL_REAL_PATH": os.environ["PATH"]}


def run_log(run_dir: Path) -> str:
    return "".join(path.read_text() for path in run_dir.glob("*.log"))


def test_ddp_job_runs_one_rank_per_slurm_task_with_identical_pools(cluster, tmp_path):
    ranks = ["trainer=ddp", "trainer.devices=2", "hydra.launcher.tasks_per_node=2"]
    sweep = start_sweep(cluster, tmp_path / "sweep", *TINY, "trainer.max_epochs=2", *ranks)
    finish(sweep, tmp_path / "sweep", cluster)
    run_dir = tmp_path / "sweep" / "0-digits-entropy-seed0"
    assert [record["n_labeled"] for record in read_results(run_dir)] == [20, 30, 40]
    (job,) = job_folders(tmp_path / "sweep")
    assert sorted(path.name for path in job.glob("*_result.pkl")) == [
        f"{job.name}_0_result.pkl",
        f"{job.name}_1_result.pkl",
    ], "srun started two ranks"
    for stage in range(3):
        assert f"stage {stage}: pool identical on 2 ranks" in run_log(run_dir)
