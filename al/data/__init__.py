"""Datasets and the datamodule that serves them from the pool state."""

from al.data.base import ALData, ArrayDataset, PixelStats, PoolInputs, TensorInputs
from al.data.datamodule import ALDataModule, UnlabeledTraining, datamodule_for

__all__ = [
    "ALData",
    "ALDataModule",
    "ArrayDataset",
    "PixelStats",
    "PoolInputs",
    "TensorInputs",
    "UnlabeledTraining",
    "datamodule_for",
]
