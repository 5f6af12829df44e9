"""Tiny datasets written in their real on-disk formats, for the real loaders to read."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

IDX_NAMES = {
    True: ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    False: ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def labels_for(count: int, classes: int) -> np.ndarray:
    return np.arange(count) % classes


def pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_idx(folder: Path, train: int, test: int, compress: bool = False) -> None:
    """MNIST-format IDX files (big-endian headers, uint8 data), optionally gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if compress else open
    suffix = ".gz" if compress else ""
    for is_train, count in ((True, train), (False, test)):
        images_name, labels_name = IDX_NAMES[is_train]
        with opener(folder / f"{images_name}{suffix}", "wb") as handle:
            handle.write(struct.pack(">IIII", 2051, count, 28, 28))
            handle.write(pixels((count, 28, 28), count).tobytes())
        with opener(folder / f"{labels_name}{suffix}", "wb") as handle:
            handle.write(struct.pack(">II", 2049, count))
            handle.write(labels_for(count, 10).astype(np.uint8).tobytes())


def write_cifar10(root: Path, per_batch: int, test: int) -> dict:
    """cifar-10-batches-py: five training pickles, a test pickle, batches.meta; returns the
    torchvision file lists with the md5 sums of these files."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)]
    for i, name in enumerate(names):
        write_pickle(
            folder / name,
            {"data": pixels((per_batch, 3072), i), "labels": labels_for(per_batch, 10).tolist()},
        )
    write_pickle(
        folder / "test_batch",
        {"data": pixels((test, 3072), 9), "labels": labels_for(test, 10).tolist()},
    )
    write_pickle(folder / "batches.meta", {"label_names": [f"class{c}" for c in range(10)]})
    return {
        "train_list": [[name, md5(folder / name)] for name in names],
        "test_list": [["test_batch", md5(folder / "test_batch")]],
        "meta": {
            "filename": "batches.meta",
            "key": "label_names",
            "md5": md5(folder / "batches.meta"),
        },
    }


def write_cifar100(root: Path, train: int, test: int) -> dict:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    write_pickle(
        folder / "train",
        {"data": pixels((train, 3072), 1), "fine_labels": labels_for(train, 100).tolist()},
    )
    write_pickle(
        folder / "test",
        {"data": pixels((test, 3072), 2), "fine_labels": labels_for(test, 100).tolist()},
    )
    write_pickle(folder / "meta", {"fine_label_names": [f"class{c}" for c in range(100)]})
    return {
        "train_list": [["train", md5(folder / "train")]],
        "test_list": [["test", md5(folder / "test")]],
        "meta": {"filename": "meta", "key": "fine_label_names", "md5": md5(folder / "meta")},
    }


def write_pickle(path: Path, content: dict) -> None:
    with path.open("wb") as handle:
        pickle.dump(content, handle)


def write_svhn(root: Path, train: int, test: int) -> dict:
    """train_32x32.mat / test_32x32.mat: X (32, 32, 3, N) uint8, y (N, 1) with 10 for digit 0."""
    root.mkdir(parents=True, exist_ok=True)
    split_list = {}
    for split, count in (("train", train), ("test", test)):
        path = root / f"{split}_32x32.mat"
        labels = labels_for(count, 10)
        labels[labels == 0] = 10
        scipy.io.savemat(path, {"X": pixels((32, 32, 3, count), count), "y": labels[:, None]})
        split_list[split] = ["", path.name, md5(path)]
    return split_list


def write_image_folders(folder: Path, classes: int, per_class: int, size: int, suffix: str) -> None:
    """folder/<class>/image_NNNN.<suffix>, RGB images of `size` px (grey for class 0)."""
    for c in range(classes):
        (folder / f"class_{c:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image = Image.fromarray(pixels((size, size, 3), c * 1000 + i))
            image = image.convert("L") if c == 0 else image
            image.save(folder / f"class_{c:02d}" / f"image_{i:04d}.{suffix}")
