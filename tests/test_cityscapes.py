"""Cityscapes read by the real loader from a tiny copy in its on-disk layout: label ids mapped
to train ids, lazy per-sample masks, joint crops; the config composes and builds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from al.build import build_data
from al.data.cityscapes import (
    MEAN,
    STD,
    TRAIN_ID_CLASS_NAMES,
    cityscapes,
    label_id_to_train_id,
)
from al.errors import ConfigError

from conftest import compose_config

SIZE = (16, 32)  # H, W
# Label ids → train ids (cityscapesScripts' labels.py): unlabeled, static → 255; road 0,
# sidewalk 1, car 13, bicycle 18; 255 (not a label id) → 255.
EXPECTED = {0: 255, 4: 255, 7: 0, 8: 1, 26: 13, 33: 18, 255: 255}
# Cities and frames per split; pool/test order is by path.
FILES = {
    "train": [("aachen", 1), ("aachen", 2), ("bochum", 1)],
    "val": [("frankfurt", 1), ("lindau", 1)],
}


def write_sample(root: Path, split: str, city: str, frame: int, seed: int):
    """One image and its label-id mask in the Cityscapes layout; returns both arrays."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    label_ids = rng.choice(list(EXPECTED), SIZE).astype(np.uint8)
    stem = f"{city}_000000_{frame:06d}"
    for folder, name, array in (
        ("leftImg8bit", f"{stem}_leftImg8bit.png", image),
        ("gtFine", f"{stem}_gtFine_labelIds.png", label_ids),
    ):
        path = root / folder / split / city / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)
    return image, label_ids


@pytest.fixture(scope="module")
def fake_cityscapes(tmp_path_factory):
    """A Cityscapes root; returns it and {split: [(image, label_ids)] in path order}."""
    root = tmp_path_factory.mktemp("cityscapes")
    samples = {
        split: [
            write_sample(root, split, city, frame, seed) for seed, (city, frame) in enumerate(files)
        ]
        for split, files in FILES.items()
    }
    return root, samples


def normalised(image: np.ndarray) -> torch.Tensor:
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    return (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def train_ids(label_ids: np.ndarray) -> np.ndarray:
    return np.vectorize(EXPECTED.get)(label_ids).astype(np.uint8)


def test_the_lookup_table_maps_label_ids_to_the_19_train_ids():
    assert len(TRAIN_ID_CLASS_NAMES) == 19
    assert TRAIN_ID_CLASS_NAMES[:2] == ("road", "sidewalk")
    assert TRAIN_ID_CLASS_NAMES[13] == "car" and TRAIN_ID_CLASS_NAMES[-1] == "bicycle"
    assert label_id_to_train_id.shape == (256,) and label_id_to_train_id.dtype == np.uint8
    assert sorted(label_id_to_train_id[label_id_to_train_id != 255]) == list(range(19))
    for label_id, train_id in EXPECTED.items():
        assert label_id_to_train_id[label_id] == train_id


def test_the_loader_reads_images_and_masks_mapped_to_train_ids(fake_cityscapes):
    root, samples = fake_cityscapes
    data = cityscapes(str(root))
    assert (len(data.pool_targets), len(data.test), data.num_classes) == (3, 2, 19)
    for position, (image, label_ids) in enumerate(samples["train"]):
        mask = data.pool_targets.mask(position)
        assert mask.dtype == torch.int64
        assert np.array_equal(mask.numpy(), train_ids(label_ids))
        x, index = data.pool.unlabeled([position])[0]
        assert index == position
        assert torch.allclose(x, normalised(image), atol=1e-5)
    x, mask = data.test[1]
    image, label_ids = samples["val"][1]
    assert torch.allclose(x, normalised(image), atol=1e-5)
    assert np.array_equal(mask.numpy(), train_ids(label_ids))


def test_a_view_of_labeled_masks_holds_only_its_own(fake_cityscapes):
    root, _ = fake_cityscapes
    targets = cityscapes(str(root)).pool_targets
    view = targets[[1]]
    assert len(view) == 1 and len(view.masks.paths) == 1
    assert view.masks.paths[0].endswith("aachen_000000_000002_gtFine_labelIds.png")
    assert torch.equal(view.mask(0), targets.mask(1))
    with pytest.raises(IndexError):
        view.mask(1)


def test_a_crop_larger_than_the_image_pads_image_with_0_and_mask_with_255(fake_cityscapes):
    root, samples = fake_cityscapes
    data = cityscapes(str(root), crop=40, flip=False)
    x, mask = data.pool.labeled([2], data.pool_targets[[2]])[0]
    image, label_ids = samples["train"][2]
    assert x.shape == (3, 40, 40) and mask.shape == (40, 40)
    height, width = SIZE
    assert torch.allclose(x[:, :height, :width], normalised(image), atol=1e-5)
    black = normalised(np.zeros((1, 1, 3), dtype=np.uint8))
    assert torch.allclose(x[:, height:], black.expand(3, 40 - height, 40), atol=1e-5)
    assert torch.allclose(x[:, :, width:], black.expand(3, 40, 40 - width), atol=1e-5)
    assert np.array_equal(mask[:height, :width].numpy(), train_ids(label_ids))
    assert (mask[height:] == 255).all() and (mask[:, width:] == 255).all()


def windows(x: torch.Tensor, full: torch.Tensor) -> list[tuple[int, int]]:
    """(top, left) of every window of `full` equal to `x`."""
    crop = x.shape[-1]
    return [
        (top, left)
        for top in range(full.shape[1] - crop + 1)
        for left in range(full.shape[2] - crop + 1)
        if torch.allclose(full[:, top : top + crop, left : left + crop], x, atol=1e-5)
    ]


def test_training_crops_and_flips_image_and_mask_together(fake_cityscapes):
    root, samples = fake_cityscapes
    data = cityscapes(str(root), crop=8, flip=True)
    view = data.pool.labeled([0, 1, 2], data.pool_targets[[0, 1, 2]])
    torch.manual_seed(0)
    flips = set()
    for _ in range(4):
        for position, (image, label_ids) in enumerate(samples["train"]):
            x, mask = view[position]
            assert x.shape == (3, 8, 8) and mask.shape == (8, 8)
            full, full_mask = normalised(image), torch.from_numpy(train_ids(label_ids)).long()
            found = windows(x, full)
            flips.add(not found)
            if not found:
                full, full_mask = full.flip(-1), full_mask.flip(-1)
                found = windows(x, full)
            assert len(found) == 1
            top, left = found[0]
            assert torch.equal(mask, full_mask[top : top + 8, left : left + 8])
    assert flips == {False, True}


def test_a_missing_root_and_download_name_the_files_and_the_fix(tmp_path):
    with pytest.raises(ConfigError) as error:
        cityscapes(str(tmp_path / "nowhere"))
    message = str(error.value)
    assert "dataset 'cityscapes' not found" in message and str(tmp_path / "nowhere") in message
    assert "leftImg8bit/train and gtFine/train" in message
    assert "cityscapes-dataset.com" in message
    (tmp_path / "leftImg8bit" / "train" / "aachen").mkdir(parents=True)
    (tmp_path / "gtFine" / "train" / "aachen").mkdir(parents=True)
    with pytest.raises(ConfigError, match="not found"):
        cityscapes(str(tmp_path))
    with pytest.raises(ConfigError, match=r"needs a login at https://www\.cityscapes-dataset\.com"):
        cityscapes(str(tmp_path), download=True)


def test_the_config_composes_and_builds_the_segmentation_task(fake_cityscapes):
    cfg = compose_config("dataset=cityscapes")
    assert cfg.dataset.num_classes == 19
    assert list(cfg.dataset.class_names) == list(TRAIN_ID_CLASS_NAMES)
    assert cfg.dataset.task._target_ == "al.tasks.segmentation.Segmentation"
    assert cfg.dataset.task.ignore_index == 255
    assert cfg.model._target_ == "al.models.drn.DrnD22Seg"
    assert cfg.dataset.build.crop == 412
    root, _ = fake_cityscapes
    cfg = compose_config(
        "dataset=cityscapes",
        f"dataset.root={root}",
        "dataset.input_shape=[3,16,32]",
        "dataset.pool_size=3",
    )
    data = build_data(cfg.dataset)
    assert data.task.ignore_index == 255 and len(data.pool_targets) == 3
