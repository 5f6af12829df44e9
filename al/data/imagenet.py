"""ImageNet (ILSVRC-2012 classification): the 1,281,167 training images are the pool, the 50,000
validation images the test set, 1,000 classes; every image is decoded from its JPEG per sample,
in the loader's workers.

`root` holds either layout; what is on disk decides:

- `train/<wnid>/*.JPEG` and `val/<wnid>/*.JPEG` (the extracted layout, validation images
  sorted into class folders): read as class folders.
- the official archives `ILSVRC2012_devkit_t12.tar.gz`, `ILSVRC2012_img_train.tar` and
  `ILSVRC2012_img_val.tar`, where a split's folder is missing: torchvision's ImageNet parsers
  check them (MD5), extract the split once (about 150 GB for both) and sort the validation
  images into class folders by the devkit's ground truth; later runs read the folders.

Labels are the sorted wnids' positions (torchvision's ImageNet and ImageFolder order), so both
layouts give the same labels. Nothing is downloaded: the archives need a login at image-net.org.

Memory per pool sample: its path relative to `train/` in one numpy byte-string array (the
longest relative path's bytes, about 30: `n01440764/n01440764_10026.JPEG`) and its int64 label:
about 38 bytes, 49 MB for the pool. No Python object per sample, so forked loader workers share
these pages instead of copying them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.datasets import imagenet as torchvision_imagenet

from al.data.base import ALData, PixelStats
from al.data.folders import IMAGENET_STATS, class_folder
from al.data.vision import ImageTransforms, missing_dataset, read_image, vision_data
from al.errors import DataError

ARCHIVES = {name: meta[0] for name, meta in torchvision_imagenet.ARCHIVE_META.items()}
EXPECTED = (
    "train/<wnid>/*.JPEG and val/<wnid>/*.JPEG, or the archives "
    f"{ARCHIVES['devkit']}, {ARCHIVES['train']} and {ARCHIVES['val']}"
)
HOW_TO_GET = "download the archives from image-net.org (a login; al never downloads them)"
PARSERS: dict[str, Callable[..., None]] = {
    "train": torchvision_imagenet.parse_train_archive,
    "val": torchvision_imagenet.parse_val_archive,
}


class ImagePaths(Dataset):
    """The files `folder/relative[i]` as RGB PIL images; no labels. `relative` is one numpy
    byte-string array: its itemsize in bytes per sample, no Python object per sample."""

    def __init__(self, folder: Path, relative: np.ndarray) -> None:
        self.folder, self.relative = os.fsencode(folder), relative

    def __len__(self) -> int:
        return len(self.relative)

    def __getitem__(self, index: int) -> Image.Image:
        return read_image(os.fsdecode(os.path.join(self.folder, self.relative[index])))


class LabeledImagePaths(Dataset):
    """`(image, label)` of `images[i]` and `labels[i]`: the test set."""

    def __init__(self, images: ImagePaths, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        return self.images[index], int(self.labels[index])


def imagenet(root: str, image_size: int = 224, resize: int = 256) -> ALData:
    """ALData of ImageNet in `root` (either layout, see the module): training with a random
    resized crop to `image_size` and a horizontal flip, test time with a resize of the short
    side to `resize` and a centre crop to `image_size`; ImageNet's mean and std."""
    folder = Path(root).expanduser()
    classes, pool_paths, pool_targets = split_files(folder, "train")
    test_classes, test_paths, test_targets = split_files(folder, "val")
    if test_classes != classes:
        raise DataError(
            f"{folder / 'val'} has {len(test_classes)} class folders, {folder / 'train'} has "
            f"{len(classes)}, or other names: give both the same <wnid> folders"
        )
    test = LabeledImagePaths(test_paths, test_targets)
    transforms = imagenet_transforms(image_size, resize)
    return vision_data(pool_paths, test, pool_targets, len(classes), transforms)


def imagenet_transforms(image_size: int, resize: int) -> ImageTransforms:
    """The standard ImageNet transforms (VAAL's code trains with the first)."""
    normalize = [T.ToTensor(), T.Normalize(*IMAGENET_STATS)]
    train = [T.RandomResizedCrop(image_size), T.RandomHorizontalFlip()]
    evaluate = [T.Resize(resize), T.CenterCrop(image_size)]
    return ImageTransforms(
        T.Compose(train + normalize), T.Compose(evaluate + normalize), PixelStats(*IMAGENET_STATS)
    )


def split_files(root: Path, split: str) -> tuple[list[str], ImagePaths, np.ndarray]:
    """(wnids, images, labels) of `root/split/<wnid>/*`, extracted from the archives first
    where the folder is missing."""
    folder = root / split
    if not folder.is_dir():
        extract(root, split)
    classes, paths, labels = class_folder(folder)
    prefix = len(str(folder)) + 1
    relative = np.array([os.fsencode(path[prefix:]) for path in paths])
    return classes, ImagePaths(folder, relative), labels


def extract(root: Path, split: str) -> None:
    """`root/split/<wnid>/` from the official archives, by torchvision's ImageNet parsers:
    into a folder of this process first (removed if the extraction fails or is stopped),
    renamed when whole, so that no run ever reads a partly extracted split."""
    needed = [ARCHIVES["devkit"], ARCHIVES[split]]
    if not all((root / name).is_file() for name in needed):
        raise missing_dataset("imagenet", root.resolve(), EXPECTED, how_to_get=HOW_TO_GET)
    partial = f".{split}.partial-{os.getpid()}"
    try:
        if not (root / torchvision_imagenet.META_FILE).is_file():
            torchvision_imagenet.parse_devkit_archive(str(root))
        PARSERS[split](str(root), folder=partial)
    except BaseException as error:  # a stopped run leaves no partial copy either
        shutil.rmtree(root / partial, ignore_errors=True)
        if not isinstance(error, RuntimeError):  # RuntimeError: torchvision's MD5 check
            raise
        raise DataError(
            f"cannot extract ImageNet's {split} split in {root}: {error} Download the archive "
            f"again from image-net.org, or put its images in {root / split}/<wnid>/ yourself"
        ) from None
    try:
        (root / partial).rename(root / split)
    except OSError:
        if not (root / split).is_dir():
            raise
        shutil.rmtree(root / partial)  # another run finished first
