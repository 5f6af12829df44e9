"""Shared pieces of the image datasets: transform views over one loaded copy, the papers'
transforms, and the one error a missing dataset raises."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from al.data.base import ALData, PixelStats, PoolInputs
from al.data.fast import BatchTransform, UInt8Images
from al.errors import ConfigError, DataError


class ImageArrayInputs(Dataset):
    """uint8 images `array[i]` (N×H×W grayscale or N×H×W×C colour) as PIL images; no labels."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.asarray(array)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> Image.Image:
        return Image.fromarray(self.array[index])


class ImageFileInputs(Dataset):
    """Image files `paths[i]` decoded to RGB PIL images; no labels. A file that cannot be read
    stops the run with its path."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        return read_image(self.paths[index])


def read_image(path: str) -> Image.Image:
    """The fully decoded RGB image at `path`, or a DataError naming the file and the fix."""
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"cannot read image {path} ({error}): replace or delete the file, or rerun with "
            "dataset.skip_bad_files=true to leave unreadable files out"
        ) from None


class TransformedView(Dataset):
    """`base[i]` = (image, label) with `transform` applied to the image (labeled test sets)."""

    def __init__(self, base: Dataset, transform: Callable) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int):
        image, label = self.base[index]
        return self.transform(image), label


def to_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageTransforms:
    """Training and test-time transforms, and the per-channel normalisation both end with."""

    train: Callable
    eval: Callable
    stats: PixelStats


def image_transforms(
    mean: Sequence[float],
    std: Sequence[float],
    crop_padding: int | None = None,
    flip: bool = False,
    size: int | None = None,
    rgb: bool = False,
) -> ImageTransforms:
    """Optional resize to `size`×`size` (and RGB), random crop with `crop_padding` and
    horizontal flip for training only, then per-channel normalisation of pixels in [0, 1]."""
    prefix = ([to_rgb] if rgb else []) + ([T.Resize((size, size))] if size else [])
    suffix = [T.ToTensor(), T.Normalize(mean, std)]
    augment = []
    if crop_padding is not None:
        augment.append(T.RandomCrop(size or 32, padding=crop_padding))
    if flip:
        augment.append(T.RandomHorizontalFlip())
    stats = PixelStats(tuple(mean), tuple(std))
    return ImageTransforms(T.Compose(prefix + augment + suffix), T.Compose(prefix + suffix), stats)


def vision_data(
    pool_inputs: Dataset,
    test: Dataset,
    pool_targets: Sequence[int],
    num_classes: int,
    transforms: ImageTransforms,
) -> ALData:
    """ALData over pool inputs that yield PIL images (no labels) and a test set that yields
    (PIL image, label)."""
    return ALData(
        pool=PoolInputs(pool_inputs, transforms.train, transforms.eval, transforms.stats),
        test=TransformedView(test, transforms.eval),
        pool_targets=np.asarray(pool_targets, dtype=np.int64),
        num_classes=num_classes,
    )


def fast_vision_data(
    pool_images: UInt8Images,
    test_images: UInt8Images,
    pool_targets: Sequence[int],
    test_targets: Sequence[int],
    num_classes: int,
    stats: PixelStats,
    crop_padding: int | None = None,
    flip: bool = False,
) -> ALData:
    """ALData on the fast path (al.data.fast): decoded uint8 images, batched transforms — the
    same augmentation and normalisation as `image_transforms(mean, std, crop_padding, flip)`."""
    train = BatchTransform(stats, crop_padding, flip)
    evaluate = BatchTransform(stats)
    test = PoolInputs(test_images, evaluate, evaluate, stats)
    test_labels = np.asarray(test_targets, dtype=np.int64)
    return ALData(
        pool=PoolInputs(pool_images, train, evaluate, stats),
        test=test.labeled(range(len(test_images)), test_labels, train=False),
        pool_targets=np.asarray(pool_targets, dtype=np.int64),
        num_classes=num_classes,
    )


def missing_dataset(
    name: str, path: Path, expected: str, extra_fix: str = "", how_to_get: str | None = None
) -> ConfigError:
    """The error of a dataset not found at `path`; `how_to_get` replaces the download hint for
    data that cannot be downloaded."""
    get = how_to_get or "rerun with dataset.download=true where the internet is reachable"
    return ConfigError(
        f"dataset '{name}' not found: looked in {path} for {expected}. Put the files there, "
        f"point dataset.root (or the AL_DATA environment variable) at them, or {get}{extra_fix}"
    )
