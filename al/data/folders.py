"""Datasets stored as class folders: Caltech101 (TA-VAAL's split) and a user's image folder.

Both decode each image from its file per sample; with `fast_path` every pool and test image is
decoded and resized once instead, into uint8 tensors transformed batch by batch (al.data.fast).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision import transforms as T
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

from al.data.base import ALData, PixelStats
from al.data.fast import UInt8Images
from al.data.vision import (
    ImageFileInputs,
    fast_vision_data,
    image_transforms,
    missing_dataset,
    read_image,
    vision_data,
)
from al.errors import ConfigError, DataError, StorageError
from al.store import atomic_write_text

log = logging.getLogger(__name__)
IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class ImageFiles(Dataset):
    """Labeled image files as `(PIL image, label)`: the test sets of class folders."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray) -> None:
        self.paths, self.labels = list(paths), np.asarray(labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return read_image(self.paths[index]), int(self.labels[index])


def class_folder(folder: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(class names, image paths, labels) of `folder/<class>/*`, sorted as torchvision's
    ImageFolder; an empty class folder or a folder without classes is a DataError."""
    try:
        classes, class_to_index = find_classes(str(folder))
    except FileNotFoundError:
        raise DataError(
            f"{folder} holds no class folders: put the images of each class in "
            f"{folder}/<class>/ (extensions {', '.join(IMG_EXTENSIONS)})"
        ) from None
    samples = make_dataset(str(folder), class_to_index, IMG_EXTENSIONS, allow_empty=True)
    paths = [path for path, _ in samples]
    labels = np.array([label for _, label in samples], dtype=np.int64)
    present = set(labels.tolist())
    empty = [name for name in classes if class_to_index[name] not in present]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(str(folder / name) for name in empty)} hold no images "
            f"({', '.join(IMG_EXTENSIONS)}): add images or remove the empty folder(s)"
        )
    return classes, paths, labels


def caltech101(
    root: str,
    download: bool = False,
    image_size: int = 224,
    test_size: int = 1019,
    split_seed: int = 0,
    fast_path: bool = False,
) -> ALData:
    """Caltech101's 9,144 images in 102 folders (101 categories and BACKGROUND_Google, as
    TA-VAAL's 8,125 / 1,019 split counts them), split once, stratified and seeded; resized to
    `image_size`, horizontal flip for training, ImageNet normalisation. `fast_path` decodes
    pool and test once (at 224 px, 1.4 GB in memory)."""
    if download:
        datasets.Caltech101(root, download=download)
    folder = Path(root) / "caltech101" / "101_ObjectCategories"
    if not folder.is_dir():
        raise missing_dataset(
            "caltech101", folder.resolve(), "one folder of .jpg images per category"
        )
    classes, paths, targets = class_folder(folder)
    pool_ids, test_ids = train_test_split(
        np.arange(len(targets)), test_size=test_size, stratify=targets, random_state=split_seed
    )
    pool_ids, test_ids = np.sort(pool_ids), np.sort(test_ids)
    if fast_path:
        return decoded_data(
            [paths[i] for i in pool_ids],
            targets[pool_ids],
            [paths[i] for i in test_ids],
            targets[test_ids],
            len(classes),
            PixelStats(*IMAGENET_STATS),
            image_size,
        )
    transforms = image_transforms(*IMAGENET_STATS, flip=True, size=image_size, rgb=True)
    pool = ImageFileInputs([paths[i] for i in pool_ids])
    test = Subset(ImageFiles(paths, targets), test_ids)
    return vision_data(pool, test, targets[pool_ids], len(classes), transforms)


def image_folder(
    root: str,
    image_size: int = 32,
    test_fraction: float = 0.2,
    split_seed: int = 0,
    skip_bad_files: bool = False,
    fast_path: bool = False,
) -> ALData:
    """`root/train/<class>/*` and `root/test/<class>/*` (without a test folder: a seeded,
    stratified `test_fraction` of train), resized to `image_size`, RGB, flip for training,
    normalised by the pool's per-channel statistics; `fast_path` decodes the readable images
    once into memory (3 × `image_size`² bytes each).

    Every image is decoded once when the folder is first used (the result and the statistics
    are cached in `root`, keyed by the files' names, sizes and times): an unreadable file stops
    the run with its path, or is left out with a warning under `skip_bad_files`.
    """
    train_dir, test_dir = Path(root) / "train", Path(root) / "test"
    if not train_dir.is_dir():
        raise ConfigError(
            f"dataset 'image_folder' not found: looked in {train_dir.resolve()} for one folder "
            "of images per class (and optionally test/<class>/); set dataset.root to the folder"
        )
    classes, paths, targets = class_folder(train_dir)
    if test_dir.is_dir():
        test_classes, test_paths, test_targets = class_folder(test_dir)
        if test_classes != classes:
            raise DataError(
                f"{test_dir} has classes {test_classes} but {train_dir} has {classes}: give "
                "both the same class folders"
            )
        pool_ids = np.arange(len(paths))
    else:
        pool_ids, test_ids = train_test_split(
            np.arange(len(targets)),
            test_size=test_fraction,
            stratify=targets,
            random_state=split_seed,
        )
        pool_ids, test_ids = np.sort(pool_ids), np.sort(test_ids)
        test_paths, test_targets = [paths[i] for i in test_ids], targets[test_ids]
    pool_paths, pool_targets = [paths[i] for i in pool_ids], targets[pool_ids]
    scan = scanned(Path(root), pool_paths, test_paths, image_size)
    check_bad(scan["bad"], skip_bad_files)
    pool_paths, pool_targets = without_bad(pool_paths, pool_targets, set(scan["bad"]))
    test_paths, test_targets = without_bad(test_paths, test_targets, set(scan["bad"]))
    if fast_path:
        stats = PixelStats(tuple(scan["mean"]), tuple(scan["std"]))
        return decoded_data(
            pool_paths, pool_targets, test_paths, test_targets, len(classes), stats, image_size
        )
    transforms = image_transforms(scan["mean"], scan["std"], flip=True, size=image_size, rgb=True)
    test = ImageFiles(test_paths, test_targets)
    return vision_data(ImageFileInputs(pool_paths), test, pool_targets, len(classes), transforms)


def decoded_data(
    pool_paths: list[str],
    pool_targets: np.ndarray,
    test_paths: list[str],
    test_targets: np.ndarray,
    num_classes: int,
    stats: PixelStats,
    image_size: int,
) -> ALData:
    """ALData on the fast path over the images at the paths, decoded once; flip for training
    and normalisation by `stats`, as the per-sample path."""
    pool, test = decoded(pool_paths, image_size), decoded(test_paths, image_size)
    megabytes = (pool.images.nbytes + test.images.nbytes) / 1e6
    log.info(
        "Fast data path: %d pool and %d test images decoded at %d px, %.1f MB in memory",
        len(pool),
        len(test),
        image_size,
        megabytes,
    )
    return fast_vision_data(pool, test, pool_targets, test_targets, num_classes, stats, flip=True)


def decoded(paths: list[str], image_size: int) -> UInt8Images:
    """The RGB images at `paths`, resized to `image_size` as the per-sample path resizes them."""
    resize = T.Compose([T.Resize((image_size, image_size)), T.PILToTensor()])
    images = torch.empty((len(paths), 3, image_size, image_size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        images[i] = resize(read_image(path))
    return UInt8Images(images)


def without_bad(
    paths: list[str], targets: np.ndarray, bad: set[str]
) -> tuple[list[str], np.ndarray]:
    keep = [i for i, path in enumerate(paths) if path not in bad]
    return [paths[i] for i in keep], targets[keep]


def check_bad(bad: list[str], skip: bool) -> None:
    """Stop naming the unreadable files, or (under `skip`) warn with their count."""
    if not bad:
        return
    if not skip:
        raise DataError(
            f"{len(bad)} unreadable image file(s), e.g. {sorted(bad)[0]}: replace or delete "
            "them, or rerun with dataset.skip_bad_files=true to leave them out"
        )
    log.warning("Skipping %d unreadable image file(s), e.g. %s", len(bad), sorted(bad)[0])


def scanned(root: Path, pool_paths: list[str], test_paths: list[str], image_size: int) -> dict:
    """The unreadable files among pool and test, and the pool's per-channel mean and std of its
    resized RGB images; cached in `root` for unchanged files."""
    cache = root / f".al-normalization-{image_size}.json"
    key = files_fingerprint([*pool_paths, *test_paths])
    saved = cached_scan(cache)
    if saved.get("fingerprint") == key:
        return saved
    bad = [path for path in test_paths if not readable(path)]
    pool_bad, mean, std = pool_statistics(pool_paths, image_size)
    result = {"fingerprint": key, "images": len(pool_paths) - len(pool_bad)}
    result |= {"bad": pool_bad + bad, "mean": mean, "std": std}
    # Runs of a sweep may scan the same folder at once: the atomic write gives each its own
    # temporary file, renamed over the cache, so a reader sees a whole scan or none.
    try:
        atomic_write_text(cache, json.dumps(result))
    except (OSError, StorageError) as error:
        log.warning("Could not cache the image scan in %s (%s); it reruns next time", cache, error)
    return result


def cached_scan(cache: Path) -> dict:
    """The saved scan, or {} when there is none or it does not parse."""
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        return {}


def files_fingerprint(paths: list[str]) -> str:
    """A digest of the files' paths, sizes and modification times."""
    digest = hashlib.sha256()
    for path in paths:
        status = os.stat(path)
        digest.update(f"{path}\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def readable(path: str) -> bool:
    try:
        read_image(path)
    except DataError:
        return False
    return True


def pool_statistics(paths: list[str], image_size: int) -> tuple[list[str], list, list]:
    """(unreadable paths, per-channel mean, per-channel std) of the readable images, resized
    to `image_size` and in RGB."""
    to_tensor = T.Compose([T.Resize((image_size, image_size)), T.ToTensor()])
    total, total_squares = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    bad = []
    for path in paths:
        try:
            pixels = to_tensor(read_image(path)).double().flatten(1)
        except DataError:
            bad.append(path)
            continue
        total += pixels.sum(1)
        total_squares += pixels.square().sum(1)
    count = max(1, len(paths) - len(bad)) * image_size * image_size
    mean = total / count
    std = (total_squares / count - mean.square()).clamp(min=1e-12).sqrt()
    return bad, mean.tolist(), std.tolist()
