"""Networks computed across DDP ranks as one process computes them (al.methods.rank_split): in
two gloo processes, each running a conv encoder with BatchNorm and a head with BatchNorm on its
share of an odd batch, the loss, the parameter gradients (as DDP averages them) and the running
statistics are one process's on the whole batch, to rounding — also where one split network
reads another's gathered output and a term reads that output directly (VAAL's VAE step)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from al.methods import shards
from al.methods.rank_split import (
    RankSplit,
    SyncedBatchNorm,
    share_bounds,
    split_across_ranks,
    split_for_scoring,
)

BATCH, WORLD = 7, 2  # shares of 3 and 4 rows


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU())
        self.scale = 2.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).flatten(1)

    def halves(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self(x)
        return features[:, :8], features[:, 8:]


def networks() -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(8, 5, bias=False), nn.BatchNorm1d(5), nn.Tanh(), nn.Linear(5, 1))
    return Encoder(), head


def objective(encoder, head, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """A per-sample weighted head loss on one half of the encoder's features, and a term on
    the other half read directly (the gathered output) — two paths into the encoder."""
    first, second = encoder.halves(x)
    return (head(first).squeeze(1) * weights).mean() + encoder.scale * second.square().mean()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(BATCH, 3, 6, 6, generator=generator), torch.rand(BATCH, generator=generator)


def outcome(encoder, head, loss: torch.Tensor) -> dict:
    parameters = [*encoder.parameters(), *head.parameters()]
    return {
        "loss": loss.item(),
        "gradients": [p.grad.flatten().tolist() for p in parameters],
        "running": [
            m.running_var.tolist() + m.running_mean.tolist()
            for m in [*encoder.modules(), *head.modules()]
            if isinstance(m, nn.modules.batchnorm._BatchNorm)
        ],
    }


def one_process() -> dict:
    encoder, head = networks()
    loss = objective(encoder, head, *inputs())
    loss.backward()
    return outcome(encoder, head, loss)


def rank_run(rank: int, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/init", rank=rank, world_size=WORLD)
    encoder, head = networks()
    rows = [0]
    encoder.conv.register_forward_pre_hook(lambda _, x: rows.__setitem__(0, rows[0] + len(x[0])))
    split_encoder = split_across_ranks(encoder, rank, WORLD, ("halves",))
    split_head = split_across_ranks(head, rank, WORLD)
    loss = objective(split_encoder, split_head, *inputs())
    loss.backward()
    for parameter in [*encoder.parameters(), *head.parameters()]:
        dist.all_reduce(parameter.grad)  # DDP's average of the ranks' gradients
        parameter.grad /= WORLD
    result = outcome(encoder, head, loss) | {"encoder_rows": rows[0]}
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    with tempfile.TemporaryDirectory() as out:
        mp.spawn(rank_run, args=(out,), nprocs=WORLD, join=True)
        return [json.loads(Path(out, f"rank{r}.json").read_text()) for r in range(WORLD)]


@pytest.mark.parametrize("key", ["gradients", "running"])
def test_two_ranks_train_what_one_process_trains(ranks, key):
    single = one_process()
    for rank in ranks:
        assert rank["loss"] == pytest.approx(single["loss"], rel=1e-6)
        for ours, theirs in zip(rank[key], single[key], strict=True):
            assert torch.allclose(torch.tensor(ours), torch.tensor(theirs), atol=1e-6, rtol=1e-5)


def test_each_rank_computes_its_share_of_the_batch(ranks):
    assert [rank["encoder_rows"] for rank in ranks] == [3, 4]


def test_the_gradients_are_not_all_zero(ranks):
    assert all(any(abs(g) > 1e-4 for g in gradient) for gradient in ranks[0]["gradients"])


def test_shares_are_contiguous_and_cover_the_batch():
    assert share_bounds(7, 2) == [(0, 3), (3, 7)]
    assert share_bounds(2, 3) == [(0, 0), (0, 1), (1, 2)]


def test_one_process_keeps_plain_batchnorm_and_attributes():
    """Outside a process group the synced layer is BatchNorm; the wrapper passes `net`'s
    attributes through and shares its parameters."""
    encoder, _ = networks()
    plain = nn.BatchNorm2d(4)
    plain.load_state_dict(encoder.conv[1].state_dict())
    split = split_across_ranks(encoder, 0, 1)
    assert isinstance(encoder.conv[1], SyncedBatchNorm) and isinstance(split, RankSplit)
    assert split.scale == 2.0 and list(split.parameters()) == list(encoder.parameters())
    x = torch.randn(5, 4, 3, 3)
    assert torch.equal(encoder.conv[1](x), plain(x))


def test_a_sharded_selection_scores_on_the_rank_s_share():
    """Inside a sharded selection a scoring network is split over its ranks; outside, as is."""
    net = nn.Linear(2, 1)
    assert split_for_scoring(net) is net
    token = shards._CURRENT.set(shards.Shards(1, 2))
    try:
        split = split_for_scoring(net, ("encode",))
    finally:
        shards._CURRENT.reset(token)
    assert isinstance(split, RankSplit) and (split.rank, split.world, split.methods) == (
        1,
        2,
        ("encode",),
    )
