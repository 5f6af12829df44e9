"""MNIST, Fashion-MNIST, CIFAR-10/100 (and TA-VAAL's imbalanced CIFAR-10) and SVHN, read by
torchvision's own dataset classes from `root` in their original formats."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from torchvision import datasets

from al.data.base import ALData
from al.data.vision import ImageArrayInputs, image_transforms, missing_dataset, vision_data

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


def mnist(root: str, download: bool = False) -> ALData:
    """MNIST 60k pool / 10k test, no augmentation."""
    expected = f"MNIST/raw/{{{','.join(IDX_FILES)}}}"
    pool, test = (
        load(datasets.MNIST, "mnist", root, expected, train=split, download=download)
        for split in (True, False)
    )
    inputs = ImageArrayInputs(pool.data.numpy())
    return vision_data(inputs, test, pool.targets.numpy(), 10, image_transforms(*MNIST_STATS))


def fashion_mnist(
    root: str, download: bool = False, system_dir: str = "/usr/share/datasets/fashion-mnist"
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
    transforms = image_transforms(*FASHION_MNIST_STATS)
    inputs = ImageArrayInputs(pool.data.numpy())
    return vision_data(inputs, test, pool.targets.numpy(), 10, transforms)


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
    transforms = image_transforms(*CIFAR10_STATS, crop_padding=crop_padding, flip=True)
    return vision_data(ImageArrayInputs(images), test, targets, 10, transforms)


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


def cifar100(root: str, download: bool = False, crop_padding: int = 4) -> ALData:
    """CIFAR-100 50k pool / 10k test (fine labels), CIFAR augmentation."""
    expected = "cifar-100-python/{train,test,meta}"
    pool, test = (
        load(datasets.CIFAR100, "cifar100", root, expected, train=split, download=download)
        for split in (True, False)
    )
    transforms = image_transforms(*CIFAR100_STATS, crop_padding=crop_padding, flip=True)
    return vision_data(ImageArrayInputs(pool.data), test, pool.targets, 100, transforms)


def svhn(root: str, download: bool = False, crop_padding: int = 4) -> ALData:
    """SVHN 73,257 pool / 26,032 test; random crop (no flip: digits are not symmetric)."""
    pool, test = (
        load(datasets.SVHN, "svhn", root, f"{split}_32x32.mat", split=split, download=download)
        for split in ("train", "test")
    )
    transforms = image_transforms(*SVHN_STATS, crop_padding=crop_padding)
    images = ImageArrayInputs(pool.data.transpose(0, 2, 3, 1))  # stored N×C×H×W
    return vision_data(images, test, pool.labels, 10, transforms)
