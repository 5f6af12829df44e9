"""semi=fixmatch|flexmatch: the losses and thresholds against hand computations, the EMA
against its formula, label blindness of the unlabeled batches, and runs of every standard-
classifier method under it."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from al.build import build_data, build_experiment
from al.errors import ConfigError
from al.loop import run
from al.semi.augment import weak_augment
from al.semi.ema import EmaWeights
from al.semi.losses import fixmatch_loss, flexmatch_thresholds, update_status
from al.semi.protocol import FixMatch, UnlabeledTerm, fixmatch_cosine

from conftest import FASTER, compose_config, killed_run, options, read_results, without_timings
from test_contract import LabelHunter, assert_blind_to_unlabeled_labels, two_stages

SEMI = ["logger=none", "budget.initial=20", "budget.query=10", "budget.stages=2"]
FAST = ["semi.epochs=2", "semi.steps_per_epoch=3", "semi.settings.ratio=2"]


def test_fixmatch_loss_equals_the_hand_computation():
    """Eq. 4 on constructed logits: rows 0 and 2 pass τ = 0.9, row 1 does not."""
    weak = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    strong = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    loss, mask, labels = fixmatch_loss(weak, strong, torch.full((3,), 0.9))
    assert mask.tolist() == [1.0, 0.0, 1.0] and labels.tolist() == [0, 0, 2]
    ce0 = -math.log(math.e / (math.e + math.e**2 + 1))
    ce2 = -math.log(1 / 3)
    assert loss.item() == pytest.approx((ce0 + ce2) / 3, rel=1e-6)
    strong.requires_grad_(True)
    weak.requires_grad_(True)
    fixmatch_loss(weak, strong, torch.full((3,), 0.9))[0].backward()
    assert weak.grad is None and strong.grad[1].abs().sum() == 0  # no gradient via q, masked


def test_flexmatch_thresholds_follow_the_learning_status():
    """σ = (3, 1, 0) over 10 unlabeled samples (6 undecided), τ = 0.9: without warm-up
    β = σ / 3; with it β = σ / max(3, 6); convex M(x) = x / (2 − x)."""
    status = torch.tensor([0, 0, 0, 1, -1, -1, -1, -1, -1, -1, -2, -2])
    plain = flexmatch_thresholds(status, 3, 0.9, warmup=False, mapping="linear")
    assert plain.tolist() == pytest.approx([0.9, 0.3, 0.0])
    warm = flexmatch_thresholds(status, 3, 0.9, warmup=True, mapping="convex")
    beta = torch.tensor([3 / 6, 1 / 6, 0.0])
    assert warm.tolist() == pytest.approx((0.9 * beta / (2 - beta)).tolist())
    update_status(
        status, torch.tensor([4, 5]), torch.tensor([[0.0, 9.0, 0.0], [1.0, 1.0, 1.0]]), 0.9
    )
    assert status[4].item() == 1 and status[5].item() == -1  # only the confident one counts


def flexmatch_rank(rank: int, init_file: str, out: str) -> None:
    """Rank `rank` of 2: its own unlabeled batch (samples 0-3 or 4-7) through FlexMatch's
    term; its learning status saved."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    term = UnlabeledTerm(FixMatch(flexible=True, threshold=0.9), num_classes=3)
    term.start(8, list(range(8)), torch.device("cpu"))
    weak, strong, index = FLEX_BATCHES[rank]
    term(weak, strong, index)
    torch.save(term.status, f"{out}/status{rank}.pt")
    dist.destroy_process_group()


# Two ranks' batches: confident rows (logit 9) set a status, the flat row does not.
FLEX_BATCHES = [
    (
        torch.tensor([[9.0, 0, 0], [0, 9.0, 0], [1.0, 1, 1], [0, 0, 9.0]]),
        torch.zeros(4, 3),
        torch.tensor([0, 1, 2, 3]),
    ),
    (
        torch.tensor([[0, 0, 9.0], [1.0, 1, 1], [9.0, 0, 0], [9.0, 0, 0]]),
        torch.zeros(4, 3),
        torch.tensor([4, 5, 6, 7]),
    ),
]


def test_flexmatch_learning_status_is_every_ranks_under_ddp(tmp_path):
    """Two gloo ranks, each with half the samples: both end with the status one process
    reaches on both batches."""
    mp.spawn(flexmatch_rank, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    statuses = [torch.load(tmp_path / f"status{rank}.pt") for rank in (0, 1)]
    assert statuses[0].tolist() == statuses[1].tolist() == [0, 1, -1, 2, 2, -1, 0, 0]


def test_the_ema_follows_its_formula_and_becomes_the_weights_at_the_end():
    module = pl.LightningModule()
    module.layer = nn.Linear(2, 1)
    ema = EmaWeights(decay=0.9)
    ema.on_train_start(None, module)
    start = module.layer.weight.detach().clone()
    expected = start.clone()
    for step in range(3):
        with torch.no_grad():
            module.layer.weight.add_(step + 1.0)
        ema.on_train_batch_end(None, module, None, None, step)
        expected = 0.9 * expected + 0.1 * module.layer.weight.detach()
    torch.testing.assert_close(ema.average["layer.weight"], expected)
    ema.on_train_end(None, module)
    torch.testing.assert_close(module.layer.weight.detach(), expected)


def test_the_ema_warm_up_forgets_the_initial_weights_in_a_short_run():
    """d_t = min(d, (1 + t)/(10 + t)): 0.1, 2/11, … rising to d; after 100 steps of a constant
    θ the plain EMA still holds 0.999^100 of θ_0, the warmed-up one ∏ d_t of it."""
    module = pl.LightningModule()
    module.layer = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.layer.weight.fill_(0.0)
    plain, warm = EmaWeights(0.999), EmaWeights(0.999, warmup=True)
    for ema in (plain, warm):
        ema.on_train_start(None, module)
    assert warm.rate() == pytest.approx(0.1)
    with torch.no_grad():
        module.layer.weight.fill_(1.0)
    kept = 1.0
    for step in range(100):
        kept *= min(0.999, (1 + step) / (10 + step))
        for ema in (plain, warm):
            ema.on_train_batch_end(None, module, None, None, step)
    assert plain.average["layer.weight"].item() == pytest.approx(1 - 0.999**100, rel=1e-5)
    assert warm.average["layer.weight"].item() == pytest.approx(1 - kept, rel=1e-5)
    assert warm.average["layer.weight"].item() > 0.99


def test_the_cosine_schedule_is_the_papers():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.03)
    schedule = fixmatch_cosine(optimizer, total_steps=16)
    assert schedule["interval"] == "step"
    for _ in range(8):
        optimizer.step()
        schedule["scheduler"].step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.03 * math.cos(7 * math.pi * 8 / 256))


def test_the_labeled_batch_trains_on_its_weak_view_unless_the_dataset_augments_it():
    """`labeled_augmentation`: weak — α(x_b) of Eq. 2, the same flip and shift as the
    unlabeled weak view; dataset — no view of the protocol's (the dataset's own transform)."""
    pixels = torch.rand(6, 1, 8, 8)
    weak = FixMatch(labeled_augmentation="weak").unlabeled_training().labeled_view
    made = weak(pixels, torch.Generator().manual_seed(3))
    expected = weak_augment(pixels, torch.Generator().manual_seed(3), flip=0.5)
    assert torch.equal(made, expected) and not torch.equal(made, pixels)
    assert FixMatch(labeled_augmentation="dataset").unlabeled_training().labeled_view is None
    digits = FixMatch(flip=False).weak_view(pixels, torch.Generator().manual_seed(3))
    assert torch.equal(digits, weak_augment(pixels, torch.Generator().manual_seed(3), flip=0.0))


def test_semi_composes_its_protocol_and_refuses_other_regimes(tmp_path):
    experiment_cfg = compose_config(*SEMI, "semi=flexmatch", "method=margin")
    experiment = build_experiment(experiment_cfg)
    module = experiment.make_module()
    assert (
        module.unlabeled_term.settings.flexible and module.unlabeled_training.batch_size == 7 * 32
    )
    trainer = experiment.make_trainer([])
    assert trainer.max_epochs == 80 and trainer.limit_train_batches == 64  # 4 × FixMatch's
    assert [type(c).__name__ for c in module.training_callbacks()] == ["EmaWeights"]
    with pytest.raises(ConfigError, match="augments images"):
        build_experiment(compose_config(*SEMI, "semi=fixmatch", "dataset=moons"))
    labeled_views = {
        dataset: compose_config("semi=fixmatch", f"dataset={dataset}").semi.settings
        for dataset in ("digits", "fashion_mnist", "cifar10")
    }
    assert {d: s.labeled_augmentation for d, s in labeled_views.items()} == {
        "digits": "dataset",  # 8×8: a 1-pixel shift cuts strokes (conf/dataset/digits.yaml)
        "fashion_mnist": "weak",
        "cifar10": "weak",
    }


OWN_REGIMES = {"ads", "bgadl", "qbc", *(m for m in options("method") if m.startswith("m2_"))}
CLASSIFIER_METHODS = sorted(set(options("method")) - OWN_REGIMES)


def test_the_standard_classifier_methods_are_the_makefiles_semi_sweep():
    assert len(CLASSIFIER_METHODS) == 19 and "ta_vaal" in CLASSIFIER_METHODS
    for method in CLASSIFIER_METHODS:
        assert "semi" in compose_config(f"method={method}").method.module, method


@pytest.mark.parametrize("method", sorted(OWN_REGIMES))
def test_methods_with_their_own_regime_refuse_semi_in_one_line(method):
    with pytest.raises(ConfigError, match=f"method={method} trains its own regime"):
        build_experiment(compose_config(*SEMI, "semi=fixmatch", f"method={method}"))


@pytest.mark.parametrize("method", CLASSIFIER_METHODS)
def test_a_two_stage_run_under_fixmatch(method, tmp_path, monkeypatch):
    """Every stage trains the protocol's 2 epochs of 3 steps, each with the unlabeled term."""
    steps = []
    forward = UnlabeledTerm.forward

    def counted(self, weak_logits, strong_logits, index):
        steps.append(len(index))
        return forward(self, weak_logits, strong_logits, index)

    monkeypatch.setattr(UnlabeledTerm, "forward", counted)
    overrides = [*SEMI, *FAST, "semi=fixmatch", f"method={method}", *FASTER.get(method, [])]
    records = run(compose_config(*overrides), tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert [r["epochs"] for r in records] == [2, 2] and len(steps) == 2 * 2 * 3
    assert set(steps) == {2 * 32}  # μ·B unlabeled samples in every step


def test_a_semi_supervised_run_killed_mid_stage_resumes_to_the_uninterrupted_results(
    tmp_path, monkeypatch
):
    cfg = compose_config(*SEMI, *FAST, "semi=flexmatch", "method=margin")
    uninterrupted = run(cfg, tmp_path / "a")
    killed_run(cfg, tmp_path / "b", monkeypatch, stage=1, finished=False)
    assert len(read_results(tmp_path / "b")) == 1
    assert without_timings(run(cfg, tmp_path / "b")) == without_timings(uninterrupted)


def test_under_semi_the_picks_ignore_unlabeled_labels_and_nothing_reachable_holds_them(
    tiny_config,
):
    """The contract of tests/test_contract.py under semi=flexmatch: picks and scores unchanged
    with the unlabeled labels permuted or all wrong; a selector walking every attribute it can
    reach (the unlabeled training loader, the learning status) finds no unlabeled labels."""
    cfg = tiny_config("method=margin", "semi=flexmatch", *FAST)
    data = build_data(cfg.dataset)
    assert_blind_to_unlabeled_labels(cfg, data)
    cfg.method.selector = {"_target_": "test_contract.LabelHunter"}
    LabelHunter.targets, LabelHunter.planted = data.pool_targets, None
    two_stages(cfg, data)
    assert LabelHunter.found == []
