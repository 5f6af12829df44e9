"""The active-learning state: one integer per pool sample, the stage it was labeled at."""

from __future__ import annotations

import zlib

import numpy as np

UNLABELED = -1


def stage_rng(seed: int, stage: int, purpose: str) -> np.random.Generator:
    """A generator that depends on (seed, stage, purpose) only, never on the method."""
    return np.random.default_rng([seed, stage, zlib.crc32(purpose.encode())])


def random_initial(size: int, initial: int, seed: int) -> np.ndarray:
    """`initial` distinct indices of `size`, uniformly at random, from `seed` alone."""
    return stage_rng(seed, 0, "initial").choice(size, size=initial, replace=False)


class Pool:
    """`labelled_at[i]` is the stage at which pool sample `i` was labeled, or -1.

    Indices are global: position `i` in the pool dataset, the same in every
    loader, selector and saved file. Stage 0 is the initial labeled set; the
    samples picked after stage k are labeled at stage k + 1.
    """

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"pool size must be positive, got {size}")
        self.labelled_at = np.full(size, UNLABELED, dtype=np.int64)

    @classmethod
    def with_initial(cls, size: int, initial: int, seed: int) -> Pool:
        """A pool whose initial labeled set is `initial` samples drawn uniformly by `seed`."""
        return cls.with_labeled(size, random_initial(size, initial, seed))

    @classmethod
    def with_labeled(cls, size: int, initial_indices: np.ndarray) -> Pool:
        """A pool whose stage-0 labeled set is `initial_indices`."""
        pool = cls(size)
        pool.label(initial_indices, stage=0)
        return pool

    def __len__(self) -> int:
        return len(self.labelled_at)

    @property
    def stage(self) -> int:
        """The latest stage at which samples were labeled (-1 for an empty pool)."""
        return int(self.labelled_at.max())

    @property
    def labeled_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled_at != UNLABELED)

    @property
    def unlabeled_indices(self) -> np.ndarray:
        return np.flatnonzero(self.labelled_at == UNLABELED)

    def label(self, indices: np.ndarray, stage: int) -> None:
        """Mark `indices` as labeled at `stage`; rejects duplicates, labeled and unknown ids."""
        indices = np.asarray(indices, dtype=np.int64)
        if len(np.unique(indices)) != len(indices):
            raise ValueError(f"duplicate indices in label(): {_duplicates(indices)}")
        outside = indices[(indices < 0) | (indices >= len(self))]
        if len(outside):
            raise IndexError(f"indices outside the pool of {len(self)}: {outside[:10].tolist()}")
        already = indices[self.labelled_at[indices] != UNLABELED]
        if len(already):
            raise ValueError(f"indices already labeled: {already[:10].tolist()}")
        if stage < max(self.stage, 0):
            raise ValueError(f"cannot label at stage {stage}: the pool is at stage {self.stage}")
        self.labelled_at[indices] = stage

    def candidates(self, subset: int | None, seed: int, stage: int) -> np.ndarray:
        """The sorted unlabeled indices a selector may pick from at `stage`.

        Every pool sample gets a random key from (seed, stage) alone and the
        `subset` unlabeled samples with the smallest keys are the candidates,
        so methods that labeled different samples still share most of their
        candidates. `subset=None` means the whole unlabeled pool.
        """
        unlabeled = self.unlabeled_indices
        if subset is None or subset >= len(unlabeled):
            return unlabeled
        keys = stage_rng(seed, stage, "subset").random(len(self))
        chosen = unlabeled[np.argsort(keys[unlabeled], kind="stable")[:subset]]
        return np.sort(chosen)

    def state_dict(self) -> dict:
        return {"labelled_at": self.labelled_at.copy()}

    def load_state_dict(self, state: dict) -> None:
        labelled_at = np.asarray(state["labelled_at"], dtype=np.int64)
        if labelled_at.shape != self.labelled_at.shape:
            raise ValueError(
                f"saved pool has {labelled_at.shape[0]} samples, this pool has {len(self)}"
            )
        self.labelled_at = labelled_at.copy()


def _duplicates(indices: np.ndarray) -> list[int]:
    values, counts = np.unique(indices, return_counts=True)
    return values[counts > 1][:10].tolist()
