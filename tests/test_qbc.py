"""Query by committee: known-answer disagreements, members initialised apart but reproducibly,
the committee's mean prediction, bagging counts, and a committee of one that trains exactly as
the standard classifier."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from al.build import build_module
from al.data.datamodule import MemberOrders, MemberOrderSampler
from al.errors import ConfigError, build
from al.loop import run
from al.methods.classifier import ClassifierModule
from al.methods.qbc import (
    DISAGREEMENTS,
    BootstrapCounts,
    CommitteeModule,
    QbcSelector,
    kl_to_consensus,
    max_disagreement,
    vote_entropy,
)
from al.methods.selector import SelectionRequest
from al.models.cnn import SmallCNN
from al.models.mlp import MLP
from al.tasks import Classification

from conftest import FASTER, compose_config

LN2, LN43 = math.log(2), math.log(4 / 3)
consensus_entropy = DISAGREEMENTS["consensus_entropy"]
ensemble_bald = DISAGREEMENTS["ensemble_bald"]
variation_ratios = DISAGREEMENTS["variation_ratios"]

# (M=2 members, B=4 samples, C=2 classes):
#   sample 0: certain and opposed      → votes split: VE = ln 2; H(p̄) = ln 2; KL mean = ln 2
#   sample 1: both uniform              → votes agree (argmax ties → class 0): VE = 0; H(p̄) = ln 2
#   sample 2: certain and agreeing      → everything 0
#   sample 3: [1, 0] against [.5, .5]   → p̄ = [.75, .25]: KL = ln(4/3) and ½ ln(4/3)
TWO_MEMBERS = torch.tensor(
    [
        [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [1.0, 0.0]],
        [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [0.5, 0.5]],
    ]
)
# 4 members voting 0, 0, 1, 2 on one sample: VE = −(½ ln ½ + 2·¼ ln ¼) = 1.5 ln 2; VR = ½.
FOUR_VOTES = torch.tensor(
    [[[0.9, 0.05, 0.05]], [[0.6, 0.3, 0.1]], [[0.2, 0.7, 0.1]], [[0.0, 0.0, 1.0]]]
)


def close(actual: torch.Tensor, *expected: float) -> bool:
    return torch.allclose(actual, torch.tensor(expected), atol=1e-6)


def test_vote_entropy_is_the_entropy_of_the_vote_shares_in_nats():
    assert close(vote_entropy(TWO_MEMBERS), LN2, 0.0, 0.0, 0.0)
    assert close(vote_entropy(FOUR_VOTES), 1.5 * LN2)


def test_consensus_entropy_is_the_entropy_of_the_mean_prediction():
    h_three_to_one = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert close(consensus_entropy(TWO_MEMBERS), LN2, LN2, 0.0, h_three_to_one)


def test_kl_to_consensus_averages_and_max_disagreement_takes_the_largest_member_kl():
    assert close(kl_to_consensus(TWO_MEMBERS), LN2, 0.0, 0.0, 0.75 * LN43)
    assert close(max_disagreement(TWO_MEMBERS), LN2, 0.0, 0.0, LN43)


def test_ensemble_bald_is_the_mean_kl_to_the_consensus():
    assert close(ensemble_bald(TWO_MEMBERS), LN2, 0.0, 0.0, 0.75 * LN43)
    probs = torch.distributions.Dirichlet(torch.ones(7)).sample((5, 64))
    assert torch.allclose(ensemble_bald(probs), kl_to_consensus(probs), atol=1e-5)


def test_variation_ratios_count_the_votes_against_the_modal_class():
    assert close(variation_ratios(FOUR_VOTES), 0.5)
    assert close(variation_ratios(TWO_MEMBERS), 0.5, 0.0, 0.0, 0.0)


def small_cnn(seed: int) -> SmallCNN:
    torch.manual_seed(seed)
    return SmallCNN([1, 8, 8], 10)


def committee(
    seed: int, members: int = 3, committee: str = "ensemble", member_data: str = "shared"
) -> CommitteeModule:
    """A committee of small CNNs; `shared` batches by default (one batch, every member)."""
    backbone = small_cnn(seed)
    return CommitteeModule(
        backbone,
        torch.optim.Adam,
        10,
        members=members,
        committee=committee,
        member_backbone=small_cnn,
        member_data=member_data,
    )


def flat_weights(member: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in member.parameters()])


def test_members_are_fresh_backbones_from_their_own_seeds_reproducibly():
    module, again, other = committee(0), committee(0), committee(1)
    weights = [flat_weights(member) for member in module.members]
    assert all(torch.equal(w, flat_weights(m)) for w, m in zip(weights, again.members, strict=True))
    assert not torch.equal(weights[1], flat_weights(other.members[1]))
    assert torch.equal(weights[0], flat_weights(small_cnn(0)))  # member 0: as built
    for m in (1, 2):  # member m: the backbone built from member m's seed alone
        assert torch.equal(weights[m], flat_weights(small_cnn(module.member_seed(m))))
        # independent draws, not one draw's entries reordered
        assert not torch.equal(weights[0].sort().values, weights[m].sort().values)


def test_the_configured_factory_builds_members_of_the_runs_model_and_spares_the_global_stream():
    cfg = compose_config("method=qbc", "model.dropout=0.3")
    torch.manual_seed(5)
    module = build_module(cfg, 10)
    after = torch.rand(1)
    torch.manual_seed(5)
    build_module(compose_config("method=entropy", "model.dropout=0.3"), 10)
    assert torch.equal(after, torch.rand(1))  # members 1..4 drew from their own seeds only
    assert len(module.members) == 5
    for member in module.members:
        assert type(member) is type(module.members[0]) and member.dropout.p == 0.3
    factory = build(cfg.method.module.member_backbone)
    assert torch.equal(
        flat_weights(module.members[3]), flat_weights(factory(module.member_seed(3)))
    )


def test_forward_is_the_log_of_the_members_mean_softmax():
    module = committee(0).eval()
    x = torch.randn(6, 1, 8, 8)
    mean_softmax = torch.stack([F.softmax(m(x).logits, 1) for m in module.members]).mean(0)
    assert torch.allclose(module(x), mean_softmax.log(), atol=1e-6)
    assert torch.allclose(module.member_probabilities(x).mean(0), mean_softmax, atol=1e-6)


def test_bagging_weighs_samples_by_poisson_counts_apart_per_member_and_reproducibly():
    draws = []
    for _ in range(2):
        module = committee(0, members=4, committee="bagging")
        module.on_fit_start()
        draws.append(torch.stack([module.sample_weights(500) for _ in range(3)]))
    assert torch.equal(draws[0], draws[1])
    weights = draws[0]  # (steps, members, batch)
    assert torch.equal(weights, weights.round()) and weights.min() == 0
    assert abs(weights.mean().item() - 1) < 0.05  # Poisson(1): mean 1 ...
    assert abs((weights == 0).float().mean().item() - math.exp(-1)) < 0.03  # ... P(0) = 1/e
    assert all(not torch.equal(weights[0, i], weights[0, j]) for i in range(4) for j in range(i))
    assert not torch.equal(weights[0], weights[1])  # a fresh count every batch
    ensemble = committee(0, members=4)
    assert torch.equal(ensemble.sample_weights(5), torch.ones(4, 5))


def test_training_loss_sums_each_members_weighted_mean_cross_entropy():
    module = committee(0, members=2, committee="bagging")
    module.on_fit_start()
    x, y = torch.randn(8, 1, 8, 8), torch.randint(10, (8,))
    loss = module.training_step((x, y), 0)
    module.on_fit_start()
    weights = module.sample_weights(8)
    by_hand = sum(
        (w * F.cross_entropy(m(x).logits, y, reduction="none")).mean()
        for w, m in zip(weights, module.members, strict=True)
    )
    assert torch.allclose(loss, by_hand, atol=1e-6)
    assert weights[0].tolist() != weights[1].tolist()  # the two members saw different samples


def tiny_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(48, 1, 8, 8, generator=generator), torch.randint(10, (48,))
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)


def trained(make_module) -> tuple[pl.LightningModule, dict]:
    pl.seed_everything(3, verbose=False)
    module = make_module(SmallCNN([1, 8, 8], 10))
    trainer = pl.Trainer(
        max_epochs=3, logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(module, tiny_loader())
    return module, trainer.test(module, tiny_loader(), verbose=False)[0]


def test_a_committee_of_one_trains_exactly_as_the_standard_classifier():
    plain, plain_metrics = trained(lambda b: ClassifierModule(b, torch.optim.Adam, 10))
    single, single_metrics = trained(
        lambda b: CommitteeModule(b, torch.optim.Adam, 10, members=1, member_data="shared")
    )
    for (name, value), (_, member_value) in zip(
        plain.backbone.state_dict().items(), single.members[0].state_dict().items(), strict=True
    ):
        assert torch.equal(value, member_value), name
    assert single_metrics["test/acc"] == plain_metrics["test/acc"]
    assert single_metrics["test/member_acc/0"] == plain_metrics["test/acc"]


def test_selector_picks_the_most_disputed_candidates():
    module = SimpleNamespace(
        member_probabilities=lambda x: TWO_MEMBERS[:, x], device="cpu", task=Classification()
    )
    indices = torch.arange(10, 14)
    loader = [(torch.arange(4), indices)]
    request = SelectionRequest(loader, loader, indices, query=2, seed=0)
    picks, scores = QbcSelector("kl_to_consensus").select(module, request)
    assert picks.tolist() == [10, 13] and close(scores, LN2, 0.75 * LN43)


def test_bad_options_are_refused_naming_the_key():
    with pytest.raises(ConfigError, match="disagreement='entropy'"):
        QbcSelector("entropy")
    with pytest.raises(ConfigError, match=r"method\.module\.members=0 must be a positive"):
        committee(0, members=0)
    with pytest.raises(ConfigError, match=r"method\.module\.committee='boosting'"):
        committee(0, committee="boosting")
    with pytest.raises(ConfigError, match=r"method\.module\.member_data='bagged'"):
        CommitteeModule(small_cnn(0), torch.optim.Adam, 10, members=1, member_data="bagged")
    with pytest.raises(
        ConfigError, match=r"method\.module\.members=2 needs method\.module\.member_b"
    ):
        CommitteeModule(small_cnn(0), torch.optim.Adam, 10, members=2)
    with pytest.raises(ConfigError, match="set lpm_on_all_methods=false"):
        build_module(compose_config("method=qbc", "lpm_on_all_methods=true"), 10)
    single = ClassifierModule(MLP([2], 10), torch.optim.Adam, num_classes=10)
    for module in (single, committee(0, members=1)):
        with pytest.raises(ConfigError, match="needs a committee of at least two members"):
            QbcSelector().setup(None, module, "fit")


def two_stages(tiny_config, tmp_path, committee: str, epochs: int) -> list[dict]:
    """Two stages of a 2-member `committee` on TINY digits: 20, then 30 labels."""
    cfg = tiny_config(
        "method=qbc",
        f"method.module.committee={committee}",
        "budget.stages=2",
        f"trainer.max_epochs={epochs}",
        *FASTER["qbc"],
    )
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    return records


def test_two_bagged_stages_record_each_members_test_accuracy(tiny_config, tmp_path):
    """(The default ensemble runs end to end in test_methods.py and test_contract.py.)"""
    records = two_stages(tiny_config, tmp_path, "bagging", epochs=2)
    for record in records:
        assert {"test/member_acc/0", "test/member_acc/1"} <= set(record)
        assert "test/member_acc/2" not in record


def test_bootstrap_counts_are_n_draws_with_replacement_per_member_looked_up_by_index():
    labeled = np.array([40, 3, 17, 8, 25])  # global indices, in the pool's order
    counts = BootstrapCounts.draw(labeled, members=300, seed=0)
    assert torch.equal(counts.counts.sum(1), torch.full((300,), 5.0)), "n draws each"
    left_out = (counts.counts == 0).float().mean().item()
    assert abs(left_out - (4 / 5) ** 5) < 0.03  # P(never drawn) = (1 − 1/n)^n
    again = BootstrapCounts.draw(labeled, members=300, seed=0)
    assert torch.equal(counts.counts, again.counts)
    by_id = counts.weights(torch.tensor([25, 3]))
    assert torch.equal(by_id, counts.counts[:, [3, 0]])  # sorted ids: 3, 8, 17, 25, 40


def test_a_bootstrap_member_weighs_its_epoch_by_its_resample():
    """One epoch's weighted loss per member, summed over batches, equals the sum of the
    sample losses of its resample (each sample as often as it was drawn)."""
    module = committee(0, members=2, committee="bootstrap")
    labeled = np.arange(0, 24, 2)
    module.resample = BootstrapCounts.draw(labeled, 2, seed=5)
    torch.manual_seed(1)
    x, y = torch.randn(12, 1, 8, 8), torch.randint(10, (12,))
    with torch.no_grad():
        losses = torch.stack(
            [F.cross_entropy(m(x).logits, y, reduction="none") for m in module.members]
        )
    weights = module.sample_weights(12, torch.from_numpy(labeled))
    resampled = [
        sum(losses[m, i] * int(module.resample.counts[m, i]) for i in range(12)) for m in range(2)
    ]
    assert torch.allclose((weights * losses).sum(1), torch.stack(resampled))


def test_two_bootstrap_stages_serve_the_labeled_ids_the_committee_weighs(
    tiny_config, tmp_path, monkeypatch
):
    """Every epoch looks up each labeled sample's count exactly once, by its global index."""
    seen, weights = [], BootstrapCounts.weights
    monkeypatch.setattr(
        BootstrapCounts, "weights", lambda self, ids: seen.append(ids) or weights(self, ids)
    )
    records = two_stages(tiny_config, tmp_path, "bootstrap", epochs=1)
    first, second = ({int(i) for i in ids.flatten()} for ids in seen)  # one batch a stage
    assert len(first) == 20 and len(second) == 30 and first < second
    assert first != set(range(20)), "global indices, not positions in the labeled set"
    assert {"test/member_acc/0", "test/member_acc/1"} <= set(records[-1])


def epoch_steps(sampler: MemberOrderSampler, epoch: int) -> torch.Tensor:
    """One epoch of the sampler's positions as (steps, members, batch); n divides evenly."""
    sampler.set_epoch(epoch)
    positions = torch.tensor(list(sampler))
    return positions.unflatten(0, (-1, sampler.members, sampler.batch_size))


def test_shuffled_members_see_their_own_permutation_of_the_same_samples_every_epoch():
    """12 positions, 3 members, batches of 4: every step holds each member's next 4; over the
    epoch each member sees all 12 once (the same multiset), in an order of its own, and the
    same orders again for the same seed and epoch, new ones the next epoch."""
    dataset = TensorDataset(torch.arange(12))
    sampler = MemberOrderSampler(dataset, members=3, batch_size=4, seed=7)
    steps = epoch_steps(sampler, 0)
    assert steps.shape == (3, 3, 4) and len(sampler) == 36
    orders = steps.transpose(0, 1).flatten(1)  # (members, 12): each member's epoch
    for order in orders:
        assert sorted(order.tolist()) == list(range(12))
    assert all(not torch.equal(orders[i], orders[j]) for i in range(3) for j in range(i))
    again = MemberOrderSampler(dataset, members=3, batch_size=4, seed=7)
    assert torch.equal(epoch_steps(again, 0), steps)
    assert not torch.equal(epoch_steps(again, 1), steps)
    # member m's order does not depend on how many members there are
    two = MemberOrderSampler(dataset, members=2, batch_size=4, seed=7)
    assert torch.equal(epoch_steps(two, 0).transpose(0, 1).flatten(1), orders[:2])


def test_shuffled_orders_end_with_every_members_remainder_and_split_across_ranks():
    dataset = TensorDataset(torch.arange(10))
    sampler = MemberOrderSampler(dataset, members=2, batch_size=4, seed=0)
    positions = list(sampler)
    batches = [positions[i : i + 8] for i in range(0, len(positions), 8)]
    assert [len(b) for b in batches] == [8, 8, 4]  # the last: 2 remaining for each member
    orders = sampler.epoch_orders()
    assert batches[-1] == [*orders[0, 8:].tolist(), *orders[1, 8:].tolist()]
    shards = [
        MemberOrderSampler(dataset, 2, 4, seed=0, rank=rank, replicas=2).epoch_orders()
        for rank in (0, 1)
    ]
    assert all(torch.equal(shard, orders) for shard in shards)  # one permutation per member
    ranks = [list(MemberOrderSampler(dataset, 2, 4, seed=0, rank=r, replicas=2)) for r in (0, 1)]
    assert [len(r) for r in ranks] == [10, 10]
    member_0 = ranks[0][:4] + ranks[0][8:9], ranks[1][:4] + ranks[1][8:9]
    assert sorted(member_0[0] + member_0[1]) == list(range(10))  # rank 0 and 1 split it


def test_a_shuffled_step_trains_each_member_on_its_own_part_of_the_batch():
    module = committee(0, members=2, member_data="shuffled")
    assert module.member_orders == MemberOrders(2, module.member_orders.seed)
    torch.manual_seed(2)
    x, y = torch.randn(6, 1, 8, 8), torch.randint(10, (6,))
    loss = module.training_step((x, y), 0)
    by_hand = sum(
        F.cross_entropy(member(x[3 * m : 3 * m + 3]).logits, y[3 * m : 3 * m + 3])
        for m, member in enumerate(module.members)
    )
    assert torch.allclose(loss, by_hand, atol=1e-6)
    counts = BootstrapCounts.draw(np.array([4, 9, 2]), members=2, seed=1)
    ids = torch.tensor([[9, 2], [4, 9]])
    expected = torch.stack([counts.counts[0, [2, 0]], counts.counts[1, [1, 2]]])
    assert torch.equal(counts.weights(ids), expected)  # each member's own samples' counts


WEIGHTS = BootstrapCounts.weights


def served_ids(tiny_config, tmp_path, monkeypatch, member_data: str) -> list[torch.Tensor]:
    """The labeled ids each training step of a 2-member bootstrap committee looked up: one
    stage of 20 labels, 2 epochs, batches of 8."""
    seen = []
    monkeypatch.setattr(
        BootstrapCounts, "weights", lambda self, ids: seen.append(ids) or WEIGHTS(self, ids)
    )
    cfg = tiny_config(
        "method=qbc",
        "method.module.committee=bootstrap",
        f"method.module.member_data={member_data}",
        "budget.stages=1",
        "trainer.max_epochs=2",
        "loader.batch_size=8",
        *FASTER["qbc"],
    )
    run(cfg, tmp_path)
    return seen


def test_a_shuffled_committee_gets_each_members_own_order_reproducibly(
    tiny_config, tmp_path, monkeypatch
):
    """Per epoch (3 steps of 8, 8, 4 per member) each member sees the 20 labeled samples once,
    in orders that differ between members and epochs; a rerun serves the same orders."""
    seen = served_ids(tiny_config, tmp_path / "a", monkeypatch, "shuffled")
    assert [tuple(ids.shape) for ids in seen] == [(2, 8), (2, 8), (2, 4)] * 2
    epochs = [torch.cat(seen[e * 3 : e * 3 + 3], dim=1) for e in (0, 1)]  # (members, 20) each
    labeled = sorted(epochs[0][0].tolist())
    for epoch in epochs:
        assert all(sorted(order.tolist()) == labeled for order in epoch)
        assert not torch.equal(epoch[0], epoch[1])
    assert len(set(labeled)) == 20 and not torch.equal(epochs[0], epochs[1])
    again = served_ids(tiny_config, tmp_path / "b", monkeypatch, "shuffled")
    assert all(torch.equal(a, b) for a, b in zip(seen, again, strict=True))


def test_a_shared_committee_serves_one_shuffled_batch_to_every_member(
    tiny_config, tmp_path, monkeypatch
):
    """member_data=shared: the loader as before — batches of loader.batch_size, one per step,
    every member trains on it."""
    seen = served_ids(tiny_config, tmp_path, monkeypatch, "shared")
    assert [tuple(ids.shape) for ids in seen] == [(8,), (8,), (4,)] * 2
    assert sorted(torch.cat(seen[:3]).tolist()) == sorted(torch.cat(seen[3:]).tolist())
