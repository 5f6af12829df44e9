"""Datasets and the datamodule that serves them from the pool state."""

from al.data.base import ALData, ArrayDataset, WithoutLabels
from al.data.datamodule import ALDataModule, datamodule_for

__all__ = ["ALData", "ALDataModule", "ArrayDataset", "WithoutLabels", "datamodule_for"]
