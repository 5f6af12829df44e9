"""A network computed across DDP ranks as one process computes it: each rank runs the network
on its contiguous share of every batch, the outputs of all ranks are gathered (in batch order)
onto every rank, and every rank evaluates the same loss on the whole batch. BatchNorm layers
normalise with the statistics of the whole batch, summed across the ranks. In exact arithmetic
the gradients, the updates and the networks are those of one process training on the whole
batch (on the CPU they agree to rounding); each rank does 1/world of the work.

Why the gradient is right: on every rank, the gradient of a tensor every rank holds alike is
what that rank's own computations contributed, and these parts sum over the ranks to `world`
times the whole batch's gradient (every rank computes the same loss). A gather therefore hands
each rank's share the ranks' summed gradient of its rows, the synced statistics are all-reduced
with autograd (their gradients summed the same way), and DDP's average of the ranks' parameter
gradients is one process's gradient.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from al.methods.shards import current_shards


def share_bounds(batch: int, world: int) -> list[tuple[int, int]]:
    """(start, stop) of each rank's contiguous share of `batch` rows (the last ranks take one
    more where `world` does not divide `batch`)."""
    return [(batch * rank // world, batch * (rank + 1) // world) for rank in range(world)]


class GatherShares(torch.autograd.Function):
    """Every rank's share of a batch, concatenated in rank order on every rank; backward: this
    rank's rows of the gradient summed over the ranks (each rank's gradient holds what its own
    computation contributed)."""

    @staticmethod
    def forward(ctx, share: torch.Tensor, sizes: Sequence[int], rank: int) -> torch.Tensor:
        ctx.start, ctx.size = sum(sizes[:rank]), sizes[rank]
        padded = share.new_zeros((max(sizes), *share.shape[1:]))
        padded[: len(share)] = share
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        summed = grad.contiguous().clone()
        dist.all_reduce(summed)
        return summed[ctx.start : ctx.start + ctx.size], None, None


class SumAcrossRanks(torch.autograd.Function):
    """The sum of a tensor over the ranks, on every rank; backward: the ranks' gradients summed
    (each rank's holds what its own computation contributed)."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        summed = tensor.clone()
        dist.all_reduce(summed)
        return summed

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        summed = grad.contiguous().clone()
        dist.all_reduce(summed)
        return summed


class RankSplit(nn.Module):
    """`net`, whose `methods` (and calls) each take a batch and return a tensor or a tuple of
    tensors of its rows, computed on this rank's share of the batch and gathered: every rank
    sees the whole batch's outputs. Arguments that are not tensors with the batch's rows pass
    as they are; other attributes are `net`'s."""

    def __init__(self, net: nn.Module, rank: int, world: int, methods: Sequence[str] = ()) -> None:
        super().__init__()
        self.net, self.rank, self.world, self.methods = net, rank, world, tuple(methods)

    def forward(self, *args):
        return self.split(self.net, *args)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            attribute = getattr(self._modules["net"], name)
            return functools.partial(self.split, attribute) if name in self.methods else attribute

    def split(self, method: Callable, *args):
        batch = next(len(a) for a in args if isinstance(a, torch.Tensor))
        bounds = share_bounds(batch, self.world)
        start, stop = bounds[self.rank]
        local = [
            a[start:stop] if isinstance(a, torch.Tensor) and a.dim() and len(a) == batch else a
            for a in args
        ]
        outputs = method(*local)
        sizes = [b - a for a, b in bounds]
        if isinstance(outputs, tuple):
            return tuple(GatherShares.apply(o, sizes, self.rank) for o in outputs)
        return GatherShares.apply(outputs, sizes, self.rank)


class SyncedBatchNorm(_BatchNorm):
    """BatchNorm whose training statistics are those of the whole batch across the default
    process group's ranks (Σx and Σx² in float64, all-reduced with autograd in one exchange);
    any backend, the CPU's gloo included (torch's SyncBatchNorm runs on accelerators only).
    Evaluation, or one process, is plain BatchNorm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected a batch of at least 2 dimensions, got {x.dim()}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        shape = [1, -1, *[1] * (x.dim() - 2)]
        values = x.float()
        sums = values.sum(dims, dtype=torch.float64)
        squares = values.square().sum(dims, dtype=torch.float64)
        count = sums.new_tensor([x.numel() / max(x.shape[1], 1)])
        totals = SumAcrossRanks.apply(torch.cat([sums, squares, count]))  # one exchange
        channels, n = x.shape[1], totals[-1]
        mean = totals[:channels] / n
        variance = (totals[channels:-1] / n - mean.square()).clamp_min(0.0)  # float64
        if self.track_running_stats:
            self.update_running_stats(mean.detach(), variance.detach(), n.item())
        scale = torch.rsqrt(variance + self.eps).float().view(shape)
        normalised = (values - mean.float().view(shape)) * scale
        if self.affine:
            normalised = normalised * self.weight.view(shape) + self.bias.view(shape)
        return normalised

    @torch.no_grad()
    def update_running_stats(self, mean: torch.Tensor, variance: torch.Tensor, n: float) -> None:
        """torch's update: momentum (or the cumulative mean without one), unbiased variance."""
        self.num_batches_tracked += 1
        momentum = self.momentum
        if momentum is None:
            momentum = 1.0 / float(self.num_batches_tracked)
        unbiased = variance * n / max(n - 1, 1.0)
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), momentum)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)


def synced_batchnorm(module: nn.Module) -> nn.Module:
    """`module` with every BatchNorm layer replaced, in place, by a `SyncedBatchNorm` holding
    the same parameters and buffers (so optimizers and state dicts see no change)."""
    for name, child in module.named_children():
        if isinstance(child, _BatchNorm) and not isinstance(child, SyncedBatchNorm):
            synced = SyncedBatchNorm(
                child.num_features,
                child.eps,
                child.momentum,
                child.affine,
                child.track_running_stats,
            )
            synced._parameters, synced._buffers = child._parameters, child._buffers
            synced.train(child.training)
            setattr(module, name, synced)
        else:
            synced_batchnorm(child)
    return module


def split_across_ranks(
    net: nn.Module, rank: int, world: int, methods: Sequence[str] = ()
) -> RankSplit:
    """`net` with synced BatchNorm, computed on this rank's share of every batch (`RankSplit`)."""
    return RankSplit(synced_batchnorm(net), rank, world, methods)


def split_for_scoring(net: nn.Module, methods: Sequence[str] = ()) -> nn.Module:
    """`net` computed on this rank's share of every batch while a selection is sharded
    (`al.methods.shards`), so a scoring pass over the candidates computes each once across
    the ranks; `net` itself otherwise."""
    shards = current_shards()
    return net if shards is None else RankSplit(net, shards.rank, shards.world, methods)
