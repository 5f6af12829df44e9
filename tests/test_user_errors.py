"""Every error a user causes is one line on stderr, exit status 2, no traceback, and leaves the
run directory as it was; Lightning's `srun` notice stays out of runs not meant for SLURM."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from fake_data import write_image_folders
from lightning_fabric.plugins.environments import SLURMEnvironment

from al.build import build_data
from al.errors import ConfigError, DataError, NonFiniteLossError, UserError, report_user_errors
from al.loop import run
from al.runtime.notices import quiet_notices

from conftest import TINY, compose_config, finished, start_train


def contents(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}


# Bad value → what its one line must say (the key as typed, and a fix).
BAD_INPUTS = {
    "seed=-1": "seed=-1 must be an integer ≥ 0: e.g. seed=0",
    "loader.batch_size=0": "loader.batch_size=0 must be a positive integer",
    "loader.eval_batch_size=-4": "loader.eval_batch_size=-4 must be a positive integer",
    "budget.initial=2000": "the pool holds 1297: lower budget.initial to at most 1267",
    "budget.stages=200": "lower budget.stages to at most 127 or budget.query to at most 6",
    "budget.query=0": "budget.query=0 must be a positive integer or 0 < f < 1",
    "eval_model=best": "eval_model='best' is not one of last, best_val",
    "trainer.max_epochs=0": "trainer.max_epochs=0 must be a positive integer",
    "dataset.pool_size=7": "dataset 'digits' declares pool_size=7 (the data has 1297)",
    "loss_prediction.schedule=later": "loss_prediction.schedule='later' is not one of",
    "optimizer.lr=abc": "optimizer.lr='abc' must be a number: e.g. optimizer.lr=0.001",
    "optimizer.weight_decay=high": "optimizer.weight_decay='high' must be a number",
    "method=coreset method.selector.chunk=0": (
        "method.selector.chunk=0 must be an integer ≥ 1: e.g. method.selector.chunk=512"
    ),
    "method=batchbald": "method=batchbald: MC dropout needs a dropout layer, and the model has",
    "method=bgadl": "method=bgadl: MC dropout needs a dropout layer, and the model has none",
    "trainer.precision=17": "trainer.precision=17 must be one of 64, 32, 16, 'transformer-engine'",
    "trainer.max_epochs=abc": "trainer.max_epochs='abc' must be a positive integer",
    "loader.num_workers=-1": "loader.num_workers=-1 must be an integer ≥ 0: e.g. loader",
    "budget.initial_strategy=best": "budget.initial_strategy='best' is not one of",
    "seed=abc": "seed='abc' must be an integer ≥ 0: e.g. seed=0",
    "model.dropout=abc": "model.dropout='abc' must be a number",
    "+budget.foo=1": "budget.foo is not an option of Budget: use one of initial, query, stages",
    "budget.stages=1.5": "budget.stages=1.5 must be a positive integer",
    "+method.selector.foo=1": "method.selector.foo is not an option of EntropySelector: it takes",
    "method=ta_vaal +method.selector.epochs=5": (
        "method.selector.epochs is not an option of TaVaalSelector: use one of "
        "discriminator_rank, kl, vae_steps, input_shape, latent_dim"
    ),
    "+model.foo=3": "model.foo is not an option of SmallCNN: use one of input_shape, num_classes",
    "method=ta_vaal method.selector.epochs_v=0": (
        "method.selector.epochs_v=0 must be a number > 0: e.g. method.selector.epochs_v=100"
    ),
    "method=sraal method.selector.lr_decay=2": "method.selector.lr_decay=2 must be a number in",
    "method=bald model.dropout=0.3 method.selector.passes=0": (
        "method.selector.passes=0 must be an integer ≥ 1: e.g. method.selector.passes=20"
    ),
    "optimizer.lr=-1": (
        "optimizer.lr=-1 is refused by torch.optim.Adam (Invalid learning rate: -1): "
        "change optimizer.lr"
    ),
    "optimizer=sgd optimizer.momentum=-1": (
        "optimizer.momentum=-1 is refused by torch.optim.SGD (Invalid momentum value: -1)"
    ),
    "trainer.devices=abc": (
        "trainer.devices='abc' is refused by pytorch_lightning.Trainer (`devices` selected with"
    ),
    "trainer.accelerator=abacus": (
        "trainer.accelerator='abacus' is refused by pytorch_lightning.Trainer (You selected an "
        "invalid accelerator name"
    ),
}

# Hydra's own refusals of a command line, before any config exists → the line `al.train` prints.
COMPOSITION_ERRORS = {
    "method.selector.samples=0": (
        "Error: Could not override 'method.selector.samples'. To append to your config use "
        "+method.selector.samples=0; Key 'samples' is not in struct\n"
    ),
    "method=nonesuch": "Error: In 'train': Could not find 'method/nonesuch'; Available options in "
    "'method': ads, badge, bald, batchbald",
    "budget.stages=[1": "Error: no viable alternative at input '[1'",
}


def test_bad_values_are_refused_naming_key_and_fix_and_change_nothing(tmp_path):
    run(compose_config(*TINY, "budget.stages=1"), tmp_path / "done")
    before = contents(tmp_path / "done")
    for override, message in BAD_INPUTS.items():
        for run_dir in (tmp_path / "done", tmp_path / "fresh"):
            with pytest.raises(UserError) as error:
                run(compose_config(*TINY, *override.split()), run_dir)
            assert message in str(error.value), override
        assert contents(tmp_path / "done") == before, override
        assert not (tmp_path / "fresh").exists(), override


def test_user_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    for error in (
        ConfigError("seed=-1 must be …"),
        DataError("cannot read image …"),
        NonFiniteLossError("stage 3: training loss is nan …"),
    ):
        run_dir = tmp_path / type(error).__name__
        run_dir.mkdir()  # as Hydra creates it: left empty by the error, so removed
        with pytest.raises(SystemExit) as exit_status, report_user_errors(run_dir):
            raise error
        assert exit_status.value.code == 2 and not run_dir.exists()
        assert capsys.readouterr().err == f"Error: {error}\n"
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "results.jsonl").write_text("{}\n")
    with pytest.raises(SystemExit), report_user_errors(tmp_path / "kept"):
        raise NonFiniteLossError("stage 1: …")
    assert (tmp_path / "kept" / "results.jsonl").exists()
    with pytest.raises(RuntimeError), report_user_errors(tmp_path):  # a bug keeps its traceback
        raise RuntimeError("not the user's")


def test_from_the_command_line_one_line_and_no_run_directory_or_the_traceback(tmp_path):
    plain = start_train(tmp_path / "plain", "seed=-1")
    debug = start_train(tmp_path / "debug", "seed=-1", HYDRA_FULL_ERROR="1")
    plain, debug = finished(plain), finished(debug)
    assert plain.returncode == 2 and not (tmp_path / "plain").exists()
    assert plain.stderr == f"Error: {BAD_INPUTS['seed=-1']}\n"
    assert debug.returncode == 1 and "Traceback" in debug.stderr
    assert "al.errors.ConfigError: seed=-1" in debug.stderr


def test_hydras_refusals_of_the_command_line_are_one_line_with_exit_status_2(tmp_path):
    runs = {o: start_train(tmp_path / str(i), o) for i, o in enumerate(COMPOSITION_ERRORS)}
    for i, (override, process) in enumerate(runs.items()):
        result = finished(process)
        assert result.returncode == 2, (override, result.stderr)
        assert result.stderr.startswith(COMPOSITION_ERRORS[override]), result.stderr
        assert result.stderr.count("\n") == 1 and not (tmp_path / str(i)).exists()


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


@pytest.mark.parametrize("allocation, notices", [({}, 0), ({"SLURM_JOB_ID": "1"}, 1)])
def test_the_srun_notice_is_silent_outside_slurm_and_said_once_inside(
    monkeypatch, allocation, notices
):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/srun")
    monkeypatch.setattr(warnings, "onceregistry", {})
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        quiet_notices(allocation)
        for _ in range(3):
            SLURMEnvironment._validate_srun_used()
    assert sum("The `srun` command is available" in str(w.message) for w in shown) == notices
