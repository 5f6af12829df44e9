"""Datasets stored as class folders: Caltech101 (TA-VAAL's split) and a user's image folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Subset
from torchvision import datasets
from torchvision import transforms as T

from al.data.base import ALData
from al.data.vision import image_transforms, missing_dataset, to_rgb, vision_data
from al.errors import ConfigError

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def caltech101(
    root: str,
    download: bool = False,
    image_size: int = 224,
    test_size: int = 1019,
    split_seed: int = 0,
) -> ALData:
    """Caltech101's 9,144 images in 102 folders (101 categories and BACKGROUND_Google, as
    TA-VAAL's 8,125 / 1,019 split counts them), split once, stratified and seeded; resized to
    `image_size`, horizontal flip for training, ImageNet normalisation."""
    if download:
        datasets.Caltech101(root, download=download)
    folder = Path(root) / "caltech101" / "101_ObjectCategories"
    if not folder.is_dir():
        raise missing_dataset(
            "caltech101", folder.resolve(), "one folder of .jpg images per category"
        )
    images = datasets.ImageFolder(str(folder))
    targets = np.asarray(images.targets)
    pool_ids, test_ids = train_test_split(
        np.arange(len(targets)), test_size=test_size, stratify=targets, random_state=split_seed
    )
    pool_ids, test_ids = np.sort(pool_ids), np.sort(test_ids)
    transforms = image_transforms(*IMAGENET_STATS, flip=True, size=image_size, rgb=True)
    pool, test = Subset(images, pool_ids), Subset(images, test_ids)
    return vision_data(pool, test, targets[pool_ids], len(images.classes), transforms)


def image_folder(
    root: str, image_size: int = 32, test_fraction: float = 0.2, split_seed: int = 0
) -> ALData:
    """`root/train/<class>/*` and `root/test/<class>/*` (without a test folder: a seeded,
    stratified `test_fraction` of train), resized to `image_size`, RGB, flip for training,
    normalised by the pool's per-channel statistics (cached in `root`)."""
    train_dir, test_dir = Path(root) / "train", Path(root) / "test"
    if not train_dir.is_dir():
        raise ConfigError(
            f"dataset 'image_folder' not found: looked in {train_dir.resolve()} for one folder "
            "of images per class (and optionally test/<class>/); set dataset.root to the folder"
        )
    images = datasets.ImageFolder(str(train_dir))
    targets = np.asarray(images.targets)
    if test_dir.is_dir():
        pool, test = images, datasets.ImageFolder(str(test_dir))
        if test.classes != images.classes:
            raise ConfigError(
                f"{test_dir} has classes {test.classes} but {train_dir} has {images.classes}"
            )
    else:
        pool_ids, test_ids = train_test_split(
            np.arange(len(targets)),
            test_size=test_fraction,
            stratify=targets,
            random_state=split_seed,
        )
        pool, test = Subset(images, np.sort(pool_ids)), Subset(images, np.sort(test_ids))
        targets = targets[np.sort(pool_ids)]
    mean, std = pool_statistics(
        pool, image_size, Path(root) / f".al-normalization-{image_size}.json"
    )
    transforms = image_transforms(mean, std, flip=True, size=image_size, rgb=True)
    return vision_data(pool, test, targets, len(images.classes), transforms)


def pool_statistics(pool: Dataset, image_size: int, cache: Path) -> tuple[list, list]:
    """Per-channel mean and std of the pool's resized RGB images, cached by pool size."""
    if cache.exists():
        saved = json.loads(cache.read_text())
        if saved["images"] == len(pool):
            return saved["mean"], saved["std"]
    to_tensor = T.Compose([to_rgb, T.Resize((image_size, image_size)), T.ToTensor()])
    total, total_squares = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    for image, _ in pool:
        pixels = to_tensor(image).double().flatten(1)
        total += pixels.sum(1)
        total_squares += pixels.square().sum(1)
    count = len(pool) * image_size * image_size
    mean = total / count
    std = (total_squares / count - mean.square()).clamp(min=1e-12).sqrt()
    mean, std = mean.tolist(), std.tolist()
    cache.write_text(json.dumps({"images": len(pool), "mean": mean, "std": std}))
    return mean, std
