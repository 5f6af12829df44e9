"""`loader`: training images per second of the per-sample torchvision pipeline
(`dataset.fast_path=false`) against the fast path, on CIFAR-10-format and MNIST-format files
the benchmark writes, read by the real loaders; each batch is moved to the bench's device (on
a GPU the fast path's augmentation then runs there: `loader.device_augmentation=auto`).

The training loader of a stage (random crop and flip for CIFAR, batch 128, shuffled) is
iterated for whole epochs; the ratio is per-sample seconds / fast-path seconds (> 1: faster).
"""

from __future__ import annotations

import hashlib
import pickle
import struct
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from torchvision import datasets

from al.bench.figures import Figure, timed
from al.bench.settings import Settings
from al.data import ALData, datamodule_for
from al.data.fast import transformed_inputs
from al.data.torchvision_data import cifar10, mnist

BATCH = 128


def write_mnist(root: Path, train: int, test: int) -> None:
    """MNIST's four raw IDX files of random pixels."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    generator = np.random.default_rng(0)
    for split, count in (("train", train), ("t10k", test)):
        images = generator.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = np.arange(count, dtype=np.uint8) % 10
        (raw / f"{split}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 2051, count, 28, 28) + images.tobytes()
        )
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 2049, count) + labels.tobytes()
        )


def write_cifar10(root: Path, per_batch: int, test: int) -> dict:
    """cifar-10-batches-py of random pixels; returns torchvision's file lists (with md5s)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    generator = np.random.default_rng(0)
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    for name in names:
        count = test if name == "test_batch" else per_batch
        data = generator.integers(0, 256, (count, 3072), dtype=np.uint8)
        content = {"data": data, "labels": (np.arange(count) % 10).tolist()}
        (folder / name).write_bytes(pickle.dumps(content))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": list("abcdefghij")}))

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    return {
        "train_list": [[name, md5(name)] for name in names[:5]],
        "test_list": [["test_batch", md5("test_batch")]],
        "meta": {"filename": "batches.meta", "key": "label_names", "md5": md5("batches.meta")},
    }


@contextmanager
def fake_data(pool: int):
    """A root holding both formats (`pool` training images each), and CIFAR-10's md5 list."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_mnist(root, pool, 100)
        lists = write_cifar10(root, pool // 5, 100)
        with mock.patch.multiple(datasets.CIFAR10, **lists):
            yield root


def images_per_epoch(data: ALData, device: torch.device, epochs: int) -> Callable[[], int]:
    """One timed call: `epochs` passes of a stage's training loader over the whole pool, each
    batch moved to `device` (and, on an accelerator, augmented there, as in training)."""
    on_accelerator = device.type != "cpu"
    datamodule = datamodule_for(
        data,
        np.arange(len(data.pool)),
        batch_size=BATCH,
        eval_batch_size=256,
        device_augmentation=on_accelerator,
    )

    def iterate() -> int:
        seen = 0
        for _ in range(epochs):
            for batch in datamodule.train_dataloader():
                batch = [part.to(device) for part in batch]
                if datamodule.device_transform is not None:
                    batch = transformed_inputs(batch, datamodule.device_transform)
                seen += len(batch[0])
        return seen

    return iterate


def run(settings: Settings) -> list[Figure]:
    pool, epochs = settings.pick(10_000, 500), settings.pick(2, 1)
    figures = []
    with fake_data(pool) as root:
        for name, build in (("CIFAR-10 format", cifar10), ("MNIST format", mnist)):
            fast = images_per_epoch(build(str(root), fast_path=True), settings.device, epochs)
            slow = images_per_epoch(build(str(root), fast_path=False), settings.device, epochs)
            fast(), slow()  # warm-up
            pairs = [(timed(slow)[0], timed(fast)[0]) for _ in range(settings.repeats)]
            images = pool * epochs
            figures.append(
                Figure(
                    "loader",
                    f"{name}: training loader, {pool} images, batch {BATCH}",
                    "per-sample torchvision pipeline",
                    [s / f for s, f in pairs],
                    {
                        "seconds": [f for _, f in pairs],
                        "baseline_seconds": [s for s, _ in pairs],
                        "fast_images_per_second": [images / f for _, f in pairs],
                        "per_sample_images_per_second": [images / s for s, _ in pairs],
                    },
                    note=f"each batch moved to {settings.device.type}; ratio > 1: faster",
                )
            )
    return figures
