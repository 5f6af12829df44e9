"""Embedding mode (LabelBench's selection via a proxy): a frozen encoder's penultimate features
of the pool, test and validation sets are computed once and cached; every stage then trains a
head on them and every selector scores from them, as on any vector dataset."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset

from al.data import ALData
from al.data.base import ArrayDataset, PoolInputs, TensorInputs
from al.errors import ConfigError
from al.models.backbone import Backbone
from al.runtime import signals


def check_embeddable(data: ALData, embedding: str) -> None:
    if not data.task.one_label_per_sample:
        raise ConfigError(
            f"embedding={embedding} trains a head on one feature vector per sample; "
            f"{data.task.name} needs one per pixel: use embedding=none"
        )


def encoded_tensors(
    data: ALData, encoder: Backbone, device: torch.device, batch_size: int
) -> dict[str, torch.Tensor]:
    """The encoder's features of the pool (test-time transforms), and the test and validation
    sets' features and labels; the pool's labels are not read."""
    encoder = encoder.to(device).eval()
    signals.enter("encoding the pool")
    pool = data.pool.unlabeled(range(len(data.pool)))
    tensors = {"pool": encode(encoder, pool, device, batch_size)[0]}
    for name, split in (("test", data.test), ("validation", data.validation)):
        if split is not None:
            tensors[name], tensors[f"{name}_targets"] = encode(encoder, split, device, batch_size)
    return tensors


def embedded_data(data: ALData, tensors: dict[str, torch.Tensor]) -> ALData:
    """`data` with every input replaced by its encoded features."""
    validation = None
    if "validation" in tensors:
        validation = ArrayDataset(tensors["validation"], tensors["validation_targets"])
    return ALData(
        pool=PoolInputs(TensorInputs(tensors["pool"])),
        test=ArrayDataset(tensors["test"], tensors["test_targets"]),
        pool_targets=data.pool_targets,
        num_classes=data.num_classes,
        validation=validation,
        task=data.task,
    )


@torch.no_grad()
def encode(
    encoder: Backbone, dataset: Dataset, device: torch.device, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The features of a dataset of `(x, y)` pairs (y: a label or a pool index), and its ys."""
    features, second = [], []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        features.append(encoder.embed(x.to(device))[0].float().cpu())
        second.append(torch.as_tensor(y))
    return torch.cat(features), torch.cat(second)
