"""Cityscapes (Cordts et al., CVPR 2016) for semantic segmentation, fine annotations: pool =
the train split (2,975 images), test = val (500), 1024×2048 RGB. torchvision's `Cityscapes`
lists the files; masks are its `*_gtFine_labelIds.png`, mapped to the 19 train ids (255:
ignored) by the table in its `classes`, and read one at a time, only for the samples asked.

Files (after a login at cityscapes-dataset.com): ROOT/leftImg8bit/{train,val}/<city>/
*_leftImg8bit.png and ROOT/gtFine/{train,val}/<city>/*_gtFine_labelIds.png, or the zips
leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip in ROOT (torchvision unpacks them).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import Cityscapes

from al.data.base import ALData, PixelStats
from al.data.segmentation import SegmentationTransforms, segmentation_data
from al.data.vision import missing_dataset
from al.errors import ConfigError, DataError

IGNORE_INDEX = 255
# fyu/drn datasets/cityscapes/info.json: the Cityscapes train images' per-channel statistics.
MEAN = (0.290101, 0.328081, 0.286964)
STD = (0.182954, 0.186566, 0.184475)
HOW_TO_GET = (
    "it needs a login at https://www.cityscapes-dataset.com/downloads/; download "
    "leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip there and put them (or the "
    "leftImg8bit/ and gtFine/ folders they hold) in {root}"
)
EVALUATED = sorted(
    (c for c in Cityscapes.classes if 0 <= c.train_id < IGNORE_INDEX), key=lambda c: c.train_id
)
TRAIN_ID_CLASS_NAMES = tuple(c.name for c in EVALUATED)


def train_id_table() -> np.ndarray:
    """256-entry uint8 lookup table: label id → train id (255 for every id not evaluated)."""
    table = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    for c in EVALUATED:
        table[c.id] = c.train_id
    return table


label_id_to_train_id = train_id_table()


def read_png(path: str, mode: str) -> Image.Image:
    """The fully decoded image at `path` in `mode`, or a DataError naming the file."""
    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except (OSError, SyntaxError, ValueError) as error:
        raise DataError(
            f"cannot read Cityscapes file {path} ({error}): replace it from the Cityscapes zips"
        ) from None


class CityscapesImages(Dataset):
    """The images `paths[i]` as RGB PIL images; no labels."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Image.Image:
        return read_png(self.paths[index], "RGB")


class CityscapesMasks:
    """Label-id masks `paths[i]`, read on demand as (H, W) uint8 train ids (the `Masks`
    protocol); `take` keeps only the paths asked for."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        return label_id_to_train_id[np.asarray(read_png(self.paths[index], "L"))]

    def take(self, positions: np.ndarray) -> CityscapesMasks:
        return CityscapesMasks([self.paths[i] for i in np.asarray(positions).tolist()])


def split_files(root: str, split: str) -> tuple[list[str], list[str]]:
    """The images of `split` and their label-id masks, sorted by path (torchvision lists
    them in the file system's order)."""
    try:
        files = Cityscapes(root, split=split, mode="fine", target_type="semantic")
    except RuntimeError:  # torchvision: "Dataset not found or incomplete"
        files = None
    if files is None or not files.images:
        expected = (
            f"leftImg8bit/{split} and gtFine/{split} "
            "(<city>/*_leftImg8bit.png, <city>/*_gtFine_labelIds.png)"
        )
        how = f"get it: {HOW_TO_GET.format(root='that folder')}"
        raise missing_dataset("cityscapes", Path(root).resolve(), expected, how_to_get=how)
    pairs = sorted(zip(files.images, files.targets, strict=True))
    return [image for image, _ in pairs], [mask for _, (mask,) in pairs]


def cityscapes(
    root: str,
    download: bool = False,
    crop: int | None = 412,
    flip: bool = True,
    mean: Sequence[float] = MEAN,
    std: Sequence[float] = STD,
) -> ALData:
    """Pool = train, test = val; training takes a random `crop`×`crop` window (None: the
    whole image) and, if `flip`, a random horizontal flip; pixels normalised by `mean`, `std`."""
    if download:
        how = HOW_TO_GET.format(root=Path(root).resolve())
        raise ConfigError(
            f"dataset 'cityscapes' cannot be downloaded: {how}, then rerun with "
            "dataset.download=false"
        )
    (pool_images, pool_masks), (test_images, test_masks) = (
        split_files(root, split) for split in ("train", "val")
    )
    stats = PixelStats(tuple(map(float, mean)), tuple(map(float, std)))
    return segmentation_data(
        CityscapesImages(pool_images),
        CityscapesMasks(pool_masks),
        CityscapesImages(test_images),
        CityscapesMasks(test_masks),
        len(TRAIN_ID_CLASS_NAMES),
        SegmentationTransforms(stats, crop=crop, flip=flip, ignore_index=IGNORE_INDEX),
    )
