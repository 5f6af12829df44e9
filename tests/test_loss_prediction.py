"""Pair losses against hand-computed values; the module learns a known loss ranking; the
backbone is cut off after the detach epoch."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from al.errors import ConfigError
from al.methods.classifier import ClassifierModule
from al.models.backbone import BackboneOutput
from al.models.loss_prediction import (
    LossPredictionModule,
    LossPredictionSettings,
    flipped_pairs,
    hinge_pair_loss,
    ranking_pair_loss,
)
from al.models.mlp import MLP
from al.reports.lpm_check import ranking_summary

# Pairs (0, 3) and (1, 2): predicted gaps 0.5 and −1; true gaps +0.8 and −1.5.
PREDICTED = torch.tensor([0.5, 1.0, 2.0, 0.0])
TARGET = torch.tensor([1.0, 0.5, 2.0, 0.2])


def test_pairs_are_the_batch_against_itself_flipped():
    assert flipped_pairs(torch.tensor([1.0, 2.0, 4.0, 8.0])).tolist() == [-7.0, -2.0]
    assert flipped_pairs(torch.tensor([1.0, 2.0, 4.0, 8.0, 99.0])).tolist() == [-7.0, -2.0]


def test_hinge_pair_loss_by_hand():
    # pair (0,3): I = +1, max(0, 1 − 0.5) = 0.5; pair (1,2): I = −1, max(0, 1 − 1) = 0
    assert hinge_pair_loss(PREDICTED, TARGET).item() == pytest.approx(0.25)
    assert hinge_pair_loss(torch.ones(4), TARGET, margin=2.0).item() == pytest.approx(2.0)


def test_ranking_pair_loss_by_hand():
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    expected = (-math.log(sigmoid(0.5)) - math.log(1 - sigmoid(-1.0))) / 2
    assert ranking_pair_loss(PREDICTED, TARGET).item() == pytest.approx(expected)


@pytest.mark.parametrize("pair_loss", [hinge_pair_loss, ranking_pair_loss])
def test_odd_batches_drop_their_last_sample_and_single_samples_give_zero(pair_loss):
    odd_predicted = torch.cat([PREDICTED, torch.tensor([5.0])])
    odd_target = torch.cat([TARGET, torch.tensor([-3.0])])
    assert pair_loss(odd_predicted, odd_target) == pair_loss(PREDICTED, TARGET)
    single = torch.tensor([0.3], requires_grad=True)
    loss = pair_loss(single, torch.tensor([1.0]))
    loss.backward()
    assert loss.item() == 0.0 and single.grad is not None


def test_module_maps_stage_outputs_to_one_loss_per_sample():
    module = LossPredictionModule([4, 6], hidden=128)
    stages = [torch.randn(3, 4, 5, 5), torch.randn(3, 6)]
    assert module(stages).shape == (3,)
    assert module.out.in_features == 256


def constructed_stage_outputs(count: int, seed: int) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A 4-channel 3×3 map and a 6-d vector per sample, and a loss known to rise with the
    map's channel-0 mean and fall with the vector's entry 2."""
    generator = torch.Generator().manual_seed(seed)
    stages = [
        torch.randn(count, 4, 3, 3, generator=generator),
        torch.randn(count, 6, generator=generator),
    ]
    loss = F.softplus(3 * stages[0][:, 0].mean((1, 2)) - stages[1][:, 2])
    return stages, loss


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's ρ (no ties): the correlation of the ranks."""
    ranks = torch.stack([a.argsort().argsort(), b.argsort().argsort()]).float()
    return torch.corrcoef(ranks)[0, 1].item()


def trained_on_pairs(pair_loss, stages: list[torch.Tensor], loss: torch.Tensor, epochs: int):
    """A module trained by `pair_loss` on shuffled batches of 32, each paired with itself
    flipped, as the task learner's loop trains it."""
    torch.manual_seed(0)
    module = LossPredictionModule([4, 6], hidden=128)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    for _ in range(epochs):
        for batch in torch.randperm(len(loss)).split(32):
            optimizer.zero_grad()
            pair_loss(module([s[batch] for s in stages]), loss[batch]).backward()
            optimizer.step()
    return module


@pytest.mark.parametrize(
    "pair_loss", [hinge_pair_loss, ranking_pair_loss], ids=["hinge", "ranking"]
)
def test_module_ranks_held_out_samples_by_their_known_loss(pair_loss):
    """Taught on 512 samples, the module orders 256 others as their true losses do."""
    module = trained_on_pairs(pair_loss, *constructed_stage_outputs(512, seed=1), epochs=10)
    held_out, true_loss = constructed_stage_outputs(256, seed=2)
    with torch.no_grad():
        assert rank_correlation(module(held_out), true_loss) > 0.9


def test_ranking_summary_by_hand():
    """al.reports.lpm_check's report: a score in the true losses' order gives ρ = 1 overall and
    within each class, and its top 2 are samples 1 and 2 (both class 1, true losses 4 and 3)."""
    score = np.array([0.1, 0.9, 0.5, 0.3])
    true_loss, labels = np.array([1.0, 4.0, 3.0, 2.0]), np.array([0, 1, 1, 0])
    summary = ranking_summary(score, true_loss, labels, query=2, classes=3)
    assert summary == {
        "rho": pytest.approx(1.0),
        "rho_within_class": pytest.approx(1.0),
        "picks_by_class": [0, 2, 0],
        "picks_true_loss": 3.5,
        "all_true_loss": 2.5,
    }
    reversed_summary = ranking_summary(-score, true_loss, labels, query=2, classes=3)
    assert reversed_summary["rho"] == pytest.approx(-1.0)
    assert reversed_summary["picks_by_class"] == [2, 0, 0]


def test_joint_training_ends_at_the_switch_epoch_or_fraction():
    assert LossPredictionSettings().last_joint_epoch(200) == 120  # both codes
    assert LossPredictionSettings().last_joint_epoch(50) == 30
    assert LossPredictionSettings(switch_fraction=0.8).last_joint_epoch(200) == 160  # Alg. 1
    assert LossPredictionSettings(switch_epoch=7).last_joint_epoch(200) == 7
    with pytest.raises(ConfigError, match=r"loss_prediction\.schedule='later'"):
        LossPredictionSettings(schedule="later")
    with pytest.raises(ConfigError, match=r"loss_prediction.switch_fraction=1.5"):
        LossPredictionSettings(switch_fraction=1.5)


def lpm_module(
    switch_epoch: int | None, pair_loss: str = "hinge", schedule: str = "detach"
) -> ClassifierModule:
    torch.manual_seed(0)
    return ClassifierModule(
        MLP([2], 3),
        torch.optim.SGD,
        num_classes=3,
        loss_prediction={"switch_epoch": switch_epoch, "eta": 1.0, "schedule": schedule},
        train_loss_prediction=True,
        pair_loss=pair_loss,
    )


def pair_loss_gradients(module: ClassifierModule, epoch: int, max_epochs: int = 200):
    module.zero_grad()
    x, y = torch.randn(8, 2), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    out: BackboneOutput = module.backbone(x)
    module.training_losses(out, y, epoch, max_epochs)["pair"].backward()
    backbone = [p.grad for p in module.backbone.layers.parameters()]
    predictor = [p.grad for p in module.loss_predictor.parameters()]
    return backbone, predictor


@pytest.mark.parametrize("pair_loss", ["hinge", "ranking"])
def test_gradient_reaches_the_backbone_only_until_the_switch_epoch(pair_loss):
    module = lpm_module(switch_epoch=5, pair_loss=pair_loss)
    backbone, predictor = pair_loss_gradients(module, epoch=5)
    assert any(g is not None and g.abs().sum() > 0 for g in backbone)
    backbone, predictor = pair_loss_gradients(module, epoch=6)
    assert all(g is None or g.abs().sum() == 0 for g in backbone)
    assert any(g is not None and g.abs().sum() > 0 for g in predictor)


def test_freeze_stops_training_the_module_after_the_switch_epoch():
    module = lpm_module(switch_epoch=5, schedule="freeze")
    backbone, predictor = pair_loss_gradients(module, epoch=5)
    assert any(g is not None and g.abs().sum() > 0 for g in backbone)
    assert any(g is not None and g.abs().sum() > 0 for g in predictor)
    out = module.backbone(torch.randn(8, 2))
    losses = module.training_losses(out, torch.tensor([0, 1, 2, 0, 1, 2, 0, 1]), 6, 200)
    assert set(losses) == {"ce"}  # epoch 6: the task learner alone, the module untouched


def test_unknown_pair_loss_and_missing_predictor_are_refused():
    with pytest.raises(ConfigError, match="pair_loss='l2'"):
        lpm_module(switch_epoch=1, pair_loss="l2")
    plain = ClassifierModule(MLP([2], 3), torch.optim.SGD, num_classes=3)
    with pytest.raises(ConfigError, match="train_loss_prediction=true"):
        plain.predicted_loss(torch.randn(2, 2))
    with pytest.raises(ConfigError, match=r"needs trainer\.max_epochs"):
        pair_loss_gradients(lpm_module(switch_epoch=None), epoch=0, max_epochs=-1)
