"""Loaders for one stage, cut from the pool state: labeled (train), unlabeled (train, for
modules that ask), candidates, test."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import CombinedLoader
from torch.utils.data import ConcatDataset, DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from al.data.base import ALData, LabeledView, PoolInputs
from al.data.fast import BatchTransform, transformed_inputs
from al.data.segmentation import MaskTargets
from al.errors import ConfigError

EPOCHS = {"longest": "max_size_cycle", "shortest": "min_size"}


@dataclass(frozen=True)
class UnlabeledTraining:
    """What a task module that also trains on unlabeled samples declares as its
    `unlabeled_training` attribute; its training batches are then
    `{"labeled": (x, y), "unlabeled": (x, global_index)}` — the unlabeled ones never carry
    labels — and the datamodule's `labeled_count` / `unlabeled_count` give the pool sizes.

    `batch_size` of the unlabeled batches, or None for an equal share of both pools in every
    step (as many unlabeled batches as labeled ones; Kingma et al.'s code; the batch then
    grows with the pool). `epoch`: `longest` — one epoch is a pass over the larger of the two
    loaders while the other cycles — or `shortest` — a pass over the smaller, the other cut
    short (and reshuffled every epoch). `views`: serve the unlabeled inputs with test-time
    transforms and, on the training device, replace each batch `(x, index)` by `(*views, index)`
    where `views(pixels, generator)` stacks augmented pixel views (semi-supervised training).
    `labeled_view`: likewise serve the labeled inputs with test-time transforms and replace
    each `x` by `labeled_view(pixels, generator)` (in place of the dataset's augmentation).
    """

    batch_size: int | None = 128
    epoch: str = "longest"
    views: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None
    labeled_view: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if self.epoch not in EPOCHS:
            raise ConfigError(f"epoch={self.epoch!r} is not one of {', '.join(EPOCHS)}")
        if self.batch_size is not None and (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ConfigError(
                f"unlabeled_batch_size={self.batch_size!r} must be a positive integer, or null "
                "for an equal share of both pools per step"
            )


@dataclass(frozen=True)
class MemberOrders:
    """What a committee module whose members each see the labeled samples in their own order
    declares as its `member_orders` attribute: its training batches then hold `members` equal
    parts, part m member m's next samples in its own permutation of the epoch
    (`MemberOrderSampler`, from `seed` and the epoch alone)."""

    members: int
    seed: int


class MemberOrderSampler(DistributedSampler):
    """Each of `members` its own permutation of a dataset's positions every epoch, served as
    steps of `batch_size` positions per member: step s is member 0's positions [sB, (s+1)B) of
    its permutation, then member 1's, … — a loader of `members`·B per batch yields them, the last
    batch `members` equal remainders. Epoch e's permutations are drawn from (`seed`, e) alone
    (Lightning calls `set_epoch` at every epoch's start), so a rerun of the stage replays them
    and the global random stream is left alone. Under DDP each member's permutation is split
    across the `replicas` as DistributedSampler splits its one (padded to a multiple of them,
    rank r taking every r-th position); being a DistributedSampler, Lightning keeps it."""

    def __init__(
        self,
        dataset: Dataset,
        members: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        replicas: int = 1,
    ) -> None:
        super().__init__(dataset, num_replicas=replicas, rank=rank, shuffle=True, seed=seed)
        self.members, self.batch_size = members, batch_size

    def epoch_orders(self) -> torch.Tensor:
        """(members, n): each member's permutation of the n positions for this epoch."""
        state = np.random.SeedSequence([self.seed, self.epoch]).generate_state(1, np.uint64)
        generator = torch.Generator().manual_seed(int(state[0]))
        n = len(self.dataset)
        draws = torch.rand((self.members, n), generator=generator, dtype=torch.float64)
        return draws.argsort(dim=1)

    def __iter__(self):
        orders = self.epoch_orders()
        repeats = math.ceil(self.total_size / orders.shape[1])
        padded = orders.repeat(1, repeats)[:, : self.total_size]
        shard = padded[:, self.rank :: self.num_replicas]
        return iter(interleaved_steps(shard, self.batch_size).tolist())

    def __len__(self) -> int:
        return self.members * self.num_samples


def interleaved_steps(orders: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(M, k) orders as one sequence of steps: each step is every member's next `batch_size`
    positions in turn (the last step every member's remainder)."""
    full = orders.shape[1] // batch_size * batch_size
    steps = orders[:, :full].unflatten(1, (-1, batch_size)).transpose(0, 1).flatten()
    return torch.cat([steps, orders[:, full:].flatten()])


def check_device_augmentation(value: object) -> None:
    if not (isinstance(value, bool) or value == "auto"):
        raise ConfigError(
            f"loader.device_augmentation={value!r} must be true, false or auto: e.g. "
            "loader.device_augmentation=auto"
        )


def available_cpus() -> int:
    """The CPUs this process may run on (`loader.num_workers=auto`)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


class ALDataModule(pl.LightningDataModule):
    """Serves the labeled pool for training and the test set for evaluation.

    It holds the pool's inputs, the labeled indices and their labels (class labels, or the
    masks of those samples only) — never the labels of unlabeled samples, so nothing a
    selector reaches through the trainer can read them.
    `inputs_loader` serves any pool indices as `(x, global_index)` with test-time transforms:
    what selectors read. Given `unlabeled`, the unlabeled indices and the module's
    `UnlabeledTraining`, training batches pair labeled `(x, y)` with unlabeled
    `(x, global_index)` (training transforms). `synthetic` training pairs (not pool samples,
    already in the task learner's input space) join the labeled ones in training only.
    `labeled_ids`: labeled training batches are `(x, y, global_index)`, for modules that
    declare `labeled_sample_ids` (a bootstrap committee weighs samples by their index).

    `device_augmentation`: whether the training loader serves the raw uint8 images of the fast
    path and their augmentation runs on the training device, after each batch's transfer
    (`on_after_batch_transfer`) — `auto`: when training on an accelerator. It applies to pools
    whose training transform runs on batches (al.data.fast) and stages without synthetic pairs;
    elsewhere the loader transforms.
    """

    def __init__(
        self,
        pool: PoolInputs,
        labeled_indices: Sequence[int],
        labeled_targets: np.ndarray | MaskTargets,
        test: Dataset,
        batch_size: int,
        eval_batch_size: int,
        num_workers: int | str = 0,
        validation: Dataset | None = None,
        unlabeled: tuple[Sequence[int], UnlabeledTraining] | None = None,
        synthetic: Dataset | None = None,
        device_augmentation: bool | str = "auto",
        labeled_ids: bool = False,
    ) -> None:
        super().__init__()
        self.labeled_ids = labeled_ids
        check_device_augmentation(device_augmentation)
        self.device_augmentation = device_augmentation
        self.device_transform = None
        self.synthetic = synthetic
        self.pool = pool
        self.labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
        self.labeled_targets = labeled_targets
        self.test = test
        self.validation = validation
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = available_cpus() if num_workers == "auto" else num_workers
        self.unlabeled_indices, self.unlabeled_training = None, None
        self.views_generator: torch.Generator | None = None
        if unlabeled is not None:
            self.unlabeled_indices = np.asarray(unlabeled[0], dtype=np.int64)
            self.unlabeled_training = unlabeled[1]

    @property
    def labeled_count(self) -> int:
        return len(self.labeled_indices)

    @property
    def unlabeled_count(self) -> int:
        return 0 if self.unlabeled_indices is None else len(self.unlabeled_indices)

    def train_dataloader(self) -> DataLoader | CombinedLoader:
        wanted = self.unlabeled_training
        own_view = wanted is not None and wanted.labeled_view is not None
        self.device_transform = None if own_view else self.training_transform_on_device()
        pool = self.pool if self.device_transform is None else self.pool.untransformed_training()
        labeled_view = pool.labeled(self.labeled_indices, self.labeled_targets, train=not own_view)
        if self.labeled_ids:
            labeled_view = WithGlobalIndex(labeled_view)
        if self.synthetic is not None and len(self.synthetic) > 0:
            labeled_view = ConcatDataset([labeled_view, self.synthetic])
        labeled = self.labeled_loader(labeled_view)
        if wanted is None:
            return labeled
        batch_size = wanted.batch_size or math.ceil(self.unlabeled_count / len(labeled))
        if wanted.views is None:
            unlabeled_view = pool.unlabeled(self.unlabeled_indices, train=True)
        else:
            unlabeled_view = self.pool.unlabeled(self.unlabeled_indices, train=False)
        if wanted.views is not None or own_view:
            self.views_generator = torch.Generator(self.trainer.strategy.root_device)
            self.views_generator.manual_seed(int(torch.randint(2**62, (1,))))
        unlabeled = self._loader(unlabeled_view, batch_size, shuffle=True)
        return CombinedLoader({"labeled": labeled, "unlabeled": unlabeled}, EPOCHS[wanted.epoch])

    def labeled_loader(self, view: Dataset) -> DataLoader:
        """The labeled training loader: shuffled, or in each member's own order when the
        module declares `member_orders` (batches of members × loader.batch_size)."""
        module = getattr(self.trainer, "lightning_module", None)
        orders: MemberOrders | None = getattr(module, "member_orders", None)
        if orders is None:
            return self._loader(view, self.batch_size, shuffle=True)
        sampler = MemberOrderSampler(
            view,
            orders.members,
            self.batch_size,
            orders.seed,
            rank=self.trainer.global_rank,
            replicas=self.trainer.world_size,
        )
        return self._loader(view, orders.members * self.batch_size, sampler=sampler)

    def training_transform_on_device(self) -> BatchTransform | None:
        """The pool's training transform if it is to run on the training device, else None."""
        transform = self.pool.batch_training_transform()
        if transform is None or (self.synthetic is not None and len(self.synthetic) > 0):
            return None
        if self.device_augmentation == "auto":
            trainer = self.trainer
            on_accelerator = trainer is not None and trainer.strategy.root_device.type != "cpu"
            return transform if on_accelerator else None
        return transform if self.device_augmentation else None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches of raw images, augmented and normalised on their device; the
        views of `UnlabeledTraining` (`labeled_view`, `views`) made there."""
        if not self.trainer.training:
            return batch
        if self.device_transform is not None:
            batch = transformed_inputs(batch, self.device_transform)
        wanted = self.unlabeled_training
        if wanted is None or not isinstance(batch, dict):
            return batch
        stats = self.pool.pixel_stats
        if wanted.labeled_view is not None:
            x, *rest = batch["labeled"]
            x = stats.to_inputs(wanted.labeled_view(stats.to_pixels(x), self.views_generator))
            batch = {**batch, "labeled": (x, *rest)}
        if wanted.views is not None:
            x, index = batch["unlabeled"]
            made = wanted.views(stats.to_pixels(x), self.views_generator)
            batch = {**batch, "unlabeled": (*(stats.to_inputs(v) for v in made), index)}
        return batch

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, self.eval_batch_size, shuffle=False)

    def inputs_loader(self, indices: Sequence[int]) -> DataLoader:
        return self._loader(self.pool.unlabeled(indices), self.eval_batch_size, shuffle=False)

    def _loader(
        self,
        dataset: Dataset,
        batch_size: int,
        shuffle: bool = False,
        sampler: MemberOrderSampler | None = None,
    ) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=self.num_workers > 0 and torch.cuda.is_available(),
        )


class WithGlobalIndex(Dataset):
    """A labeled view's `(x, y)` pairs as `(x, y, global_index)`."""

    def __init__(self, view: LabeledView) -> None:
        self.view = view

    def __len__(self) -> int:
        return len(self.view)

    def __getitem__(self, position: int) -> tuple:
        return (*self.view[position], int(self.view.indices[position]))

    def __getitems__(self, positions: list[int]) -> list:
        pairs = self.view.__getitems__(positions)
        ids = self.view.indices[positions].tolist()
        return [(*pair, index) for pair, index in zip(pairs, ids, strict=True)]


class ValidatedDataModule(ALDataModule):
    """An ALDataModule that also serves the held-out validation set (`eval_model=best_val`)."""

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, self.eval_batch_size, shuffle=False)


def datamodule_for(
    data: ALData,
    labeled_indices: Sequence[int],
    unlabeled: tuple[Sequence[int], UnlabeledTraining] | None = None,
    synthetic: Dataset | None = None,
    labeled_ids: bool = False,
    **loader,
) -> ALDataModule:
    """The datamodule for one stage, with the labeled samples' labels (a copy: fancy indexing)
    and never the oracle's array; it validates only when the data has a validation set, and
    trains on `unlabeled` samples too when given (indices, the module's UnlabeledTraining)
    and on `synthetic` pairs."""
    kind = ALDataModule if data.validation is None else ValidatedDataModule
    labeled_indices = np.asarray(labeled_indices, dtype=np.int64)
    return kind(
        data.pool,
        labeled_indices,
        data.pool_targets[labeled_indices],
        data.test,
        validation=data.validation,
        unlabeled=unlabeled,
        synthetic=synthetic,
        labeled_ids=labeled_ids,
        **loader,
    )
