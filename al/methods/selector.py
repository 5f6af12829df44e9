"""The Selector contract: a callback that picks the next samples to label at the end of a stage."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from al.methods.shards import current_shards, scoring_shards
from al.runtime import signals


@dataclass
class SelectionRequest:
    """What a selector may see at one stage.

    `candidates` and `labeled` yield `(x, global_index)` batches with test-time
    transforms and no labels; `candidate_indices` are the sorted global indices
    the candidates loader serves; `seed` derives from (experiment seed, stage);
    `labeled_labels` are the known sample-level labels of the labeled samples (the task's
    `sample_labels`: a class each, or the classes each mask holds), in the order the labeled
    loader serves them (never the labels of candidates).
    """

    candidates: DataLoader
    labeled: DataLoader
    candidate_indices: torch.Tensor
    query: int
    seed: int
    labeled_labels: torch.Tensor | None = None


@dataclass
class Selection:
    """The picked global indices, best first, with the score each was picked by, the
    per-sample quantities the selector chose to keep for analysis (`picks/`), the stage
    metrics it measured (added to the stage's record, e.g. `discriminator/acc`) and how many
    picks the tie-break decided."""

    indices: torch.Tensor
    scores: torch.Tensor
    seconds: float
    diagnostics: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tied_picks: int = 0


def collect(
    loader: DataLoader,
    fn: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    seed: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`fn` of every batch of `(x, global_index)` (on `device`), concatenated, with the indices.
    During a sharded selection (`al.methods.shards`), this rank computes its share of the
    batches and every rank receives all of them, in the loader's order. With a `seed`, the
    random draws of `fn` (MC dropout's masks) come from the default generators seeded by
    (seed, the batch's first global index): the same for a batch wherever it is computed."""
    shards = current_shards()
    if shards is not None:
        loader = shards.loader(loader)
    all_indices, outputs = [], []
    for x, indices in loader:
        with nullcontext() if seed is None else batch_seeded(seed, int(indices[0]), device):
            outputs.append(fn(x.to(device)))
        all_indices.append(indices)
    if shards is None:
        return torch.cat(all_indices), torch.cat(outputs)
    indices = torch.cat(all_indices) if all_indices else None
    computed = torch.cat(outputs) if outputs else None
    return shards.gather_rows(indices).cpu(), shards.gather_rows(computed)


@contextmanager
def batch_seeded(seed: int, first_index: int, device: torch.device | str) -> Iterator[None]:
    """The CPU's and `device`'s default generators seeded by (`seed`, `first_index`) inside
    the block, and as they were after it."""
    device = torch.device(device)
    value = int(np.random.SeedSequence([seed, first_index]).generate_state(1, np.uint64)[0])
    on_cuda = device.type == "cuda"
    with torch.random.fork_rng(devices=[device] if on_cuda else [], device_type="cuda"):
        torch.random.default_generator.manual_seed(value)
        if on_cuda:
            index = torch.cuda.current_device() if device.index is None else device.index
            torch.cuda.default_generators[index].manual_seed(value)
        yield


# Mixed into a selection seed so the tie keys are a stream apart from the selector's own draws.
TIE_STREAM = 0x7E5


class TieBreak:
    """Exact ties between scores broken by a random key drawn from a selection seed, never by
    pool order (candidates arrive sorted by index, and folders sort them by class); `decided`
    counts the picks the key decided, recorded as the stage's `tied_picks`."""

    def __init__(self, seed: int) -> None:
        state = np.random.SeedSequence([seed, TIE_STREAM]).generate_state(2, dtype=np.uint32)
        self.generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        self.decided = 0

    def order(self, scores: torch.Tensor, k: int) -> torch.Tensor:
        """Positions of the `k` highest scores, best first, equal scores in a random order."""
        keys = torch.randperm(len(scores), generator=self.generator).to(scores.device)
        return keys[torch.sort(scores[keys], descending=True, stable=True).indices[:k]]

    def top_k(
        self, indices: torch.Tensor, scores: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The `k` highest scores with their (global) indices; counts the picks whose score ties
        with candidates left out, the ones the random key chose."""
        order = self.order(scores, k)
        picked = scores[order]
        if len(picked):
            tied_in = int((picked == picked[-1]).sum())
            if int((scores == picked[-1]).sum()) > tied_in:
                self.decided += tied_in
        return indices[order], picked

    def argmax(self, values: torch.Tensor) -> int:
        """The position of the largest value; among equal largest ones, a random one (counted)."""
        first = torch.argmax(values)
        if int((values == values[first]).sum()) <= 1:  # one maximum, or NaN (refused later)
            return int(first)
        maxima = torch.nonzero(values == values[first]).flatten()
        self.decided += 1
        return int(maxima[torch.randint(len(maxima), (1,), generator=self.generator)])


def check_picks(
    indices: torch.Tensor, scores: torch.Tensor, request: SelectionRequest, selector: str
) -> None:
    """The contract: exactly `query` distinct global indices, all among the candidates,
    picked by scores that are not NaN."""
    indices = indices.cpu()
    problems = []
    if torch.isnan(scores).any():
        problems.append("NaN scores")
    if len(indices) != request.query:
        problems.append(f"{len(indices)} picks instead of {request.query}")
    if len(torch.unique(indices)) != len(indices):
        problems.append("duplicate picks")
    if not torch.isin(indices, request.candidate_indices).all():
        problems.append("picks outside the candidate subset")
    if problems:
        raise RuntimeError(f"{selector} broke the selection contract: {', '.join(problems)}")


class Selector(pl.Callback):
    """Fires in `on_train_end`, while the trained model is still on its device.

    The loop hands a `SelectionRequest` to `request()` before `fit`; after `fit`, `selection`
    holds the picks. Subclasses implement `score` (higher = label first) or, for set-based
    methods, override `select`. Scoring runs in eval mode under `no_grad`. Under DDP every
    pass over a request's loader (`collect`) is sharded: each rank computes its share of the
    batches and all ranks receive every row (al.methods.shards); rank 0's picks are
    broadcast, so every rank labels the same samples. A selector may keep per-sample
    quantities in `self.diagnostics` (name → array, e.g. a discriminator's outputs with the
    global indices they belong to): rank 0 saves them with the stage's picks. Stage metrics go
    in `self.metrics` (name → float), into the stage's record; `reported_metrics` names those
    it puts there every stage (what a stopping rule may read). Rankings go through
    `self.ties` (`top_k`, `argmax`), which breaks exact ties by a key drawn from the request's
    seed and counts the picks it decided. `tasks`:
    the tasks whose modules it can score (the loop refuses any other at start-up).
    """

    reported_metrics: ClassVar[tuple[str, ...]] = ()
    tasks: ClassVar[tuple[str, ...]] = ("classification",)
    # Scores with random draws (MC dropout): each batch's drawn from the request's seed and
    # the batch's first global index (`collect`), the same wherever the batch is scored.
    stochastic_scores: ClassVar[bool] = False

    def __init__(self) -> None:
        self._request: SelectionRequest | None = None
        self.selection: Selection | None = None
        self.diagnostics: dict[str, np.ndarray] = {}
        self.metrics: dict[str, float] = {}
        self.ties = TieBreak(0)
        self.fitting_like: pl.Trainer | None = None

    def check_module(self, module: pl.LightningModule) -> None:
        """Refuse (ConfigError: what is wrong and the fix; the loop names the method before it) a
        task module this selector cannot score; the loop asks before the run writes anything.
        Any module will do by default."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """The same check before every stage trains, wherever it runs (a replayed stage too)."""
        self.check_module(pl_module)

    def request(self, request: SelectionRequest) -> None:
        self._request = request
        self.selection = None
        self.diagnostics = {}
        self.metrics = {}
        self.ties = TieBreak(request.seed)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._request is None:
            return
        signals.enter("selection")
        self.fitting_like = trainer
        start = time.perf_counter()
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad(), scoring_shards(trainer):
            indices, scores = self.select(pl_module, self._request)
        pl_module.train(was_training)
        check_picks(indices, scores, self._request, type(self).__name__)
        indices, scores = trainer.strategy.broadcast((indices.cpu(), scores.cpu()), src=0)
        seconds = time.perf_counter() - start
        self.selection = Selection(
            indices, scores, seconds, dict(self.diagnostics), dict(self.metrics), self.ties.decided
        )
        self._request = None

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Score every candidate and return the `query` best (global indices, scores)."""
        seed = request.seed if self.stochastic_scores else None
        indices, scores = self.score_loader(module, request.candidates, seed)
        return self.ties.top_k(indices, scores, request.query)

    def score_loader(
        self, module: pl.LightningModule, loader: DataLoader, seed: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Batched scores of every sample `loader` yields, with their global indices; per-
        element scores (per pixel) are reduced batch by batch by the module's task, so only
        one score per sample is kept. `seed`: stochastic scores' draws per batch (`collect`)."""
        reduce = module.task.reduce_scores

        def sample_scores(x: torch.Tensor) -> torch.Tensor:
            return reduce(self.score(module, x))

        indices, scores = collect(loader, sample_scores, module.device, seed)
        return indices, scores.float().cpu()

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        """The scores of the batch `x`, one per sample (B,) or per element (B, …: per pixel,
        reduced by the task); higher means label first."""
        raise NotImplementedError(f"{type(self).__name__} must implement score() or select()")


class ProbabilitySelector(Selector):
    """Scores computed from the softmax of the module's logits (over dim 1: per sample, or
    per pixel for segmentation)."""

    tasks = ("classification", "segmentation")

    def score(self, module: pl.LightningModule, x: torch.Tensor) -> torch.Tensor:
        return self.score_probabilities(F.softmax(module(x).float(), dim=1))

    def score_probabilities(self, probs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError
