"""dataset=imagenet reads a tiny ImageNet written by the test in both layouts (class folders,
and the official archives torchvision's parsers extract), with the standard transforms; it
runs two stages from the command line, and +experiment=dast_al_imagenet pins VAAL's values."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from fake_data import md5
from PIL import Image
from torchvision import transforms as T
from torchvision.datasets import imagenet as torchvision_imagenet

from al.budget import Budget
from al.data.folders import IMAGENET_STATS
from al.data.imagenet import ARCHIVES, imagenet, imagenet_transforms
from al.errors import ConfigError, DataError
from al.loop import run

from conftest import compose_config, read_results, train_command

TINY_TREE = [
    "dataset.pool_size=30",
    "dataset.num_classes=3",
    "dataset.image_size=32",
    "dataset.resize=36",
    "budget.initial=6",
    "budget.query=3",
    "budget.stages=2",
    "trainer.max_epochs=1",
    "loader.batch_size=3",
]

# Devkit ids in an order other than the wnids' (as in the real devkit: id 1 is n02119789), so
# labels by sorted wnid and by devkit id differ.
WNIDS = {1: "n03000003", 2: "n01000001", 3: "n02000002"}
SORTED = sorted(WNIDS.values())
COLOURS = {SORTED[0]: (255, 0, 0), SORTED[1]: (0, 255, 0), SORTED[2]: (0, 0, 255)}
TRAIN_PER_CLASS, VAL_PER_CLASS = 10, 2
VAL_IDS = [3, 1, 2, 2, 3, 1]  # the devkit's ground truth of val images 1…6, by id


def jpeg(wnid: str, index: int) -> bytes:
    """A solid image of the class colour, its size varying with `index` (never square)."""
    buffer = io.BytesIO()
    Image.new("RGB", (40 + 4 * index, 30), COLOURS[wnid]).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def train_images() -> dict[str, list[tuple[str, bytes]]]:
    return {
        wnid: [(f"{wnid}_{i}.JPEG", jpeg(wnid, i)) for i in range(TRAIN_PER_CLASS)]
        for wnid in WNIDS.values()
    }


def val_images() -> list[tuple[str, str, bytes]]:
    """(wnid, file name, bytes) of the val images, named as ILSVRC2012_img_val.tar's."""
    return [
        (WNIDS[i], f"ILSVRC2012_val_{n:08d}.JPEG", jpeg(WNIDS[i], n))
        for n, i in enumerate(VAL_IDS, 1)
    ]


def write_folders(root: Path) -> None:
    """root/train/<wnid>/*.JPEG and root/val/<wnid>/*.JPEG."""
    for wnid, files in train_images().items():
        (root / "train" / wnid).mkdir(parents=True)
        for name, data in files:
            (root / "train" / wnid / name).write_bytes(data)
    for wnid, name, data in val_images():
        (root / "val" / wnid).mkdir(parents=True, exist_ok=True)
        (root / "val" / wnid / name).write_bytes(data)


def add(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def tar_bytes(files: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files:
            add(archive, name, data)
    return buffer.getvalue()


def meta_mat() -> bytes:
    """The devkit's data/meta.mat: a `synsets` struct array, leaves (num_children 0) and one
    inner synset that torchvision leaves out."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children"]
    fields += ["wordnet_height", "num_train_images"]
    synsets = np.zeros(len(WNIDS) + 1, dtype=[(field, object) for field in fields])
    for row, (index, wnid) in enumerate(WNIDS.items()):
        synsets[row] = (index, wnid, f"thing {index}, item", "", 0, np.zeros(0), 0, 10)
    synsets[-1] = (4, "n00000004", "entity", "", 3, np.array([1, 2, 3]), 1, 0)
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"synsets": synsets})
    return buffer.getvalue()


def write_archives(root: Path) -> dict[str, str]:
    """The three official archives in their formats; returns their MD5 sums by kind."""
    root.mkdir(parents=True)
    truth = "".join(f"{i}\n" for i in VAL_IDS).encode()
    with tarfile.open(root / ARCHIVES["devkit"], "w:gz") as devkit:
        add(devkit, "ILSVRC2012_devkit_t12/data/meta.mat", meta_mat())
        add(devkit, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    per_class = [(f"{wnid}.tar", tar_bytes(files)) for wnid, files in train_images().items()]
    (root / ARCHIVES["train"]).write_bytes(tar_bytes(per_class))
    val = [(name, data) for _, name, data in val_images()]
    (root / ARCHIVES["val"]).write_bytes(tar_bytes(val))
    return {kind: md5(root / name) for kind, name in ARCHIVES.items()}


def test_the_folder_layout_reads_labels_by_sorted_wnid_paths_as_bytes(tmp_path):
    write_folders(tmp_path)
    data = imagenet(str(tmp_path), image_size=16, resize=20)
    assert (len(data.pool_targets), len(data.test), data.num_classes) == (30, 6, 3)
    assert data.pool_targets.tolist() == np.repeat([0, 1, 2], TRAIN_PER_CLASS).tolist()
    assert [label for _, label in data.test] == [0, 0, 1, 1, 2, 2]  # sorted wnids, then names
    expected = {c: normalised(COLOURS[wnid]) for c, wnid in enumerate(SORTED)}
    for x, index in data.pool.unlabeled(range(30)):
        assert x.shape == (3, 16, 16)
        assert torch.allclose(x.mean((1, 2)), expected[int(data.pool_targets[index])], atol=0.05)
    for x, label in data.test:
        assert torch.allclose(x.mean((1, 2)), expected[label], atol=0.05)
    paths = data.pool.inputs.relative
    assert paths.dtype.kind == "S" and paths.itemsize == len(f"{SORTED[0]}/{SORTED[0]}_0.JPEG")


def normalised(colour: tuple[int, int, int]) -> torch.Tensor:
    mean, std = (torch.tensor(values) for values in IMAGENET_STATS)
    return (torch.tensor(colour) / 255 - mean) / std


def test_the_official_archives_are_extracted_once_with_the_folder_layout_s_labels(
    tmp_path, monkeypatch
):
    write_folders(tmp_path / "folders")
    from_folders = imagenet(str(tmp_path / "folders"), image_size=16, resize=20)
    root = tmp_path / "archives"
    for kind, digest in write_archives(root).items():
        meta = torchvision_imagenet.ARCHIVE_META[kind]
        monkeypatch.setitem(torchvision_imagenet.ARCHIVE_META, kind, (meta[0], digest))
    data = imagenet(str(root), image_size=16, resize=20)
    assert np.array_equal(data.pool_targets, from_folders.pool_targets)
    assert [y for _, y in data.test] == [y for _, y in from_folders.test] == [0, 0, 1, 1, 2, 2]
    assert sorted(os.listdir(root / "val")) == SORTED
    assert sorted(os.listdir(root / "val" / SORTED[0])) == [
        "ILSVRC2012_val_00000003.JPEG",  # ground truth 2 → n01000001
        "ILSVRC2012_val_00000004.JPEG",
    ]
    for archive in ARCHIVES.values():
        (root / archive).unlink()
    again = imagenet(str(root), image_size=16, resize=20)  # from the extracted folders
    assert np.array_equal(again.pool_targets, data.pool_targets)
    assert not [name for name in os.listdir(root) if ".partial-" in name]


def test_an_archive_failing_its_checksum_stops_and_leaves_no_split_folder(tmp_path):
    write_archives(tmp_path / "archives")
    with pytest.raises(DataError, match=r"cannot extract ImageNet's train split .*image-net\.org"):
        imagenet(str(tmp_path / "archives"))
    assert sorted(os.listdir(tmp_path / "archives")) == sorted(ARCHIVES.values())


def test_a_missing_imagenet_names_both_layouts_and_the_fix(tmp_path):
    with pytest.raises(ConfigError) as error:
        imagenet(str(tmp_path / "none"))
    message = str(error.value)
    assert str((tmp_path / "none").resolve()) in message and "dataset.root" in message
    assert "train/<wnid>/*.JPEG" in message and "val/<wnid>/*.JPEG" in message
    assert all(name in message for name in ARCHIVES.values()) and "image-net.org" in message


def test_the_standard_transforms_resize_crop_and_normalise():
    """Red, green and blue stripes (32 px each, 48 high): resized to a short side of 24, the
    centre crop of 24 keeps 4 red, 16 green and 4 blue columns (away from the stripes' borders,
    which the resize's antialiasing blends)."""
    stripes = np.zeros((48, 96, 3), np.uint8)
    for stripe in range(3):
        stripes[:, 32 * stripe : 32 * (stripe + 1), stripe] = 255
    transforms = imagenet_transforms(image_size=24, resize=24)
    x = transforms.eval(Image.fromarray(stripes))
    assert x.shape == (3, 24, 24)
    for columns, colour in ((range(3), (255, 0, 0)), (range(5, 19), (0, 255, 0))):
        expected = normalised(colour)[:, None, None].expand(3, 24, len(columns))
        assert torch.allclose(x[:, :, list(columns)], expected, atol=1e-5)
    expected = normalised((0, 0, 255))[:, None, None].expand(3, 24, 3)
    assert torch.allclose(x[:, :, 21:], expected, atol=1e-5)
    train = transforms.train.transforms
    assert isinstance(train[0], T.RandomResizedCrop) and train[0].size == (24, 24)
    assert isinstance(train[1], T.RandomHorizontalFlip)
    assert transforms.stats.mean == IMAGENET_STATS[0] and transforms.stats.std == IMAGENET_STATS[1]
    torch.manual_seed(0)
    crops = [transforms.train(Image.fromarray(stripes)) for _ in range(5)]
    assert all(crop.shape == (3, 24, 24) for crop in crops)
    assert not all(torch.equal(crops[0], crop) for crop in crops)


def test_two_stages_run_from_the_command_line_on_a_tiny_tree(tmp_path):
    write_folders(tmp_path / "imagenet")
    result = train_command(
        tmp_path / "run",
        "dataset=imagenet",
        f"dataset.root={tmp_path / 'imagenet'}",
        *TINY_TREE,
        "model=cnn",
        "loader.num_workers=1",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_results(tmp_path / "run")
    assert [r["n_labeled"] for r in records] == [6, 9]
    assert [sum(r["class_counts"]) for r in records] == [6, 9]
    assert all(len(r["class_counts"]) == 3 for r in records)


def test_dast_al_imagenet_pins_vaal_s_setting_and_its_budget_fits_imagenet():
    cfg = compose_config("+experiment=dast_al_imagenet")
    budget = Budget(**cfg.budget)
    assert (budget.initial, budget.query, budget.stages, budget.subset) == (128120, 64060, 4, None)
    assert budget.resolve(cfg.dataset.pool_size - 128117).total_labels == 384360  # val held out
    assert (cfg.dataset.name, cfg.dataset.pool_size, cfg.dataset.num_classes) == (
        "imagenet",
        1281167,
        1000,
    )
    assert (cfg.model.name, cfg.method.name, cfg.method.module.isda.covariance) == (
        "vgg16_bn",
        "dast_al",
        "diagonal",
    )
    assert (cfg.optimizer.lr, list(cfg.scheduler.milestones), cfg.trainer.max_epochs) == (
        0.01,
        [25, 50, 75],
        100,
    )
    assert (cfg.reinit_each_stage, cfg.eval_model) == (False, "best_val")
    assert compose_config("dataset=imagenet").budget == cfg.budget


def test_dast_al_imagenet_runs_two_stages_on_a_tiny_tree(tmp_path):
    """The experiment's DAST-AL (diagonal ISDA), warm starts and best-validation checkpoints
    on the tiny tree, with torchvision's ResNet-18 in place of VGG-16-BN (seconds, not a
    minute, on a CPU); 10 % of the 30 images held out for validation."""
    write_folders(tmp_path / "imagenet")
    cfg = compose_config(
        "+experiment=dast_al_imagenet",
        f"dataset.root={tmp_path / 'imagenet'}",
        *TINY_TREE,
        "model.name=resnet18",
        "loader.num_workers=0",
        "logger=none",
    )
    records = run(cfg, tmp_path / "run")
    assert [r["n_labeled"] for r in records] == [6, 9]
    assert [sum(r["class_counts"]) for r in records] == [6, 9]
