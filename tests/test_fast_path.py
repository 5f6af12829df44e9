"""The fast data path against torchvision's per-sample pipeline: the same test-time inputs,
the same distribution of crops and flips, one transform call per batch, seeded; and its
augmentation after the batch's transfer (`loader.device_augmentation`)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset
from torchvision import transforms as T

from al.data import datamodule_for
from al.data.base import PixelStats
from al.data.fast import BatchTransform, UInt8Images, transformed_inputs
from al.data.torchvision_data import cifar10, mnist, svhn
from al.errors import ConfigError
from al.loop import run

from conftest import compose_config, without_timings


@pytest.mark.parametrize("loader", [cifar10, mnist, svhn])
def test_both_paths_give_the_same_test_time_inputs(fake_root, loader):
    fast, slow = loader(str(fake_root), fast_path=True), loader(str(fake_root), fast_path=False)
    assert isinstance(fast.pool.inputs, UInt8Images)
    for position in (0, 7, 39):
        torch.testing.assert_close(
            fast.pool.unlabeled([position])[0][0], slow.pool.unlabeled([position])[0][0]
        )
    fast_x, fast_y = next(iter(DataLoader(fast.test, batch_size=20)))
    slow_x, slow_y = next(iter(DataLoader(slow.test, batch_size=20)))
    torch.testing.assert_close(fast_x, slow_x)
    assert torch.equal(fast_y, slow_y)
    assert np.array_equal(fast.pool_targets, slow.pool_targets)


def crop_histogram(crops: torch.Tensor, padding: int) -> tuple[np.ndarray, float]:
    """Counts of each crop offset (dy, dx) ∈ [−p, p]² and the fraction of flipped crops, read
    off 4×4 crops of the image whose pixels are 1 … 16 (row-major, none 0)."""
    image = torch.arange(1, 17, dtype=torch.float32).reshape(4, 4)
    shifted = {}
    for dy in range(-padding, padding + 1):
        for dx in range(-padding, padding + 1):
            padded = torch.nn.functional.pad(image, (padding,) * 4)
            window = padded[padding + dy : padding + dy + 4, padding + dx : padding + dx + 4]
            shifted[(dy, dx, False)] = window
            shifted[(dy, dx, True)] = window.flip(-1)
    counts = np.zeros((2 * padding + 1, 2 * padding + 1), dtype=np.int64)
    flips = 0
    for crop in crops:
        matches = [key for key, window in shifted.items() if torch.equal(window, crop)]
        dy, dx, flipped = matches[0]  # a symmetric window matches both flips: either counts
        counts[dy + padding, dx + padding] += 1
        flips += flipped
    return counts, flips / len(crops)


def chi_square_of_uniform(counts: np.ndarray) -> float:
    expected = counts.sum() / counts.size
    return float(((counts - expected) ** 2 / expected).sum())


def test_fast_crops_and_flips_are_distributed_as_torchvisions():
    """Both give every offset in [−2, 2]² and a flip equally often; χ² of 25 cells stays far
    below its 0.1 % critical value (51.2) at these seeds, for both."""
    stats, padding, draws = PixelStats((0.0,), (1 / 255,)), 2, 2500
    image = np.arange(1, 17, dtype=np.uint8).reshape(4, 4)
    torch.manual_seed(0)
    fast = BatchTransform(stats, crop_padding=padding, flip=True)
    fast_crops = fast.batch(torch.from_numpy(image)[None, None].expand(draws, 1, 4, 4))
    fast_crops = fast_crops[:, 0].round()
    slow = T.Compose([T.RandomCrop(4, padding=padding), T.RandomHorizontalFlip(), T.PILToTensor()])
    slow_crops = torch.stack([slow(Image.fromarray(image))[0].float() for _ in range(draws)])
    for crops in (fast_crops, slow_crops):
        counts, flipped = crop_histogram(crops, padding)
        assert counts.min() > 0 and chi_square_of_uniform(counts) < 51.2
        assert abs(flipped - 0.5) < 0.04


def test_the_loader_transforms_each_batch_once_and_is_seeded(fake_root, monkeypatch):
    data = cifar10(str(fake_root))
    calls = []
    batch = BatchTransform.batch
    monkeypatch.setattr(
        BatchTransform, "batch", lambda self, x: calls.append(len(x)) or batch(self, x)
    )
    datamodule = datamodule_for(data, np.arange(40), batch_size=16, eval_batch_size=32)
    torch.manual_seed(3)
    first = [x for x, _ in datamodule.train_dataloader()]
    assert calls == [16, 16, 8]
    torch.manual_seed(3)
    again = [x for x, _ in datamodule.train_dataloader()]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.equal(first[0], data.pool.unlabeled(range(16))[0][0])  # augmented


def test_the_fast_path_is_the_default_and_can_be_switched_off():
    for name in ("mnist", "fashion_mnist", "cifar10", "cifar10_imb100", "cifar100", "svhn"):
        assert compose_config(f"dataset={name}").dataset.build.fast_path is True
    cfg = compose_config("dataset=cifar10", "dataset.fast_path=false")
    assert cfg.dataset.build.fast_path is False


def on_device(value: bool | str, data, **kwargs):
    return datamodule_for(
        data, np.arange(40), batch_size=16, eval_batch_size=32, device_augmentation=value, **kwargs
    )


def test_device_augmentation_draws_the_loaders_crops_after_the_transfer(fake_root):
    """The loader serves uint8 images and `on_after_batch_transfer`'s transform gives, from
    the same seed, exactly the batches the loader's own augmentation gives."""
    data = cifar10(str(fake_root))
    torch.manual_seed(3)
    in_loader = list(on_device(False, data).train_dataloader())
    deferred = on_device(True, data)
    torch.manual_seed(3)
    raw = list(deferred.train_dataloader())
    assert all(x.dtype == torch.uint8 for x, _ in raw)
    after = [transformed_inputs(batch, deferred.device_transform) for batch in raw]
    for (x, y), (expected_x, expected_y) in zip(after, in_loader, strict=True):
        assert torch.equal(x, expected_x) and torch.equal(y, expected_y)


def test_labeled_and_unlabeled_batches_are_both_augmented_and_floats_left_alone():
    """The batches of modules that train on unlabeled samples too (M2, ADS): a dict of pairs."""
    transform = BatchTransform(PixelStats((0.5,), (0.5,)))  # no randomness: (x/255 - .5)/.5
    images = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    batch = {"labeled": [images, torch.tensor([1])], "unlabeled": [images, torch.tensor([7])]}
    out = transformed_inputs(batch, transform)
    for key, extra in (("labeled", 1), ("unlabeled", 7)):
        assert out[key][0].tolist() == [[[[-1.0, 1.0]]]] and out[key][1].tolist() == [extra]
    floats = [torch.zeros(1, 1, 1, 2), torch.tensor([0])]
    assert transformed_inputs(floats, transform) is floats


def test_auto_augments_on_the_device_only_on_an_accelerator(fake_root):
    data = cifar10(str(fake_root))
    datamodule = on_device("auto", data)
    assert datamodule.training_transform_on_device() is None  # no trainer yet: the loader
    for device, expected in (("cpu", None), ("cuda", data.pool.train_transform)):
        datamodule.trainer = SimpleNamespace(
            strategy=SimpleNamespace(root_device=torch.device(device))
        )
        assert datamodule.training_transform_on_device() is expected


def test_synthetic_pairs_and_per_sample_pools_keep_the_loaders_augmentation(fake_root):
    data = cifar10(str(fake_root))
    pairs = TensorDataset(torch.zeros(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    assert on_device(True, data, synthetic=pairs).training_transform_on_device() is None
    slow = cifar10(str(fake_root), fast_path=False)
    assert on_device(True, slow).training_transform_on_device() is None


def test_a_run_augmenting_on_the_device_equals_one_augmenting_in_the_loader(fake_root, tmp_path):
    """On the CPU both draw the same crops in the same order (ResNet-18 has no dropout)."""
    runs = {}
    for value in ("true", "false"):
        cfg = compose_config(
            "dataset=cifar10",
            f"dataset.root={fake_root}",
            "dataset.pool_size=50",
            f"loader.device_augmentation={value}",
            "loader.batch_size=8",
            "logger=none",
            "budget.initial=16",
            "budget.query=8",
            "budget.stages=2",
            "trainer.max_epochs=2",
        )
        runs[value] = without_timings(run(cfg, tmp_path / value))
    assert runs["true"] == runs["false"]


@pytest.mark.parametrize("value", ["yes", 1, "none"])
def test_a_bad_device_augmentation_is_refused_before_anything_is_written(value, tmp_path):
    cfg = compose_config(f"loader.device_augmentation={value}")
    with pytest.raises(ConfigError, match=r"loader\.device_augmentation=.* must be true, false"):
        run(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
