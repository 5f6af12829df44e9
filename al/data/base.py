"""What every dataset family builds: the pool's inputs (no labels), the oracle's pool labels,
and a labeled test set.

Labels of unlabeled samples are kept out of reach by construction: a pool's samples live in a
`PoolInputs` — inputs and transforms, nothing else — and every view the datamodule serves is
cut from it, holding at most the labels of the samples it serves. `ALData.pool_targets`, the
oracle's copy, stays with the loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset, Subset

from al.errors import ConfigError
from al.tasks import Classification, Task

Transform = Callable | None


class ArrayDataset(Dataset):
    """In-memory samples `x[i]` with integer labels `y[i]` (test and validation sets)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} samples but {len(y)} labels")
        self.x, self.y = x, y.long()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.x[index], int(self.y[index])


class TensorInputs(Dataset):
    """In-memory inputs `x[i]`, without labels."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.x[index]

    def batch(self, indices: Sequence[int]) -> torch.Tensor:
        return self.x[torch.as_tensor(np.asarray(indices, dtype=np.int64))]


class PoolView(Dataset):
    """The pool positions `indices`, each read from `inputs` and transformed (None = as is);
    subclasses say what comes with the input."""

    def __init__(self, inputs: Dataset, transform: Transform, indices: Sequence[int]) -> None:
        self.inputs, self.transform = inputs, transform
        self.indices = np.asarray(indices, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.indices)

    def input(self, position: int) -> torch.Tensor:
        x = self.inputs[int(self.indices[position])]
        return x if self.transform is None else self.transform(x)

    def __getitem__(self, position: int):
        return self.pair(self.input(position), position)

    def __getitems__(self, positions: list[int]) -> list:
        """A whole batch in one read and one transform when the inputs are a tensor that reads
        batches (`batch`) and the transform transforms them (al.data.fast); else per sample."""
        read, transform = getattr(self.inputs, "batch", None), self.transform
        if read is None or (transform is not None and not hasattr(transform, "batch")):
            return [self[position] for position in positions]
        x = read(self.indices[positions])
        x = x if transform is None else transform.batch(x)
        return [self.pair(one, position) for one, position in zip(x, positions, strict=True)]

    def pair(self, x: torch.Tensor, position: int):
        """What the view serves for the input `x` of its sample `position`."""
        raise NotImplementedError


class UnlabeledView(PoolView):
    """`(transform(input), global_index)`: no labels at all."""

    def pair(self, x: torch.Tensor, position: int) -> tuple[torch.Tensor, int]:
        return x, int(self.indices[position])


class LabeledView(PoolView):
    """`(transform(input), label)`; holds the labels of these samples only."""

    def __init__(
        self, inputs: Dataset, transform: Transform, indices: Sequence[int], labels: np.ndarray
    ) -> None:
        super().__init__(inputs, transform, indices)
        if len(self.indices) != len(labels):
            raise ValueError(f"{len(self.indices)} samples but {len(labels)} labels")
        self.labels = np.array(labels, dtype=np.int64)  # a copy: never a view of the pool's

    def pair(self, x: torch.Tensor, position: int) -> tuple[torch.Tensor, int]:
        return x, int(self.labels[position])


@dataclass(frozen=True)
class PixelStats:
    """How inputs relate to pixels in [0, 1]: input = (pixel − mean) / std, per channel."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs (B, C, H, W) back to pixels in [0, 1]."""
        mean, std = self._shaped(x)
        return x * std + mean

    def to_inputs(self, pixels: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] (B, C, H, W) to the task learner's inputs."""
        mean, std = self._shaped(pixels)
        return (pixels - mean) / std

    def _shaped(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(shape)
        return mean, torch.tensor(self.std, dtype=x.dtype, device=x.device).view(shape)


@dataclass
class PoolInputs:
    """The pool's inputs in global order, with training and test-time transforms (None =
    identity) and, for images, their `pixel_stats` (None: not images, or unknown).
    Everything a datamodule or selector can reach of the pool lives here."""

    inputs: Dataset
    train_transform: Transform = None
    eval_transform: Transform = None
    pixel_stats: PixelStats | None = None

    def __len__(self) -> int:
        return len(self.inputs)

    def unlabeled(self, indices: Sequence[int], train: bool = False) -> UnlabeledView:
        """`(x, global_index)` for `indices`, test-time transformed unless `train`."""
        return UnlabeledView(self.inputs, self._transform(train), indices)

    def labeled(
        self, indices: Sequence[int], labels: np.ndarray, train: bool = True
    ) -> LabeledView:
        """`(x, label)` for `indices` and their known `labels`, augmented unless not `train`."""
        return LabeledView(self.inputs, self._transform(train), indices, labels)

    def batch_training_transform(self) -> Transform:
        """The training transform when it runs on whole batches of the raw inputs (the fast
        path, al.data.fast), so that it may run after the batch's transfer; else None."""
        if hasattr(self.inputs, "batch") and hasattr(self.train_transform, "batch"):
            return self.train_transform
        return None

    def untransformed_training(self) -> PoolInputs:
        """The same pool whose training views serve the raw inputs (transformed later)."""
        return replace(self, train_transform=None)

    def subset(self, positions: Sequence[int]) -> PoolInputs:
        """The pool restricted to `positions`, renumbered from 0."""
        return PoolInputs(
            Subset(self.inputs, positions),
            self.train_transform,
            self.eval_transform,
            self.pixel_stats,
        )

    def _transform(self, train: bool) -> Transform:
        return self.train_transform if train else self.eval_transform


@dataclass
class ALData:
    """A dataset ready for active learning.

    `pool` holds the pool's inputs only; `pool_targets` are its labels (an array of class
    labels, or `MaskTargets` for segmentation), read only by the oracle (labeling and
    statistics), never handed to a datamodule or selector; `task` is the dataset config's.
    """

    pool: PoolInputs
    test: Dataset
    pool_targets: np.ndarray
    num_classes: int
    validation: Dataset | None = None
    task: Task = field(default_factory=Classification)

    def __post_init__(self) -> None:
        if len(self.pool) != len(self.pool_targets):
            raise ValueError(f"{len(self.pool)} pool inputs but {len(self.pool_targets)} labels")

    def hold_out_validation(self, fraction: float) -> ALData:
        """Move a fixed, stratified `fraction` of the pool into a validation set.

        The split depends on the data only (not on the seed or method), so every run
        of one dataset shares the same, renumbered pool.
        """
        if not 0 < fraction < 1:
            raise ConfigError(
                f"validation_fraction={fraction} must lie strictly between 0 and 1, e.g. "
                "validation_fraction=0.1"
            )
        positions = np.arange(len(self.pool_targets))
        keep, held_out = train_test_split(
            positions,
            test_size=fraction,
            stratify=self.task.stratify_labels(self.pool_targets),
            random_state=0,
        )
        keep, held_out = np.sort(keep), np.sort(held_out)
        validation = self.pool.labeled(held_out, self.pool_targets[held_out], train=False)
        return ALData(
            pool=self.pool.subset(keep),
            test=self.test,
            pool_targets=self.pool_targets[keep],
            num_classes=self.num_classes,
            validation=validation,
            task=self.task,
        )

    def input_shape(self) -> list[int]:
        """The shape of one test-time transformed pool input."""
        return list(self.pool.unlabeled([0])[0][0].shape)

    def check_declared(
        self, name: str, num_classes: int, input_shape: Sequence[int], pool_size: int | None
    ) -> None:
        """Fail early when the dataset config declares other sizes than the data has."""
        declared = {"num_classes": num_classes, "input_shape": list(input_shape)}
        actual = {"num_classes": self.num_classes, "input_shape": self.input_shape()}
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
