"""conf/hydra/launcher: local by default, submitit_local, and slurm with conf/local overrides."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR, ROOT, TINY, read_results, without_timings
from test_cli import train


def launcher_config(conf_dir, *overrides: str):
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    return cfg.hydra.launcher


def test_default_launcher_runs_points_in_this_process():
    assert launcher_config(CONF_DIR)._target_.endswith("BasicLauncher")


def test_slurm_launcher_takes_cluster_values_from_conf_local_then_the_command_line(tmp_path):
    conf_dir = shutil.copytree(CONF_DIR, tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (conf_dir / "local").mkdir()
    (conf_dir / "local" / "slurm.yaml").write_text("partition: gpu\naccount: mylab\nmem_gb: 64\n")
    launcher = launcher_config(conf_dir, "hydra/launcher=slurm", "hydra.launcher.mem_gb=8")
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.account, launcher.mem_gb) == ("gpu", "mylab", 8)
    assert launcher.max_num_timeout > 0, "time limits requeue the job"


def test_slurm_launcher_works_without_conf_local(tmp_path):
    conf_dir = shutil.copytree(CONF_DIR, tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    launcher = launcher_config(conf_dir, "hydra/launcher=slurm")
    assert launcher.partition is None
    assert (launcher.cpus_per_task, launcher.tasks_per_node) == (4, 1)


@pytest.mark.slow
def test_submitit_local_sweep_matches_local_runs(tmp_path):
    sweep = subprocess.run(
        [
            sys.executable,
            "-m",
            "al.train",
            "-m",
            "hydra/launcher=submitit_local",
            *TINY,
            "budget.stages=2",
            "seed=0,1",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert (tmp_path / "sweep" / ".submitit").is_dir(), "each point ran as a submitit job"
    train(tmp_path / "local", *TINY, "budget.stages=2", "seed=1")
    assert without_timings(read_results(tmp_path / "sweep" / "1-digits-entropy-seed1")) == (
        without_timings(read_results(tmp_path / "local"))
    )
