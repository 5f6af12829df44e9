"""Every error a user causes is one line on stderr, exit status 2, no traceback, and leaves the
run directory as it was; Lightning's `srun` notice stays out of runs not meant for SLURM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_data import write_image_folders

from al.errors import ConfigError, DataError
from al.loop import build_data

from conftest import ROOT, TINY, compose_config


def start(run_dir: Path, *overrides: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "al.train", *TINY, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def finish(process: subprocess.Popen) -> subprocess.CompletedProcess:
    stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def train(run_dir: Path, *overrides: str, **env: str) -> subprocess.CompletedProcess:
    return finish(start(run_dir, *overrides, **env))


def contents(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


# Bad value → what its one line must say (the key as typed, and a fix).
BAD_INPUTS = {
    "seed=-1": "seed=-1 must be an integer ≥ 0: e.g. seed=0",
    "loader.batch_size=0": "loader.batch_size=0 must be a positive integer",
    "loader.eval_batch_size=-4": "loader.eval_batch_size=-4 must be a positive integer",
    "budget.initial=2000": "the pool holds 1297: lower budget.initial to at most 1287",
    "budget.stages=200": "lower budget.stages to at most 127 or budget.query to at most 6",
    "budget.query=0": "budget.query=0 must be a positive integer or 0 < f < 1",
    "eval_model=best": "eval_model='best' is not one of last, best_val",
    "trainer.max_epochs=0": "trainer.max_epochs=0 must be a positive integer",
    "dataset.pool_size=7": "dataset 'digits' declares pool_size=7 (the data has 1297)",
}


def test_bad_inputs_exit_2_with_one_line_and_change_nothing(tmp_path):
    assert train(tmp_path, "budget.stages=1").returncode == 0
    before = contents(tmp_path)
    runs = {override: start(tmp_path, "budget.stages=1", override) for override in BAD_INPUTS}
    for override, message in BAD_INPUTS.items():
        done = finish(runs[override])
        assert done.returncode == 2, (override, done.stderr[-2000:])
        assert done.stderr.splitlines() == [f"Error: {done.stderr[7:].strip()}"], override
        assert message in done.stderr, (override, done.stderr)
        assert contents(tmp_path) == before, override


def test_a_bad_input_leaves_no_run_directory_and_the_traceback_is_one_flag_away(tmp_path):
    done = train(tmp_path / "fresh", "seed=-1")
    assert done.returncode == 2 and not (tmp_path / "fresh").exists()
    debug = train(tmp_path / "fresh", "seed=-1", HYDRA_FULL_ERROR="1")
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "al.errors.ConfigError: seed=-1" in debug.stderr


def test_a_nan_loss_is_one_line_naming_stage_and_fix(tmp_path):
    done = train(tmp_path, "optimizer=sgd", "optimizer.lr=1e30")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("Error: stage 0: training loss is ") and "optimizer.lr=1e-4" in line


@pytest.fixture
def images(tmp_path) -> Path:
    root = tmp_path / "images"
    write_image_folders(root / "train", classes=3, per_class=10, size=12, suffix="png")
    return root


def image_folder_config(root: Path, *overrides: str):
    return compose_config("dataset=image_folder", f"dataset.root={root}", *overrides)


def test_image_folder_infers_its_classes_and_checks_a_given_count(images):
    cfg = image_folder_config(images)
    assert cfg.dataset.num_classes is None
    data = build_data(cfg.dataset)
    assert data.num_classes == cfg.dataset.num_classes == 3
    assert cfg.model.num_classes == 3 and list(cfg.dataset.input_shape) == [3, 32, 32]
    with pytest.raises(ConfigError, match=r"num_classes=5 \(the data has 3\)"):
        build_data(image_folder_config(images, "dataset.num_classes=5").dataset)


def test_an_unreadable_image_is_named_or_skipped_on_request(images, caplog):
    bad = images / "train" / "class_01" / "image_0003.png"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated
    (images / "train" / "class_02" / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError) as error:
        build_data(image_folder_config(images).dataset)
    message = str(error.value)
    assert "2 unreadable image file(s)" in message and "dataset.skip_bad_files=true" in message
    assert str(images / "train" / "class_01" / "image_0003.png") in message
    data = build_data(image_folder_config(images, "dataset.skip_bad_files=true").dataset)
    assert len(data.pool_targets) + len(data.test) == 29  # 30 images and notes.jpg, 2 bad
    assert "Skipping 2 unreadable image file(s)" in caplog.text


def test_an_empty_class_folder_is_named_with_the_fix(images):
    (images / "train" / "class_09").mkdir()
    with pytest.raises(DataError, match=r"class_09 hold no images .*remove the empty folder"):
        build_data(image_folder_config(images).dataset)


def test_a_bad_image_from_the_command_line_is_one_line(images, tmp_path):
    (images / "train" / "class_00" / "image_0000.png").write_bytes(b"garbage")
    done = train(tmp_path / "run", "dataset=image_folder", f"dataset.root={images}")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "1 unreadable image file(s), e.g. " in line and "image_0000.png" in line


SRUN_NOTICE = """
import shutil, warnings
import al.train
from lightning_fabric.plugins.environments import SLURMEnvironment
shutil.which = lambda name: "/usr/bin/srun"
for _ in range(3):
    SLURMEnvironment._validate_srun_used()
"""


@pytest.mark.parametrize("allocation, notices", [(False, 0), (True, 1)])
def test_the_srun_notice_is_silent_outside_slurm_and_said_once_inside(allocation, notices):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    if allocation:
        env["SLURM_JOB_ID"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", SRUN_NOTICE], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("The `srun` command is available") == notices
