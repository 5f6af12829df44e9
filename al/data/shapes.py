"""shapes_seg: a small, seeded segmentation dataset that ships with the code — filled circles,
squares and triangles of random colours and sizes on striped, noisy backgrounds.

Classes: 0 background, 1 circle, 2 square, 3 triangle. Colour says nothing about the class and
shapes overlap (later ones on top), so a model must learn shape, not colour.
"""

from __future__ import annotations

import numpy as np
import torch

from al.data.base import ALData, PixelStats, TensorInputs
from al.data.segmentation import MaskArray, SegmentationTransforms, segmentation_data

CLASS_NAMES = ("background", "circle", "square", "triangle")


def shape_mask(kind: int, rows: np.ndarray, cols: np.ndarray, cy: float, cx: float, r: float):
    """Pixels of a circle (1), square (2) or upward triangle (3) of radius `r` at (cy, cx)."""
    if kind == 1:
        return (rows - cy) ** 2 + (cols - cx) ** 2 <= r**2
    if kind == 2:
        return (np.abs(rows - cy) <= 0.8 * r) & (np.abs(cols - cx) <= 0.8 * r)
    depth = rows - (cy - r)  # 0 at the apex, 2r at the base
    return (depth >= 0) & (depth <= 2 * r) & (np.abs(cols - cx) <= depth / 2 + 0.5)


def draw_image(rng: np.random.Generator, size: int, max_shapes: int):
    """One (size, size, 3) uint8 image and its (size, size) mask."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    angle, frequency = rng.uniform(0, np.pi), rng.uniform(0.1, 0.5)
    stripes = np.sin(frequency * (rows * np.cos(angle) + cols * np.sin(angle)))
    base, contrast = rng.uniform(0.2, 0.8, size=3), rng.uniform(0.05, 0.25)
    image = base + contrast * stripes[..., None] + rng.normal(0, 0.05, (size, size, 3))
    mask = np.zeros((size, size), dtype=np.uint8)
    for _ in range(rng.integers(1, max_shapes + 1)):
        kind = int(rng.integers(1, len(CLASS_NAMES)))
        r = rng.uniform(0.12, 0.3) * size
        cy, cx = rng.uniform(r, size - r, size=2)
        inside = shape_mask(kind, rows, cols, cy, cx, r)
        image[inside] = rng.uniform(0, 1, size=3) + rng.normal(0, 0.05, (inside.sum(), 3))
        mask[inside] = kind
    return (np.clip(image, 0, 1) * 255).astype(np.uint8), mask


def draw_dataset(count: int, size: int, max_shapes: int, seed: int):
    """`count` images (N, 3, size, size) uint8 and masks (N, size, size), from `seed` alone."""
    rng = np.random.default_rng(seed)
    pairs = [draw_image(rng, size, max_shapes) for _ in range(count)]
    images = np.stack([image for image, _ in pairs]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(images)), np.stack([m for _, m in pairs])


def shapes_seg(
    pool_size: int = 800,
    test_size: int = 200,
    image_size: int = 32,
    max_shapes: int = 3,
    seed: int = 0,
    flip: bool = True,
) -> ALData:
    """The pool and test set, drawn from `seed` (pool first, then test); inputs are the
    pixels normalised by the pool's per-channel mean and std."""
    images, masks = draw_dataset(pool_size + test_size, image_size, max_shapes, seed)
    pixels = images[:pool_size].float() / 255
    mean = tuple(pixels.mean(dim=(0, 2, 3)).tolist())
    std = tuple(pixels.std(dim=(0, 2, 3)).tolist())
    transforms = SegmentationTransforms(PixelStats(mean, std), crop=None, flip=flip)
    return segmentation_data(
        TensorInputs(images[:pool_size]),
        MaskArray(masks[:pool_size]),
        TensorInputs(images[pool_size:]),
        MaskArray(masks[pool_size:]),
        len(CLASS_NAMES),
        transforms,
    )
