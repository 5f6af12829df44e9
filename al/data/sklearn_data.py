"""Datasets that ship with scikit-learn: runnable anywhere, offline, in seconds."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.datasets import load_digits, make_moons
from sklearn.model_selection import train_test_split

from al.data.base import ALData, ArrayDataset, PixelStats, PoolInputs, TensorInputs

DIGITS_MAX = 16.0  # the images' pixel values are 0 … 16


def digits(test_size: int = 500, split_seed: int = 0) -> ALData:
    """scikit-learn's 1,797 8×8 digit images, split once (stratified, seeded) into pool and test.

    Pixels are scaled by the pool's mean and standard deviation (pixel_stats: of the pixels
    divided by 16, in [0, 1]).
    """
    bunch = load_digits()
    images = bunch.images.astype(np.float32)[:, None]
    pool_x, test_x, pool_y, test_y = train_test_split(
        images, bunch.target, test_size=test_size, stratify=bunch.target, random_state=split_seed
    )
    mean, std = pool_x.mean(), pool_x.std()
    stats = PixelStats((float(mean) / DIGITS_MAX,), (float(std) / DIGITS_MAX,))
    pool = PoolInputs(TensorInputs(torch.from_numpy((pool_x - mean) / std)), pixel_stats=stats)
    test = ArrayDataset(torch.from_numpy((test_x - mean) / std), torch.from_numpy(test_y))
    return ALData(pool, test, np.asarray(pool_y), num_classes=10)


def moons(
    pool_counts: tuple[int, int] = (500, 50),
    test_counts: tuple[int, int] = (500, 50),
    noise: float = 0.2,
    pool_seed: int = 0,
    test_seed: int = 1,
) -> ALData:
    """TA-VAAL's toy problem (§4.1): two moons, noise 0.2, 500 vs 50 samples (×10 imbalance).

    The test set is drawn the same way from another seed.
    """
    pool = _moons_dataset(pool_counts, noise, pool_seed)
    test = _moons_dataset(test_counts, noise, test_seed)
    return ALData(PoolInputs(TensorInputs(pool.x)), test, pool.y.numpy(), num_classes=2)


def _moons_dataset(counts: tuple[int, int], noise: float, seed: int) -> ArrayDataset:
    x, y = make_moons(n_samples=tuple(counts), noise=noise, random_state=seed)
    return ArrayDataset(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y))
