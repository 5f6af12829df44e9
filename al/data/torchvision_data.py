"""MNIST, Fashion-MNIST, CIFAR-10/100 (and TA-VAAL's imbalanced CIFAR-10) and SVHN, read by
torchvision's own dataset classes from `root` in their original formats.

All fit in memory: with `fast_path` (the default) they are decoded once into uint8 tensors and
transformed batch by batch (al.data.fast); `fast_path=False` serves PIL images through
torchvision's per-sample transforms — the same augmentations, drawn one image at a time.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from torchvision import datasets

from al.data.base import ALData, PixelStats
from al.data.fast import UInt8Images
from al.data.vision import (
    ImageArrayInputs,
    fast_vision_data,
    image_transforms,
    missing_dataset,
    vision_data,
)

CIFAR10_STATS = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))  # the TA-VAAL code's
CIFAR100_STATS = ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
SVHN_STATS = ((0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970))
MNIST_STATS = ((0.1307,), (0.3081,))
FASHION_MNIST_STATS = ((0.2860,), (0.3530,))
IDX_FILES = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
]


def load(cls: type, name: str, root: str, expected: str, extra_fix: str = "", **kwargs):
    """A torchvision dataset, or the one clear error when its files are missing."""
    try:
        return cls(root, **kwargs)
    except RuntimeError as error:
        if "not found" not in str(error).lower():
            raise
        raise missing_dataset(name, Path(root).resolve(), expected, extra_fix) from None


def images_data(
    pool_images: np.ndarray,
    pool_targets,
    test,
    test_images: np.ndarray,
    test_targets,
    num_classes: int,
    stats: tuple,
    fast_path: bool,
    crop_padding: int | None = None,
    flip: bool = False,
) -> ALData:
    """ALData over uint8 images (N×H×W or N×H×W×C) on the fast path, or over the torchvision
    dataset `test` and PIL images of the pool on the per-sample one."""
    if fast_path:
        return fast_vision_data(
            UInt8Images.from_array(pool_images),
            UInt8Images.from_array(test_images),
            pool_targets,
            test_targets,
            num_classes,
            PixelStats(*stats),
            crop_padding,
            flip,
        )
    transforms = image_transforms(*stats, crop_padding=crop_padding, flip=flip)
    return vision_data(ImageArrayInputs(pool_images), test, pool_targets, num_classes, transforms)


def mnist(root: str, download: bool = False, fast_path: bool = True) -> ALData:
    """MNIST 60k pool / 10k test, no augmentation."""
    expected = f"MNIST/raw/{{{','.join(IDX_FILES)}}}"
    pool, test = (
        load(datasets.MNIST, "mnist", root, expected, train=split, download=download)
        for split in (True, False)
    )
    return idx_data(pool, test, MNIST_STATS, fast_path)


def idx_data(pool, test, stats: tuple, fast_path: bool) -> ALData:
    """ALData over torchvision's MNIST-format datasets (uint8 `data`, `targets` tensors)."""
    pool_images, pool_targets = pool.data.numpy(), pool.targets.numpy()
    test_images, test_targets = test.data.numpy(), test.targets.numpy()
    return images_data(
        pool_images, pool_targets, test, test_images, test_targets, 10, stats, fast_path
    )


def fashion_mnist(
    root: str,
    download: bool = False,
    system_dir: str = "/usr/share/datasets/fashion-mnist",
    fast_path: bool = True,
) -> ALData:
    """Fashion-MNIST 60k pool / 10k test; also read from the Debian package's IDX files."""
    raw = Path(root) / "FashionMNIST" / "raw"
    if not download and not all((raw / name).exists() for name in IDX_FILES):
        unpack_idx(Path(system_dir), raw)
    fix = ", or install the Debian package: apt-get install dataset-fashion-mnist"
    expected = f"FashionMNIST/raw/{{{','.join(IDX_FILES)}}} (or their .gz in {system_dir})"
    pool, test = (
        load(
            datasets.FashionMNIST,
            "fashion_mnist",
            root,
            expected,
            fix,
            train=split,
            download=download,
        )
        for split in (True, False)
    )
    return idx_data(pool, test, FASHION_MNIST_STATS, fast_path)


def unpack_idx(source: Path, destination: Path) -> None:
    """Decompress `source/*.gz` IDX files into `destination` (once), if they are there."""
    if not all((source / f"{name}.gz").exists() for name in IDX_FILES):
        return
    destination.mkdir(parents=True, exist_ok=True)
    for name in IDX_FILES:
        with gzip.open(source / f"{name}.gz") as packed, open(destination / name, "wb") as out:
            shutil.copyfileobj(packed, out)


def cifar10(
    root: str,
    download: bool = False,
    crop_padding: int = 4,
    reduced_classes: int = 0,
    reduced_size: int | None = None,
    imbalance_seed: int = 0,
    fast_path: bool = True,
) -> ALData:
    """CIFAR-10 50k pool / 10k test; random crop 32 (padding `crop_padding`: 4 as the codes,
    2 as TA-VAAL §4.2's text), flip, per-channel normalisation.

    TA-VAAL's imbalanced variants keep `reduced_size` random images (by `imbalance_seed`) of
    each of the first `reduced_classes` classes: 5 × 500 (×10) or 5 × 50 (×100).
    """
    expected = "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}"
    pool, test = (
        load(datasets.CIFAR10, "cifar10", root, expected, train=split, download=download)
        for split in (True, False)
    )
    images, targets = pool.data, np.asarray(pool.targets)
    if reduced_classes:
        keep = imbalanced_indices(targets, reduced_classes, reduced_size, imbalance_seed)
        images, targets = images[keep], targets[keep]
    test_images, test_targets = test.data, np.asarray(test.targets)
    return images_data(
        images,
        targets,
        test,
        test_images,
        test_targets,
        10,
        CIFAR10_STATS,
        fast_path,
        crop_padding,
        True,
    )


def imbalanced_indices(targets: np.ndarray, classes: int, size: int, seed: int) -> np.ndarray:
    """All indices, except that each class below `classes` keeps `size` random ones."""
    generator = np.random.default_rng(seed)
    kept = [
        generator.choice(np.flatnonzero(targets == c), size, replace=False)
        if c < classes
        else np.flatnonzero(targets == c)
        for c in range(targets.max() + 1)
    ]
    return np.sort(np.concatenate(kept))


def cifar100(
    root: str, download: bool = False, crop_padding: int = 4, fast_path: bool = True
) -> ALData:
    """CIFAR-100 50k pool / 10k test (fine labels), CIFAR augmentation."""
    expected = "cifar-100-python/{train,test,meta}"
    pool, test = (
        load(datasets.CIFAR100, "cifar100", root, expected, train=split, download=download)
        for split in (True, False)
    )
    test_targets = np.asarray(test.targets)
    return images_data(
        pool.data,
        pool.targets,
        test,
        test.data,
        test_targets,
        100,
        CIFAR100_STATS,
        fast_path,
        crop_padding,
        True,
    )


def svhn(
    root: str, download: bool = False, crop_padding: int = 4, fast_path: bool = True
) -> ALData:
    """SVHN 73,257 pool / 26,032 test; random crop (no flip: digits are not symmetric)."""
    pool, test = (
        load(datasets.SVHN, "svhn", root, f"{split}_32x32.mat", split=split, download=download)
        for split in ("train", "test")
    )
    pool_images, test_images = (split.data.transpose(0, 2, 3, 1) for split in (pool, test))
    return images_data(  # stored N×C×H×W
        pool_images,
        pool.labels,
        test,
        test_images,
        test.labels,
        10,
        SVHN_STATS,
        fast_path,
        crop_padding,
    )
