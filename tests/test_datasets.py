"""The real loaders read tiny copies written in each dataset's own format; each dataset then
runs a 2-stage experiment; a missing dataset raises one helpful error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from al.build import build_data
from al.data import datamodule_for
from al.data.folders import caltech101, image_folder
from al.data.torchvision_data import cifar10, cifar100, fashion_mnist, mnist, svhn
from al.errors import ConfigError
from al.loop import run

from conftest import TINY_STAGES, compose_config

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def test_loaders_read_the_real_formats(fake_root):
    cases = {
        "mnist": (mnist(str(fake_root)), 40, 20, (1, 28, 28)),
        "fashion_mnist": (
            fashion_mnist(str(fake_root), system_dir=str(fake_root / "debian-fashion-mnist")),
            40,
            20,
            (1, 28, 28),
        ),
        "cifar10": (cifar10(str(fake_root)), 50, 20, (3, 32, 32)),
        "cifar100": (cifar100(str(fake_root)), 40, 20, (3, 32, 32)),
        "svhn": (svhn(str(fake_root)), 40, 20, (3, 32, 32)),
        "caltech101": (caltech101(str(fake_root), image_size=24, test_size=8), 24, 8, (3, 24, 24)),
        "image_folder": (
            image_folder(str(fake_root / "images"), image_size=16),
            30,
            12,
            (3, 16, 16),
        ),
    }
    for name, (data, pool, test, shape) in cases.items():
        assert (len(data.pool_targets), len(data.test)) == (pool, test), name
        x, index = data.pool.unlabeled([0])[0]
        assert tuple(x.shape) == shape and index == 0, name
        assert tuple(data.test[0][0].shape) == shape, name
    assert np.bincount(cases["svhn"][0].pool_targets).tolist() == [4] * 10  # 10 → digit 0


def test_imbalanced_cifar10_keeps_the_reduced_counts(fake_root):
    data = cifar10(str(fake_root), reduced_classes=5, reduced_size=1, imbalance_seed=0)
    assert np.bincount(data.pool_targets).tolist() == [1] * 5 + [5] * 5
    again = cifar10(str(fake_root), reduced_classes=5, reduced_size=1, imbalance_seed=0)
    assert np.array_equal(data.pool_targets, again.pool_targets)
    assert len(data.test) == 20


def test_caltech101_split_is_stratified_and_seeded(fake_root):
    data = caltech101(str(fake_root), image_size=24, test_size=8)
    assert np.bincount(data.pool_targets).tolist() == [6, 6, 6, 6]
    other = caltech101(str(fake_root), image_size=24, test_size=8, split_seed=1)
    first = [data.test.base.indices[i] for i in range(8)]
    assert first != [other.test.base.indices[i] for i in range(8)]


def test_a_half_written_scan_cache_is_rescanned_and_replaced_whole(fake_root):
    """What a reader could meet while another run of a sweep wrote the cache before writes
    went through a temporary file and a rename."""
    root = fake_root / "images"
    image_folder(str(root), image_size=16)
    cache = root / ".al-normalization-16.json"
    whole = json.loads(cache.read_text())
    cache.write_text(cache.read_text()[:20])
    image_folder(str(root), image_size=16)
    assert json.loads(cache.read_text()) == whole
    assert sorted(path.name for path in root.iterdir() if path.is_file()) == [cache.name]


def test_image_folder_without_test_folder_splits_and_caches_normalisation(fake_root):
    only_train = fake_root / "images"
    (only_train / "test").rename(fake_root / "held-back")
    data = image_folder(str(only_train), image_size=16, test_fraction=0.2)
    assert (len(data.pool_targets), len(data.test)) == (24, 6)
    cache = json.loads((only_train / ".al-normalization-16.json").read_text())
    assert cache["images"] == 24 and len(cache["mean"]) == 3 and cache["bad"] == []
    x = torch.stack([x for x, _ in data.pool.unlabeled(range(len(data.pool_targets)))])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1  # normalised by the pool


@pytest.mark.parametrize(
    "loader",
    [mnist, fashion_mnist, cifar10, cifar100, svhn, caltech101, image_folder],
    ids=lambda f: f.__name__,
)
def test_a_missing_dataset_names_path_files_and_fix(tmp_path, loader):
    kwargs = {"system_dir": str(tmp_path / "none")} if loader is fashion_mnist else {}
    with pytest.raises(ConfigError) as error:
        loader(str(tmp_path / "empty"), **kwargs)
    message = str(error.value)
    assert str((tmp_path / "empty").resolve()) in message
    assert "not found" in message and (
        "dataset.download=true" in message or "dataset.root" in message
    )
    if loader is fashion_mnist:
        assert "apt-get install dataset-fashion-mnist" in message
        assert "FashionMNIST/raw/{train-images-idx3-ubyte" in message


DATASET_OVERRIDES = {
    "mnist": ["dataset.pool_size=40"],
    "fashion_mnist": [
        "dataset.pool_size=40",
        "dataset.build.system_dir={root}/debian-fashion-mnist",
    ],
    "cifar10": ["dataset.pool_size=50"],
    "cifar10_imb10": ["dataset.pool_size=30", "dataset.build.reduced_size=1"],
    "cifar10_imb100": ["dataset.pool_size=30", "dataset.build.reduced_size=1"],
    "cifar100": ["dataset.pool_size=40"],
    "svhn": ["dataset.pool_size=40"],
    "caltech101": [
        "dataset.pool_size=24",
        "dataset.num_classes=4",
        "dataset.image_size=32",
        "dataset.build.test_size=8",
    ],
    "image_folder": ["dataset.pool_size=30", "dataset.num_classes=3", "dataset.root={root}/images"],
}


@pytest.mark.parametrize("dataset", sorted(DATASET_OVERRIDES))
def test_two_stage_experiment_on_every_dataset(fake_root, tmp_path, dataset):
    overrides = [o.format(root=fake_root) for o in DATASET_OVERRIDES[dataset]]
    cfg = compose_config(
        f"dataset={dataset}", f"dataset.root={fake_root}", *TINY_STAGES, *overrides
    )
    records = run(cfg, tmp_path / "run")
    assert [r["n_labeled"] for r in records] == [10, 15]
    assert len(records[0]["class_counts"]) == cfg.dataset.num_classes


def test_declared_sizes_are_checked(fake_root):
    cfg = compose_config("dataset=mnist", f"dataset.root={fake_root}")
    with pytest.raises(ConfigError, match=r"pool_size=60000 \(the data has 40\)"):
        build_data(cfg.dataset)


@pytest.mark.slow
@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist",
)
def test_real_fashion_mnist_experiment(tmp_path):
    cfg = compose_config(
        "dataset=fashion_mnist",
        f"dataset.root={tmp_path / 'data'}",
        "logger=none",
        "budget.initial=200",
        "budget.query=200",
        "budget.stages=3",
        "budget.subset=5000",
        "trainer.max_epochs=5",
    )
    records = run(cfg, tmp_path / "run")
    assert [r["n_labeled"] for r in records] == [200, 400, 600]
    assert records[-1]["test/acc"] > 0.6  # chance is 0.1
    assert os.path.exists(tmp_path / "data" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte")


def test_selectors_see_test_time_transforms_and_training_sees_augmentation(fake_root):
    data = cifar10(str(fake_root))
    torch.manual_seed(0)
    eval_reads = [data.pool.unlabeled([3])[0][0] for _ in range(5)]
    train_reads = [data.pool.labeled([3], [0])[0][0] for _ in range(5)]
    assert all(torch.equal(eval_reads[0], read) for read in eval_reads)
    assert not all(torch.equal(train_reads[0], read) for read in train_reads)
    datamodule = datamodule_for(data, [0, 1], batch_size=2, eval_batch_size=4)
    loader = datamodule.inputs_loader([3, 7])
    x, indices = next(iter(loader))
    assert torch.equal(x[0], eval_reads[0]) and indices.tolist() == [3, 7]


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("padding", [2, 4])
def test_crop_padding_crops_32_pixels_from_the_padded_image(fake_root, padding, fast_path):
    """One white pixel in the corner lands 0 … padding pixels in: 2 = TA-VAAL §4.2's 36×36."""
    data = cifar10(str(fake_root), crop_padding=padding, fast_path=fast_path)
    image = np.zeros((32, 32, 3), np.uint8)
    image[0, 0] = 255
    as_input = torch.from_numpy(image).permute(2, 0, 1) if fast_path else Image.fromarray(image)
    torch.manual_seed(0)
    rows, cols = set(), set()
    for _ in range(300):
        x = data.pool.train_transform(as_input)[0]
        assert x.shape == (32, 32)
        if x.max() > x.min():  # the pixel was not cropped away
            [[row, col]] = torch.nonzero(x == x.max()).tolist()
            rows.add(row)
            cols.add(min(col, 31 - col))  # undo the horizontal flip
    assert max(rows) == max(cols) == padding
    cfg = compose_config("dataset=cifar10", "dataset.crop_padding=2")
    assert cfg.dataset.build.crop_padding == 2
