"""Loaders for one stage, cut from the pool state: labeled (train), candidates, test."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset, Subset

from al.data.base import ALData, WithoutLabels


class ALDataModule(pl.LightningDataModule):
    """Serves the labeled pool for training and the test set for evaluation.

    `inputs_loader` serves any pool indices as `(x, global_index)` with
    test-time transforms: what selectors read.
    """

    def __init__(
        self,
        data: ALData,
        labeled_indices: Sequence[int],
        batch_size: int,
        eval_batch_size: int,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        self.data = data
        self.labeled_indices = list(map(int, labeled_indices))
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers

    def train_dataloader(self) -> DataLoader:
        labeled = Subset(self.data.pool_train, self.labeled_indices)
        return self._loader(labeled, self.batch_size, shuffle=True)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.data.test, self.eval_batch_size, shuffle=False)

    def inputs_loader(self, indices: Sequence[int]) -> DataLoader:
        samples = WithoutLabels(self.data.pool_eval, indices)
        return self._loader(samples, self.eval_batch_size, shuffle=False)

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
        return self._loader(self.data.validation, self.eval_batch_size, shuffle=False)


def datamodule_for(data: ALData, labeled_indices: Sequence[int], **loader) -> ALDataModule:
    """The datamodule for one stage; it validates only when the data has a validation set."""
    kind = ALDataModule if data.validation is None else ValidatedDataModule
    return kind(data, labeled_indices, **loader)
