"""Synthetic pools for the selection and scale suites, served through al's own loaders."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import Dataset

from al.bench.overhead import stage_config
from al.bench.settings import Settings
from al.build import build_module
from al.data import ALDataModule
from al.data.base import PoolInputs, TensorInputs
from al.methods.selector import SelectionRequest

SHAPE = (1, 8, 8)  # digits-sized inputs for the default SmallCNN


class StreamedInputs(Dataset):
    """`size` synthetic inputs, each drawn on request from a generator seeded by its index:
    the pool is never one array in memory."""

    def __init__(self, size: int, seed: int = 0) -> None:
        self.size, self.seed = size, seed

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_000_007 + index)
        return torch.randn(SHAPE, generator=generator)


def in_memory_inputs(size: int, seed: int = 0, shape: tuple[int, ...] = SHAPE) -> TensorInputs:
    """`size` synthetic inputs of `shape` as one tensor (the selection suite's pools)."""
    return TensorInputs(torch.randn((size, *shape), generator=torch.Generator().manual_seed(seed)))


def task_module(settings: Settings) -> pl.LightningModule:
    """The default task module (SmallCNN, 10 classes), untrained, in eval mode on the device."""
    pl.seed_everything(0, verbose=False)
    module = build_module(stage_config(settings, 1), num_classes=10)
    return module.to(settings.device).eval()


def request_for(inputs: Dataset, labeled: int, query: int) -> SelectionRequest:
    """A selection request over `inputs`: the first `labeled` positions labeled, the rest
    candidates, served by an ALDataModule's `inputs_loader` (what selectors read)."""
    labeled_indices = np.arange(labeled)
    labels = np.zeros(labeled, dtype=np.int64)
    datamodule = ALDataModule(PoolInputs(inputs), labeled_indices, labels, None, 32, 256)
    candidates = np.arange(labeled, len(inputs))
    return SelectionRequest(
        candidates=datamodule.inputs_loader(candidates),
        labeled=datamodule.inputs_loader(labeled_indices),
        candidate_indices=torch.from_numpy(candidates),
        query=query,
        seed=0,
        labeled_labels=torch.from_numpy(labels),
    )
