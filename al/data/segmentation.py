"""Segmentation data: images with a mask of class labels per pixel.

The oracle's masks (`MaskTargets`) are read lazily — Cityscapes' do not fit in memory — and a
view cut from them (`targets[indices]`) holds the masks of those samples only: the datamodule
gets such a view for the labeled samples, never the pool's. Training transforms act on an image
and its mask together (the same crop and flip).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms.functional import pil_to_tensor

from al.data.base import ALData, PixelStats, PoolInputs, PoolView


class Masks(Protocol):
    """Masks in global order: `masks[i]` is an (H, W) integer array or tensor of class ids
    (`ignore_index` where unlabeled); `take(positions)` the masks at `positions` only."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> np.ndarray | torch.Tensor: ...

    def take(self, positions: np.ndarray) -> Masks: ...


class MaskArray:
    """In-memory masks (N, H, W); `take` copies the ones asked for."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = np.asarray(array)

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.array[index]

    def take(self, positions: np.ndarray) -> MaskArray:
        return MaskArray(self.array[positions])


class MaskTargets:
    """The pool's masks as the oracle holds them, indexed like a label array:
    `targets[indices]` is a MaskTargets of those samples alone (it reaches no other mask)."""

    def __init__(self, masks: Masks, ignore_index: int = 255) -> None:
        self.masks, self.ignore_index = masks, ignore_index
        self._counts: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, indices: Sequence[int]) -> MaskTargets:
        positions = np.asarray(indices, dtype=np.int64)
        return MaskTargets(self.masks.take(positions), self.ignore_index)

    def mask(self, position: int) -> torch.Tensor:
        """The mask of sample `position` as an (H, W) int64 tensor."""
        return torch.as_tensor(np.asarray(self.masks[position]), dtype=torch.int64)

    def pixel_counts(self, indices: Sequence[int], num_classes: int) -> np.ndarray:
        """Labeled pixels per class over the masks at `indices` (each mask counted once and
        remembered: every stage re-counts the labeled pool)."""
        total = np.zeros(num_classes, dtype=np.int64)
        for index in np.asarray(indices, dtype=np.int64).tolist():
            if index not in self._counts:
                mask = self.mask(index)
                labeled = mask[mask != self.ignore_index]
                self._counts[index] = np.bincount(labeled.numpy())
            counts = self._counts[index][:num_classes]
            total[: len(counts)] += counts
        return total


def image_tensor(image: Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """A PIL image, an (H, W, C) uint8 array or a (C, H, W) tensor as a (C, H, W) tensor."""
    if isinstance(image, Image.Image):
        return pil_to_tensor(image)
    if isinstance(image, np.ndarray):
        array = image if image.ndim == 3 else image[..., None]
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))
    return image


@dataclass(frozen=True)
class SegmentationTransforms:
    """Pixels in [0, 1] (uint8 images / 255) normalised by `stats`; for training, a random
    `crop`×`crop` window (images smaller than it padded with 0, masks with `ignore_index`;
    None: the whole image) and a horizontal flip with probability ½ (`flip`), the same for
    the image and its mask. Test time: the whole image, normalised."""

    stats: PixelStats
    crop: int | None = None
    flip: bool = True
    ignore_index: int = 255

    def eval(self, image) -> torch.Tensor:
        x = image_tensor(image)
        pixels = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        return self.stats.to_inputs(pixels[None])[0]

    def train(self, image, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = image_tensor(image)
        if self.crop is not None:
            x, mask = self.random_crop(x, mask)
        if self.flip and torch.rand(()) < 0.5:
            x, mask = x.flip(-1), mask.flip(-1)
        return self.eval(x), mask

    def random_crop(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pad_h, pad_w = max(self.crop - x.shape[1], 0), max(self.crop - x.shape[2], 0)
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), value=0)
            mask = F.pad(mask, (0, pad_w, 0, pad_h), value=self.ignore_index)
        top = int(torch.randint(x.shape[1] - self.crop + 1, ()))
        left = int(torch.randint(x.shape[2] - self.crop + 1, ()))
        window = (slice(top, top + self.crop), slice(left, left + self.crop))
        return x[:, window[0], window[1]], mask[window[0], window[1]]


class MaskedView(PoolView):
    """`(x, mask)` of the pool positions `indices`, with their masks (`masks`, cut to those
    samples) and the training or test-time transforms."""

    def __init__(
        self,
        inputs: Dataset,
        transforms: SegmentationTransforms,
        indices: Sequence[int],
        masks: MaskTargets,
        train: bool,
    ) -> None:
        super().__init__(inputs, None, indices)
        if len(self.indices) != len(masks):
            raise ValueError(f"{len(self.indices)} images but {len(masks)} masks")
        self.masks, self.transforms, self.train = masks, transforms, train

    def __getitems__(self, positions: list[int]) -> list:
        """Per sample: the joint transforms crop each image and its mask together."""
        return [self[position] for position in positions]

    def __getitem__(self, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.input(position), self.masks.mask(position)
        if self.train:
            return self.transforms.train(image, mask)
        return self.transforms.eval(image), mask


class SegmentationPoolInputs(PoolInputs):
    """The pool's images; labeled views pair them with their masks under joint transforms."""

    def __init__(self, inputs: Dataset, transforms: SegmentationTransforms) -> None:
        super().__init__(inputs, transforms.eval, transforms.eval, transforms.stats)
        self.transforms = transforms

    def labeled(
        self, indices: Sequence[int], labels: MaskTargets, train: bool = True
    ) -> MaskedView:
        return MaskedView(self.inputs, self.transforms, indices, labels, train)

    def batch_training_transform(self) -> None:
        """None: the joint image/mask transforms run per sample, in the loader."""
        return None

    def subset(self, positions: Sequence[int]) -> SegmentationPoolInputs:
        return SegmentationPoolInputs(
            torch.utils.data.Subset(self.inputs, positions), self.transforms
        )


def segmentation_data(
    pool_images: Dataset,
    pool_masks: Masks,
    test_images: Dataset,
    test_masks: Masks,
    num_classes: int,
    transforms: SegmentationTransforms,
) -> ALData:
    """ALData over images (PIL, (H, W, C) uint8 arrays or (C, H, W) tensors) and masks."""
    ignore = transforms.ignore_index
    pool = SegmentationPoolInputs(pool_images, transforms)
    test_targets = MaskTargets(test_masks, ignore)
    test = MaskedView(test_images, transforms, range(len(test_images)), test_targets, False)
    return ALData(pool, test, MaskTargets(pool_masks, ignore), num_classes)
