"""The fast data path of the class-folder datasets (image folder, Caltech101) against their
per-sample path: the same inputs, files, flips and config key; a run completes on it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from al.data.fast import UInt8Images
from al.data.folders import caltech101, image_folder
from al.errors import DataError
from al.loop import run

from conftest import TINY_STAGES, compose_config

LOADERS = {
    "image_folder": lambda root, **kw: image_folder(str(root / "images"), image_size=16, **kw),
    "caltech101": lambda root, **kw: caltech101(str(root), image_size=24, test_size=8, **kw),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_both_paths_give_the_same_inputs_and_targets(fake_root, name, caplog):
    slow = LOADERS[name](fake_root, fast_path=False)
    with caplog.at_level(logging.INFO, logger="al.data.folders"):
        fast = LOADERS[name](fake_root, fast_path=True)
    assert isinstance(fast.pool.inputs, UInt8Images)
    assert "MB in memory" in caplog.text
    for position in range(len(slow.pool_targets)):
        torch.testing.assert_close(
            fast.pool.unlabeled([position])[0][0], slow.pool.unlabeled([position])[0][0]
        )
    assert len(fast.test) == len(slow.test)
    fast_x, fast_y = next(iter(DataLoader(fast.test, batch_size=len(fast.test))))
    slow_x, slow_y = next(iter(DataLoader(slow.test, batch_size=len(slow.test))))
    torch.testing.assert_close(fast_x, slow_x)
    assert torch.equal(fast_y, slow_y)
    assert np.array_equal(fast.pool_targets, slow.pool_targets)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_a_training_view_is_the_eval_input_flipped_or_not(fake_root, name):
    data = LOADERS[name](fake_root, fast_path=True)
    plain = data.pool.unlabeled([3])[0][0]
    torch.manual_seed(0)
    draws = [data.pool.labeled([3], [0])[0][0] for _ in range(40)]
    flipped = [torch.equal(x, plain.flip(-1)) for x in draws]
    unflipped = [torch.equal(x, plain) for x in draws]
    assert any(flipped) and any(unflipped)
    assert all(f or u for f, u in zip(flipped, unflipped, strict=True))  # nothing else


def test_unreadable_files_are_handled_as_on_the_per_sample_path(fake_root):
    (fake_root / "images" / "train" / "class_01" / "broken.png").write_bytes(b"not a png")
    for fast_path in (False, True):
        with pytest.raises(DataError, match=r"broken\.png"):
            LOADERS["image_folder"](fake_root, fast_path=fast_path)
    slow = LOADERS["image_folder"](fake_root, skip_bad_files=True, fast_path=False)
    fast = LOADERS["image_folder"](fake_root, skip_bad_files=True, fast_path=True)
    assert len(fast.pool_targets) == len(slow.pool_targets) == 30
    assert np.array_equal(fast.pool_targets, slow.pool_targets)


def test_the_config_key_is_off_by_default_and_reaches_the_loader(fake_root):
    for name in LOADERS:
        assert compose_config(f"dataset={name}").dataset.build.fast_path is False
    cfg = compose_config(
        "dataset=image_folder", f"dataset.root={fake_root}/images", "dataset.fast_path=true"
    )
    assert cfg.dataset.build.fast_path is True


def test_two_stage_experiment_on_the_fast_path(fake_root, tmp_path, caplog):
    cfg = compose_config(
        "dataset=image_folder",
        f"dataset.root={fake_root}/images",
        "dataset.num_classes=3",
        "dataset.pool_size=30",
        "dataset.fast_path=true",
        *TINY_STAGES,
    )
    with caplog.at_level(logging.INFO, logger="al.data.folders"):
        records = run(cfg, tmp_path / "run")
    assert "Fast data path: 30 pool and 12 test images" in caplog.text
    assert [r["n_labeled"] for r in records] == [10, 15]
    assert len(records[0]["class_counts"]) == 3
