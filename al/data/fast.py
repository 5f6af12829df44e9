"""The fast data path: a dataset that fits in memory is decoded once into a uint8 tensor, and
its augmentations (random crop of a zero-padded image, horizontal flip) and normalisation run
on whole batches — one tensor operation per batch instead of a PIL pipeline per image.

Views of the pool (`PoolView.__getitems__`) take this path whenever their inputs can be read
as a batch and their transform applies to one; the DataLoader then fetches a batch with one
call. The same tensors reach the training loader, the selectors' loaders and the test set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from al.data.base import PixelStats, TensorInputs


class UInt8Images(TensorInputs):
    """Decoded images (N, C, H, W), uint8; `[i]` is one, `batch(indices)` many (no labels)."""

    def __init__(self, images: torch.Tensor) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4:
            raise ValueError(
                f"expected (N, C, H, W) uint8 images, got {images.dtype} {tuple(images.shape)}"
            )
        super().__init__(images)

    @property
    def images(self) -> torch.Tensor:
        return self.x

    @classmethod
    def from_array(cls, array: np.ndarray, channels_last: bool = True) -> UInt8Images:
        """From N×H×W (grayscale), N×H×W×C (`channels_last`) or N×C×H×W uint8 arrays."""
        array = np.asarray(array)
        if array.ndim == 3:
            array = array[:, None]
        elif channels_last:
            array = array.transpose(0, 3, 1, 2)
        return cls(torch.from_numpy(np.ascontiguousarray(array)))


@dataclass(frozen=True)
class BatchTransform:
    """uint8 images → (training) a random crop of their own size from the image zero-padded by
    `crop_padding` on every side and a horizontal flip with probability ½ → pixels in [0, 1]
    normalised by `stats`: torchvision's RandomCrop(size, padding), RandomHorizontalFlip,
    ToTensor, Normalize, drawn per image from torch's generator of the images' device, applied
    to a whole batch (of uint8 images: a quarter of the memory traffic of floats) in the loader
    or, after the batch's transfer, on the training device (`loader.device_augmentation`)."""

    stats: PixelStats
    crop_padding: int | None = None
    flip: bool = False

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.batch(image[None])[0]

    def batch(self, images: torch.Tensor) -> torch.Tensor:
        if self.crop_padding is not None:
            images = random_crops(images, self.crop_padding)
        if self.flip:
            images = random_flips(images)
        return self.stats.to_inputs(images.float() / 255)


def random_crops(images: torch.Tensor, padding: int) -> torch.Tensor:
    """Each image's window of its own size at a uniformly drawn offset of the image padded
    with `padding` zeros on every side: one gather over the flattened padded images."""
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    padded_width = width + 2 * padding
    device = images.device
    offsets = torch.randint(0, 2 * padding + 1, (batch, 2), device=device)
    rows = offsets[:, :1] + torch.arange(height, device=device)  # (B, H)
    cols = offsets[:, 1:] + torch.arange(width, device=device)  # (B, W)
    index = (rows[:, :, None] * padded_width + cols[:, None, :]).reshape(batch, 1, -1)
    flat = padded.reshape(batch, channels, -1)
    window = flat.gather(2, index.expand(batch, channels, height * width))
    return window.reshape(batch, channels, height, width)


def random_flips(images: torch.Tensor) -> torch.Tensor:
    """Each image mirrored left-right with probability ½."""
    flipped = torch.rand(len(images), device=images.device) < 0.5
    return torch.where(flipped[:, None, None, None], images.flip(-1), images)


def transformed_inputs(batch: Any, transform: BatchTransform) -> Any:
    """A collated training batch — `(x, y)`, `(x, global_index)` or a dict of them (labeled
    and unlabeled) — with every uint8 `x` passed through `transform` (on its device)."""
    if isinstance(batch, Mapping):
        return {key: transformed_inputs(value, transform) for key, value in batch.items()}
    x, *rest = batch
    if x.dtype != torch.uint8:
        return batch
    return type(batch)([transform.batch(x), *rest])
