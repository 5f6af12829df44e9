"""BatchBALD (Kirsch et al. 2019): a batch chosen greedily for its joint mutual information.

a_BatchBALD({x_1..x_n}) = H(y_1..y_n) − Σ_i E_ω[H(y_i | ω)] (the labels are independent given
the weights ω), estimated from T MC-dropout passes ω_1..ω_T. Algorithm 1 adds, one at a time,
the candidate whose label raises it most. H(y_1..y_n) sums over the label configurations ŷ of
the n − 1 points chosen: all C^(n−1) of them while C^(n−1) ≤ `samples`, else `samples` drawn
from p(y_1..y_n−1) (the paper's two estimators, §3, switched as its code does: BlackHC/BatchBALD
src/multi_bald.py, exact while num_classes ** (points chosen) ≤ num_samples), so an exact step
never costs more than a sampled one. With one point, the gain is BALD under the same T passes.
A gain only shrinks as the batch grows (a_BatchBALD is submodular), so by default (`lazy`) each
step rescores only the candidates whose last gain could still be the largest (Minoux 1978); the
paper's code rescores every candidate.

Every candidate must be scored by the same T models, so each pass has one dropout mask shared by
every sample (consistent MC dropout, as the paper's code), drawn from the stage's seed: picks are
deterministic. The dropout is the model's (`model.dropout`), as for `bald`, and so is the
caching: when the slot before the classifier is the only dropout, the features are computed once
per batch and the slot's hook serves masks 1..T to the head's T passes, as to T full passes.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from al.errors import ConfigError
from al.methods.bald import BaldSelector, bald
from al.methods.entropy import entropy
from al.methods.mc_dropout import mc_dropout_layers
from al.methods.selector import SelectionRequest, TieBreak, collect
from al.options import PositiveFloat, PositiveInt

CHANNEL_DROPOUT = (nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)
FLOAT_BYTES = 4
# Candidates' probabilities are floored here inside joint entropies, so every predictive is
# positive and p log p is log then multiply (xlogy, which handles 0, ran 4× slower than both
# together); p log p moves by under 1e-27 per term.
PROBABILITY_FLOOR = 1e-30
# Lazy greedy scores its candidates in rounds of about this many predictive entries (C × M per
# candidate; 8 MB): a round of one 128 MB tile (167 candidates at 10 classes × 10,000
# configurations) took 0.8 ms a candidate, its fresh buffers paged in, against 0.36 at 16 MB.
LAZY_ROUND_ENTRIES = 2**21


@dataclass
class Configurations:
    """Label configurations ŷ_m of the points chosen so far, as log p(ŷ_m | ω_t) (T × M): all
    C^n of them, or (`sampled`) M drawn from p(y_1..y_n)."""

    log_joint: torch.Tensor
    sampled: bool = False

    @classmethod
    def empty(cls, passes: int, device: torch.device) -> Configurations:
        """The one configuration of no points, certain under every pass."""
        return cls(torch.zeros(passes, 1, device=device))

    def log_marginals(self) -> torch.Tensor:
        """log p(ŷ_m) = log mean_t p(ŷ_m | ω_t)."""
        return torch.logsumexp(self.log_joint, dim=0) - math.log(len(self.log_joint))

    def weights(self) -> torch.Tensor:
        """What each configuration counts for in an expectation: p(ŷ_m), or 1/M when sampled."""
        if self.sampled:
            count = self.log_joint.shape[1]
            return torch.full((count,), 1.0 / count, device=self.log_joint.device)
        return self.log_marginals().exp()

    def pass_posteriors(self) -> torch.Tensor:
        """p(ω_t | ŷ_m) (T × M); uniform for a configuration no pass allows (its weight is 0)."""
        return torch.softmax(self.log_joint, dim=0).nan_to_num(1.0 / len(self.log_joint))

    def entropy(self) -> torch.Tensor:
        """H(y_1..y_n) = −Σ_m p(ŷ_m) log p(ŷ_m), or its Monte-Carlo estimate when sampled."""
        weights = self.weights()
        return -torch.where(weights > 0, weights * self.log_marginals(), 0.0).sum()


def draw_classes(weights: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """One class per row of `weights` (M × C, non-negative, unnormalised), by inverse CDF:
    torch.multinomial drew 10,000 rows of 100 classes 15× slower."""
    cdf = weights.cumsum(1)
    uniform = torch.rand(len(cdf), 1, generator=generator, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, uniform, right=True).squeeze(1).clamp_max(cdf.shape[1] - 1)


def extend(
    configs: Configurations,
    probs: torch.Tensor,
    samples: int | None,
    generator: torch.Generator | None = None,
) -> Configurations:
    """`configs` with one more point of MC probabilities `probs` (T × C): every configuration
    times every class (`samples=None`), or `samples` configurations drawn ancestrally,
    ŷ ~ p(y_1..y_n) then y ~ p(y | ŷ) = Σ_t p(ω_t | ŷ) p(y | ω_t)."""
    log_probs = probs.log()
    if samples is None:
        joint = configs.log_joint[:, :, None] + log_probs[:, None, :]
        return Configurations(joint.reshape(len(joint), -1))
    log_joint, posteriors = configs.log_joint, configs.pass_posteriors()
    if not configs.sampled:
        parents = torch.multinomial(configs.weights(), samples, True, generator=generator)
        log_joint, posteriors = log_joint[:, parents], posteriors[:, parents]
    labels = draw_classes(posteriors.T @ probs, generator)
    return Configurations(log_joint + log_probs[:, labels], sampled=True)


def tile_shape(
    candidates: int, classes: int, configurations: int, memory_bytes: int
) -> tuple[int, int]:
    """Candidates and configurations per tile of joint entropies: its predictives and their
    logs, 2 × B × C × M floats, take at most `memory_bytes` (and at least one of each)."""
    per_configuration = 2 * classes * FLOAT_BYTES
    width = min(configurations, max(1, memory_bytes // per_configuration))
    block = min(candidates, max(1, memory_bytes // (per_configuration * width)))
    return block, width


def joint_entropies(
    configs: Configurations, probs: torch.Tensor, memory_bytes: int = 2**27
) -> torch.Tensor:
    """H(y_1..y_n, y_x) for every candidate x of MC probabilities `probs` (N × T × C):
    H(y_1..y_n) + Σ_m p(ŷ_m) H(p(y_x | ŷ_m)), over tiles of B candidates × M' configurations
    whose predictives and their logs take `memory_bytes` together (`tile_shape`). The tiles
    live in buffers allocated once: a fresh block per step fragments glibc's heap past the
    budget."""
    posteriors, weights = configs.pass_posteriors(), configs.weights()
    candidates, passes, classes = probs.shape
    block, width = tile_shape(candidates, classes, len(weights), memory_bytes)
    by_class_scratch = probs.new_empty(block * classes * passes)
    predictive_scratch = probs.new_empty(block * classes * width)
    log_scratch = probs.new_empty(block * classes * width)
    per_class = probs.new_empty(block * classes)
    conditionals = probs.new_zeros(candidates)
    for start in range(0, candidates, block):
        rows = probs[start : start + block]
        by_class = by_class_scratch[: len(rows) * classes * passes].view(len(rows), classes, -1)
        torch.clamp(rows.transpose(1, 2), min=PROBABILITY_FLOOR, out=by_class)
        by_class = by_class.view(-1, passes)
        summed = per_class[: len(by_class)]
        for first in range(0, len(weights), width):
            columns = slice(first, first + width)
            size = len(by_class) * len(weights[columns])
            predictive = predictive_scratch[:size].view(len(by_class), -1)
            torch.mm(by_class, posteriors[:, columns], out=predictive)
            log = torch.log(predictive, out=log_scratch[:size].view_as(predictive))
            log.mul_(predictive)
            torch.mv(log, weights[columns], out=summed)
            conditionals[start : start + block] += summed.view(len(rows), classes).sum(1)
    return configs.entropy() - conditionals


def expected_entropies(probs: torch.Tensor) -> torch.Tensor:
    """E_ω[H(y_x | ω)] = mean_t H(p_t) of every candidate of `probs` (N × T × C)."""
    candidates, passes, classes = probs.shape
    return entropy(probs.reshape(-1, classes)).reshape(candidates, passes).mean(1)


@dataclass(frozen=True)
class JointEstimator:
    """How many configurations are sampled once they are not enumerated, and the memory one
    tile of joint entropies may take."""

    samples: int
    memory_bytes: int

    def samples_for(self, chosen: int, classes: int) -> int | None:
        """None to enumerate the C^chosen configurations of `chosen` points (while they are at
        most `samples`: BlackHC/BatchBALD src/multi_bald.py), else `samples`."""
        return None if classes**chosen <= self.samples else self.samples


def gains_of(
    configs: Configurations, probs: torch.Tensor, expected: torch.Tensor, memory_bytes: int
) -> torch.Tensor:
    """a({x_1..x_n, x}) − a({x_1..x_n}) = H(y_1..y_n, y_x) − H(y_1..y_n) − E_ω H(y_x | ω) of
    every candidate x of `probs` (N × T × C), with E_ω H(y_x | ω) given (`expected`)."""
    return joint_entropies(configs, probs, memory_bytes) - configs.entropy() - expected


def lazy_gains(
    configs: Configurations,
    probs: torch.Tensor,
    expected: torch.Tensor,
    bounds: torch.Tensor,
    available: torch.Tensor,
    memory_bytes: int,
) -> torch.Tensor:
    """The gains of the available candidates that could still be the largest, −inf for the
    rest: a candidate's gain only shrinks as the batch grows (a_BatchBALD is submodular,
    Kirsch et al. §3.1), so its last gain (`bounds`, updated here) bounds it. Candidates are
    scored by descending bound, a round of candidates at a time, until the next bound is below
    the best gain found (Minoux's accelerated greedy, 1978), `LAZY_ROUND_ENTRIES` at a time."""
    gains = torch.full_like(bounds, -math.inf)
    order = torch.argsort(bounds.masked_fill(~available, -math.inf), descending=True, stable=True)
    order = order[: int(available.sum())]
    block = max(1, LAZY_ROUND_ENTRIES // (probs.shape[2] * configs.log_joint.shape[1]))
    best = -math.inf
    for start in range(0, len(order), block):
        positions = order[start : start + block]
        if bounds[positions[0]] < best:
            break
        scored = gains_of(configs, probs[positions], expected[positions], memory_bytes)
        gains[positions] = bounds[positions] = scored
        best = max(best, float(scored.max()))
    return gains


def batchbald_greedy(
    probs: torch.Tensor,
    query: int,
    estimator: JointEstimator,
    generator: torch.Generator,
    ties: TieBreak,
    lazy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Algorithm 1 on MC probabilities `probs` (N × T × C): `query` distinct positions, each the
    largest gain a({x_1..x_n}) − a({x_1..x_n−1}) (equal gains by `ties`), with the gains;
    `lazy`: only the candidates whose last gain could still be the largest are rescored."""
    expected = expected_entropies(probs)
    configs = Configurations.empty(probs.shape[1], probs.device)
    available = torch.ones(len(probs), dtype=torch.bool, device=probs.device)
    bounds = torch.full((len(probs),), math.inf, device=probs.device)
    picks, gains = [], []
    for size in range(1, query + 1):
        if lazy:
            gain = lazy_gains(configs, probs, expected, bounds, available, estimator.memory_bytes)
        else:
            gain = gains_of(configs, probs, expected, estimator.memory_bytes)
        gain = gain.masked_fill(~available, -math.inf)
        pick = ties.argmax(gain)
        picks.append(pick)
        gains.append(float(gain[pick]))
        available[pick] = False
        if size < query:
            samples = estimator.samples_for(size, probs.shape[2])
            configs = extend(configs, probs[pick], samples, generator)
    return torch.tensor(picks, dtype=torch.long), torch.tensor(gains)


def mask_shape(layer: nn.Module, x: torch.Tensor) -> tuple[int, ...]:
    """One sample's dropout mask: per element (Dropout) or per channel (Dropout1d/2d/3d)."""
    if type(layer) is nn.Dropout:
        return tuple(x.shape[1:])
    if isinstance(layer, CHANNEL_DROPOUT):
        return (x.shape[1],) + (1,) * (x.ndim - 2)
    raise ConfigError(f"method=batchbald cannot fix the masks of {type(layer).__name__}")


def fixed_masks(passes: int, generator: torch.Generator) -> Callable:
    """A forward hook for a dropout layer in eval mode: its k-th call multiplies the input by
    mask k mod `passes`, the same for every sample; the masks are drawn at the first call."""
    masks: list[torch.Tensor] = []
    calls = itertools.count()

    def hook(layer: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if not masks:
            keep = torch.full((passes, *mask_shape(layer, x)), 1.0 - layer.p)
            masks.append(torch.bernoulli(keep, generator=generator).div(keep).to(x))
        return x * masks[0][next(calls) % passes]

    return hook


@contextmanager
def consistent_dropout(layers: list[nn.Module], passes: int, seed: int) -> Iterator[None]:
    """Run the dropout `layers` with `passes` fixed masks drawn from `seed`: pass t of every
    sample is the same model ω_t. The layers are in eval mode inside, restored after."""
    generator = torch.Generator().manual_seed(seed)
    modes = [layer.training for layer in layers]
    handles = [layer.register_forward_hook(fixed_masks(passes, generator)) for layer in layers]
    for layer in layers:
        layer.eval()
    try:
        yield
    finally:
        for handle, layer, mode in zip(handles, layers, modes, strict=True):
            handle.remove()
            layer.train(mode)


class BatchBaldSelector(BaldSelector):
    """Greedy BatchBALD over the candidates (or the `candidate_pool` of highest BALD);
    `cache_features` as `BaldSelector`'s."""

    tasks = ("classification",)

    def __init__(
        self,
        passes: PositiveInt = 20,
        samples: PositiveInt = 10_000,
        memory_mb: PositiveFloat = 128,
        lazy: bool = True,
        candidate_pool: int | None = None,
        cache_features: bool = True,
    ) -> None:
        super().__init__(passes, cache_features=cache_features)
        if samples < 1:
            raise ConfigError(f"method.selector.samples={samples} must be at least 1")
        if memory_mb <= 0:
            raise ConfigError(f"method.selector.memory_mb={memory_mb} must be positive, e.g. 128")
        if candidate_pool is not None and candidate_pool < 1:
            raise ConfigError(f"method.selector.candidate_pool={candidate_pool}: null or ≥ 1")
        self.estimator = JointEstimator(samples, int(memory_mb * 2**20))
        self.lazy = lazy
        self.candidate_pool = candidate_pool

    def request(self, request: SelectionRequest) -> None:
        if self.candidate_pool is not None and self.candidate_pool < request.query:
            raise ConfigError(
                f"method.selector.candidate_pool={self.candidate_pool} is below budget.query="
                f"{request.query}: raise it to at least {request.query}, or null for all"
            )
        super().request(request)

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        indices, probs = self.mc_probabilities(module, request.candidates, request.seed)
        pool = self.pool_positions(probs)
        generator = torch.Generator(device=probs.device).manual_seed(request.seed)
        picks, gains = batchbald_greedy(
            probs[pool], request.query, self.estimator, generator, self.ties, self.lazy
        )
        return indices[pool.cpu()[picks]], gains

    def mc_probabilities(
        self, module: pl.LightningModule, loader: DataLoader, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Global indices and MC probabilities (N × T × C, on the module's device) of every
        sample `loader` yields, under the same `passes` dropout masks."""

        def passes(x: torch.Tensor) -> torch.Tensor:
            return torch.stack([F.softmax(p.float(), 1) for p in self.passes_of(module, x)], 1)

        with consistent_dropout(mc_dropout_layers(module), self.passes, seed):
            return collect(loader, passes, module.device)

    def pool_positions(self, probs: torch.Tensor) -> torch.Tensor:
        """Positions of the `candidate_pool` candidates of highest BALD, in pool order (all
        candidates when it is null)."""
        positions = torch.arange(len(probs), device=probs.device)
        if self.candidate_pool is None or self.candidate_pool >= len(probs):
            return positions
        kept = self.ties.order(bald(probs.transpose(0, 1)), self.candidate_pool)
        return positions[kept].sort().values
