"""Self-supervised pretraining on the pool, the shared cache, embedding mode and the cold-start
initial pool: known answers, label blindness, cache reuse and invalidation, exact resume."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightly.models.utils import update_momentum

from al.build import build_data, module_factory
from al.cache import CacheEntry
from al.embedding import embedded_data, encoded_tensors
from al.encoders import cache_key, embedding_mode, representation_weights
from al.errors import ConfigError, build
from al.initial import initial_indices
from al.loop import run
from al.methods.cold_start import unit_rows
from al.methods.margin import MarginSelector
from al.methods.probcover import ProbCoverSelector
from al.methods.selector import TieBreak
from al.models.backbone import load_backbone_weights
from al.models.head import LinearProbe
from al.pool import stage_rng
from al.representation.objectives import Byol, SimClr
from al.representation.pretrain import EpochCheckpoint, EpochSampler, Pretraining
from al.representation.views import Augmentation, TwoViews
from al.runtime.signals import RunStopped

from conftest import compose_config, read_results

FAST = ["representation.epochs=2", "representation.batch_size=128", "logger=none"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("AL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def simclr_config(*overrides: str):
    return compose_config("representation=simclr", *FAST, *overrides)


def test_nt_xent_equals_the_hand_computed_loss():
    """SimCLR's Eq. 1 averaged over the 2N anchors, on constructed projections."""
    torch.manual_seed(0)
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    module = SimClr(LinearProbe([5], 2), 5, 3, temperature=0.5, lr=0.1, momentum=0, weight_decay=0)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    similarity = z @ z.T / 0.5
    losses = []
    for i in range(8):
        positive = (i + 4) % 8
        others = [similarity[i, k].exp() for k in range(8) if k != i]
        losses.append(-math.log(similarity[i, positive].exp() / sum(others)))
    assert module.loss(z1, z2).item() == pytest.approx(sum(losses) / 8, rel=1e-5)


def test_two_views_are_drawn_from_seed_epoch_and_position_and_carry_no_label(cache):
    data = build_data(compose_config().dataset)
    views = TwoViews(
        data.pool.unlabeled(range(len(data.pool))),
        data.pool.pixel_stats,
        Augmentation().transform([8, 8], 1),
        seed=3,
    )
    first, second = views[5]
    assert not torch.equal(first, second) and first.shape == (1, 8, 8)
    assert torch.equal(views[5][0], first)  # again: the same draw
    assert not torch.equal(views[len(views) + 5][0], first)  # the next epoch: another
    sampler = EpochSampler(10, seed=1)
    sampler.set_epoch(2)
    assert sorted(i - 20 for i in sampler) == list(range(10))


def pretrained(cfg, data):
    return representation_weights(cfg, data)


def test_pretraining_never_reads_labels_and_changes_the_backbone(cache, monkeypatch):
    cfg = simclr_config()
    data = build_data(cfg.dataset)
    weights = pretrained(cfg, data)
    fresh = build(cfg.model).state_dict()
    assert not any(name.startswith("classifier.") for name in weights)
    assert any(not torch.equal(weights[k], fresh[k]) for k in weights)
    monkeypatch.setenv("AL_CACHE", str(cache.parent / "another_cache"))  # computed again
    data.pool_targets = np.random.default_rng(0).permutation(data.pool_targets)
    permuted = pretrained(simclr_config(), data)
    assert list((cache.parent / "another_cache").rglob("*.pt"))
    assert all(torch.equal(permuted[k], weights[k]) for k in weights)


def test_the_cache_is_shared_across_methods_and_invalidated_by_its_config(cache, monkeypatch):
    calls = []
    original = Pretraining.pretrain

    def counted(self, *args, **kwargs):
        calls.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pretraining, "pretrain", counted)
    cfg = simclr_config("method=margin")
    data = build_data(cfg.dataset)
    first = pretrained(cfg, data)
    second = pretrained(simclr_config("method=coreset", "budget.query=20"), data)
    assert calls == ["simclr"] and all(torch.equal(first[k], second[k]) for k in first)
    pretrained(simclr_config("representation.epochs=1"), data)
    pretrained(simclr_config("seed=1"), data)
    assert len(calls) == 3
    entry = CacheEntry(cfg.paths.cache, "representation", cache_key(cfg, "representation"))
    entry.path.write_bytes(entry.path.read_bytes()[:-10])  # damaged: recomputed, not used
    assert all(torch.equal(first[k], pretrained(cfg, data)[k]) for k in first)
    assert len(calls) == 4


def test_pretraining_stopped_after_an_epoch_resumes_to_the_uninterrupted_weights(
    cache, monkeypatch
):
    cfg = simclr_config()
    data = build_data(cfg.dataset)
    uninterrupted = pretrained(cfg, data)
    for path in cache.rglob("*.pt"):
        path.unlink()
    save = EpochCheckpoint.on_train_epoch_end

    def stop_after_first(self, trainer, module):
        save(self, trainer, module)
        raise RunStopped(15)

    monkeypatch.setattr(EpochCheckpoint, "on_train_epoch_end", stop_after_first)
    with pytest.raises(RunStopped):
        pretrained(cfg, data)
    assert list(cache.rglob("*.ckpt")) and not list(cache.rglob("*.pt"))
    monkeypatch.setattr(EpochCheckpoint, "on_train_epoch_end", save)
    resumed = pretrained(cfg, data)
    assert all(torch.equal(uninterrupted[k], resumed[k]) for k in resumed)
    assert not list(cache.rglob("*.ckpt"))


def test_embedding_mode_scores_as_the_frozen_model_with_the_same_head(cache):
    cfg = compose_config("embedding=linear", "method=margin")
    data = build_data(cfg.dataset)
    encoder = build(cfg.model)
    tensors = encoded_tensors(data, encoder, torch.device("cpu"), 100)
    features = embedded_data(data, tensors)
    head = LinearProbe([tensors["pool"].shape[1]], 10)
    head.classifier.load_state_dict(encoder.classifier.state_dict())
    encoder.eval()
    x = torch.stack([data.pool.unlabeled(range(40))[i][0] for i in range(40)])
    with torch.no_grad():
        full = encoder(x).logits
        probe = head(features.pool.inputs.x[:40]).logits
    torch.testing.assert_close(full, probe, rtol=1e-5, atol=1e-5)
    margins = [MarginSelector().score_probabilities(z.softmax(1)) for z in (full, probe)]
    assert torch.equal(margins[0].topk(10).indices, margins[1].topk(10).indices)
    assert torch.equal(tensors["test_targets"], torch.as_tensor(data.test.y))


def test_embedding_mode_builds_the_head_on_the_features_and_caches_them(cache):
    cfg = compose_config("embedding=mlp", "method=vaal", "model.dropout=0.3")
    data = build_data(cfg.dataset)
    head_cfg, features = embedding_mode(cfg, data, None)
    width = features.pool.inputs.x.shape[1]
    assert head_cfg.model._target_ == "al.models.mlp.MLP" and head_cfg.model.dropout == 0.3
    assert list(head_cfg.dataset.input_shape) == [width] == features.input_shape()
    assert list(build(head_cfg.method.selector).input_shape) == [width]
    assert cfg.model._target_ != head_cfg.model._target_  # the run's own config is untouched
    assert len(list((cache / "embedding").glob("*.pt"))) == 1
    again = embedding_mode(cfg, data, None)[1]
    assert torch.equal(again.pool.inputs.x, features.pool.inputs.x)


def test_pretrained_weights_load_into_everything_but_the_classifier():
    model = compose_config().model
    source, target = build(model), build(model)
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    load_backbone_weights(target, weights)
    assert all(torch.equal(target.state_dict()[k], weights[k]) for k in weights)
    with pytest.raises(RuntimeError, match="do not fit"):
        load_backbone_weights(target, {"nonsense.weight": torch.zeros(1)})


def test_every_committee_member_starts_from_the_pretrained_trunk_with_its_own_head():
    cfg = compose_config("method=qbc", "method.module.members=3")
    source = build(cfg.model)
    weights = {k: v for k, v in source.state_dict().items() if not k.startswith("classifier.")}
    committee = module_factory(cfg, 10, build(cfg.dataset.task), weights)()
    for member in committee.members:
        assert all(torch.equal(member.state_dict()[k], weights[k]) for k in weights)
    heads = [member.classifier.weight for member in committee.members]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])


def test_cold_start_initial_pools_need_features_and_cover_the_classes(cache):
    cfg = compose_config("embedding=linear")
    data = build_data(cfg.dataset)
    with pytest.raises(ConfigError, match="add embedding=linear"):
        initial_indices("typiclust", data, 10, 0, None)
    moons = build_data(compose_config("dataset=moons").dataset)
    for strategy in ("typiclust", "probcover"):
        picks = initial_indices(strategy, moons, 10, 0, None)
        assert len(set(picks.tolist())) == 10
        assert np.array_equal(picks, initial_indices(strategy, moons, 10, 0, None))
        assert set(moons.pool_targets[picks]) == {0, 1}


def test_the_initial_pool_takes_the_runs_own_cold_start_selectors_settings():
    """method=probcover with δ = 0.3 sets the initial pool's δ (not the purity heuristic's);
    another method's selector leaves the defaults; a run composed so picks the same."""
    moons = build_data(compose_config("dataset=moons").dataset)
    default = initial_indices("probcover", moons, 10, 0, None)
    own = initial_indices(
        "probcover", moons, 10, 0, None, None, None, lambda: ProbCoverSelector(delta=0.3)
    )
    other = initial_indices("probcover", moons, 10, 0, None, None, None, MarginSelector)
    expected = ProbCoverSelector(delta=0.3).picks(
        unit_rows(moons.pool.inputs.x.float().numpy()),
        np.zeros(len(moons.pool_targets), dtype=bool),
        10,
        TieBreak(int(stage_rng(0, 0, "probcover").integers(2**31 - 1))),
        0,
        moons.num_classes,
    )[0]
    assert np.array_equal(own, expected) and np.array_equal(other, default)
    assert not np.array_equal(own, default)


def test_a_run_pretrains_once_then_every_method_starts_from_the_cache(cache, tmp_path):
    common = ["embedding=linear", "budget.initial=10", "budget.query=10", "budget.stages=2"]
    first = run(simclr_config(*common, "method=typiclust"), tmp_path / "a")
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*.pt")}
    second = run(simclr_config(*common, "method=random"), tmp_path / "b")
    assert len(stamp) == 2 and stamp == {p: p.stat().st_mtime_ns for p in cache.rglob("*.pt")}
    assert [r["n_labeled"] for r in first] == [r["n_labeled"] for r in second] == [10, 20]
    assert read_results(tmp_path / "a")[0]["n_labeled"] == 10


def test_representation_on_vectors_is_one_line(cache):
    with pytest.raises(ConfigError, match="representation=simclr augments images"):
        run(simclr_config("dataset=moons"), cache / "run")


def test_byols_target_is_an_ema_whose_rate_rises_to_one_on_a_cosine():
    module = Byol(
        LinearProbe([4], 2), 4, 3, 8, momentum_base=0.9, lr=0.1, momentum=0, weight_decay=0
    )

    class Clock:
        estimated_stepping_batches = 10
        global_step = 0

    clock = module._trainer = Clock()
    rates = []
    for step in (0, 5, 10):
        clock.global_step = step
        rates.append(module.target_rate())
    assert rates == pytest.approx([0.9, 0.95, 1.0])  # 1 − (1 − τ_base)(cos(πk/K) + 1)/2
    online = [p.detach().clone() for p in module.projection.parameters()]
    target = [p.detach().clone() for p in module.target_projection.parameters()]
    with torch.no_grad():
        for p in module.projection.parameters():
            p.add_(1.0)
    tau = 0.9
    update_momentum(module.projection, module.target_projection, tau)
    after_update = list(module.target_projection.parameters())
    for before_t, before_o, after in zip(target, online, after_update, strict=True):
        torch.testing.assert_close(after, tau * before_t + (1 - tau) * (before_o + 1.0))
