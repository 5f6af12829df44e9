"""What every dataset family builds: a pool (train- and test-transformed views) and a test set."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Subset

from al.errors import ConfigError


class ArrayDataset(Dataset):
    """In-memory samples `x[i]` with integer labels `y[i]`."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x, self.y = x, y.long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], int(self.y[index])


class WithoutLabels(Dataset):
    """The samples `indices` of a labeled dataset as `(x, global_index)`: labels never leave."""

    def __init__(self, dataset: Dataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[position])
        x, _ = self.dataset[index]
        return x, index


@dataclass
class ALData:
    """A dataset ready for active learning.

    `pool_train` and `pool_eval` are the same pool samples, in the same global
    order, with training and test-time transforms; `pool_targets` are the pool
    labels, read only by the oracle (labeling and statistics), never by selectors.
    """

    pool_train: Dataset
    pool_eval: Dataset
    test: Dataset
    pool_targets: np.ndarray
    num_classes: int
    validation: Dataset | None = None

    def __post_init__(self) -> None:
        sizes = {len(self.pool_train), len(self.pool_eval), len(self.pool_targets)}
        if len(sizes) != 1:
            raise ValueError(f"pool views disagree in size: {sorted(sizes)}")

    def hold_out_validation(self, fraction: float) -> ALData:
        """Move a fixed, stratified `fraction` of the pool into a validation set.

        The split depends on the data only (not on the seed or method), so every run
        of one dataset shares the same, renumbered pool.
        """
        if not 0 < fraction < 1:
            raise ConfigError(f"validation_fraction={fraction} must lie strictly between 0 and 1")
        positions = np.arange(len(self.pool_targets))
        keep, held_out = train_test_split(
            positions, test_size=fraction, stratify=self.pool_targets, random_state=0
        )
        keep = np.sort(keep)
        return ALData(
            pool_train=Subset(self.pool_train, keep),
            pool_eval=Subset(self.pool_eval, keep),
            test=self.test,
            pool_targets=self.pool_targets[keep],
            num_classes=self.num_classes,
            validation=Subset(self.pool_eval, np.sort(held_out)),
        )

    def check_declared(
        self, name: str, num_classes: int, input_shape: Sequence[int], pool_size: int | None
    ) -> None:
        """Fail early when the dataset config declares other sizes than the data has."""
        declared = {"num_classes": num_classes, "input_shape": list(input_shape)}
        actual = {"num_classes": self.num_classes, "input_shape": list(self.pool_eval[0][0].shape)}
        if pool_size is not None:
            declared["pool_size"], actual["pool_size"] = pool_size, len(self.pool_targets)
        wrong = [
            f"{key}={declared[key]} (the data has {actual[key]})"
            for key in declared
            if declared[key] != actual[key]
        ]
        if wrong:
            raise ConfigError(
                f"dataset '{name}' declares {', '.join(wrong)}: fix conf/dataset/{name}.yaml "
                f"or override, e.g. dataset.{wrong[0].split('=')[0]}=..."
            )
