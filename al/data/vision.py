"""Shared pieces of the image datasets: transform views over one loaded copy, the papers'
transforms, and the one error a missing dataset raises."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from al.data.base import ALData
from al.errors import ConfigError


class TransformedView(Dataset):
    """`base[i]` = (image, label) with `transform` applied to the image."""

    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def image_transforms(
    mean: Sequence[float],
    std: Sequence[float],
    crop_padding: int | None = None,
    flip: bool = False,
    size: int | None = None,
    rgb: bool = False,
) -> tuple[Callable, Callable]:
    """(training, test-time) transforms: optional resize to `size`×`size` (and RGB), random
    crop with `crop_padding` and horizontal flip for training only, per-channel normalisation."""
    prefix = ([to_rgb] if rgb else []) + ([T.Resize((size, size))] if size else [])
    suffix = [T.ToTensor(), T.Normalize(mean, std)]
    augment = []
    if crop_padding is not None:
        augment.append(T.RandomCrop(size or 32, padding=crop_padding))
    if flip:
        augment.append(T.RandomHorizontalFlip())
    return T.Compose(prefix + augment + suffix), T.Compose(prefix + suffix)


def vision_data(
    pool: Dataset,
    test: Dataset,
    pool_targets: Sequence[int],
    num_classes: int,
    transforms: tuple[Callable, Callable],
) -> ALData:
    """ALData over a pool and a test set that yield (PIL image, label)."""
    train_transform, eval_transform = transforms
    return ALData(
        pool_train=TransformedView(pool, train_transform),
        pool_eval=TransformedView(pool, eval_transform),
        test=TransformedView(test, eval_transform),
        pool_targets=np.asarray(pool_targets, dtype=np.int64),
        num_classes=num_classes,
    )


def missing_dataset(name: str, path: Path, expected: str, extra_fix: str = "") -> ConfigError:
    return ConfigError(
        f"dataset '{name}' not found: looked in {path} for {expected}. Put the files there, "
        f"point dataset.root (or the AL_DATA environment variable) at them, or rerun with "
        f"dataset.download=true where the internet is reachable{extra_fix}"
    )
