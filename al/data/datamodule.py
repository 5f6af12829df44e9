"""Loaders for one stage, cut from the pool state: labeled (train), candidates, test."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from al.data.base import ALData, PoolInputs


class ALDataModule(pl.LightningDataModule):
    """Serves the labeled pool for training and the test set for evaluation.

    It holds the pool's inputs, the labeled indices and their labels — never the labels of
    unlabeled samples, so nothing a selector reaches through the trainer can read them.
    `inputs_loader` serves any pool indices as `(x, global_index)` with test-time transforms:
    what selectors read.
    """

    def __init__(
        self,
        pool: PoolInputs,
        labeled_indices: Sequence[int],
        labeled_targets: np.ndarray,
        test: Dataset,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int = 0,
        validation: Dataset | None = None,
    ) -> None:
        super().__init__()
        self.pool = pool
        self.labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        self.labeled_targets = np.asarray(labeled_targets, dtype=np.int64)
        self.test = test
        self.validation = validation
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        labeled = self.pool.labeled(self.labeled_indices, self.labeled_targets, train=True)
        return self._loader(labeled, self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    def inputs_loader(self, indices: Sequence[int]) -> DataLoader:
        return self._loader(self.pool.unlabeled(indices), self.eval_batch_size, shuffle=False)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )


class ValidatedDataModule(ALDataModule):
    """An ALDataModule that also serves the held-out validation set (`eval_model=best_val`)."""

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, self.eval_batch_size, shuffle=False)


def datamodule_for(data: ALData, labeled_indices: Sequence[int], **loader) -> ALDataModule:
    """The datamodule for one stage, with the labeled samples' labels (a copy: fancy indexing)
    and never the oracle's array; it validates only when the data has a validation set."""
    kind = ALDataModule if data.validation is None else ValidatedDataModule
    labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
    return kind(
        data.pool,
        labeled_indices,
        data.pool_targets[labeled_indices],
        data.test,
        validation=data.validation,
        **loader,
    )
