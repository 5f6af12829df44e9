"""ADS (Fu et al. AAAI 2021): weights, losses and entropy on constructed outputs with
hand-computed answers, which parameters each update moves, the selector's ranking and the
unlabeled training batches a real stage serves it."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from al.budget import Budget
from al.build import build_data, build_module
from al.errors import ConfigError
from al.loop import run, run_stage
from al.methods.ads import (
    STEP_ROLES,
    AdsModule,
    AdsSelector,
    entropy_weights,
    labeled_bce,
    mean_entropy,
    prediction_discrepancy,
)
from al.methods.selector import SelectionRequest
from al.models.cnn import SmallCNN
from al.models.mlp import MLP
from al.pool import Pool
from al.progress import stage_progress
from al.sinks import EpochMetricsCallback, Sink

from conftest import experiment_for

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4)


def small_module(head: str = "linear", **options) -> AdsModule:
    torch.manual_seed(0)
    backbone = SmallCNN([1, 8, 8], 10, channels=(4, 8), hidden=16)
    return AdsModule(backbone, SGD, 10, head=head, **options)


def test_entropy_weights_are_the_sigmoid_of_the_entropy_minus_tau_over_n():
    """σ(E − τ) = 1/2, 3/4, 1/4 at E − τ = 0, ln 3, −ln 3; n = 3 (Eqs. 4 and 7)."""
    entropy = torch.tensor([0.1, 0.1 + math.log(3), 0.1 - math.log(3)])
    agreement, discrepancy = entropy_weights(entropy, tau=0.1)
    assert torch.allclose(agreement, torch.tensor([1 / 2, 1 / 4, 3 / 4]) / 3)
    assert torch.allclose(discrepancy, torch.tensor([1 / 2, 3 / 4, 1 / 4]) / 3)
    code_agreement, code_discrepancy = entropy_weights(entropy, tau=0.1, weighting="code")
    assert torch.allclose(code_agreement, agreement / 128)
    assert torch.allclose(code_discrepancy, discrepancy / 128)


def test_agreement_and_discrepancy_losses_on_constructed_outputs():
    """La' = (1/C) Σ |ŷ¹ − ŷ²| (Eq. 2): (0.3 + 0.2 + 0)/3 and 0; Ld' = 1 − La' (Eq. 6)."""
    first = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.2, 0.2]])
    second = torch.tensor([[0.6, 0.3, 0.5], [0.2, 0.2, 0.2]])
    agreement = prediction_discrepancy(torch.stack([first, second]))
    assert torch.allclose(agreement, torch.tensor([1 / 6, 0.0]))
    assert torch.allclose(1 - agreement, torch.tensor([5 / 6, 1.0]))


def test_mean_entropy_as_eq_3_and_as_the_code():
    """Eq. 3: −½ Σ_k Σ_c ŷ ln ŷ of the raw sigmoid outputs; the code: renormalised, bits."""
    first = torch.tensor([[0.5, 0.5], [0.2, 0.2], [0.25, 0.75]])
    second = torch.tensor([[1.0, 0.0], [0.2, 0.2], [0.5, 0.5]])
    outputs = torch.stack([first, second])
    quarter = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    paper = [math.log(2) / 2, -2 * 0.2 * math.log(0.2), (quarter + math.log(2)) / 2]
    code = [0.5, 1.0, (quarter / math.log(2) + 1) / 2]
    assert torch.allclose(mean_entropy(outputs, "paper"), torch.tensor(paper))
    assert torch.allclose(mean_entropy(outputs, "code"), torch.tensor(code))


def test_labeled_bce_sums_classes_and_classifiers_and_averages_the_batch():
    scores = torch.zeros(2, 2, 3)  # every ŷ = 1/2: BCE ln 2 per class
    assert labeled_bce(scores, torch.tensor([0, 2])).item() == pytest.approx(2 * 3 * math.log(2))


@pytest.mark.parametrize("head", ["linear", "cosine_prototype"])
def test_the_prediction_is_the_mean_of_the_two_sigmoid_classifiers(head):
    module = small_module(head).eval()
    x = torch.randn(5, 1, 8, 8)
    mean = module.classifier_probabilities(x).mean(0)
    assert torch.allclose(module(x).exp(), mean, atol=1e-6)
    assert torch.equal(module(x).argmax(1), mean.argmax(1))


def test_the_agreement_loss_weighs_each_sample_by_its_entropy():
    """La = Σ_i (1/n)(1 − σ(E_i − τ)) La'_i (Eq. 5), rebuilt from the module's outputs, with
    the default E: each classifier's outputs renormalised, entropy in bits, averaged."""
    torch.manual_seed(1)
    module = AdsModule(MLP([4], 3, hidden=(8,)), SGD, 3, tau=0.3)
    x = torch.randn(6, 4)
    probabilities = module.classifier_probabilities(x)
    renormalised = probabilities / probabilities.sum(2, keepdim=True)
    entropy = -(renormalised * renormalised.log2()).sum(2).mean(0)
    difference = (probabilities[0] - probabilities[1]).abs().mean(1)
    expected = ((1 - torch.sigmoid(entropy - 0.3)) / 6 * difference).sum()
    loss, mean = module.agreement_loss(x)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert mean.item() == pytest.approx(entropy.mean().item(), rel=1e-5)


GROUPS = {"classifier": "backbone.classifier.", "g": "backbone.", "f": "heads."}


def moved_groups(before: dict[str, torch.Tensor], module: AdsModule) -> set[str]:
    """Which of g, f (f1 and f2) and the backbone's unused classifier moved since `before`."""
    moved = set()
    for name, parameter in module.named_parameters():
        if not torch.equal(before[name], parameter):
            moved.add(next(key for key, prefix in GROUPS.items() if name.startswith(prefix)))
    return moved


def stepping_by_hand(module: AdsModule) -> list[tuple[str, set[str]]]:
    """Run the module's steps outside a Trainer (backward by hand, its own optimizers) and
    return, per update in `training_step`'s order, the loss it logged and what it moved."""
    optimizers = module.configure_optimizers()[0]
    module.optimizers = lambda: optimizers
    module.manual_backward = lambda loss: loss.backward()
    updates = []
    plain_update = module.update

    def recording(optimizer, loss, batch_idx, held=()):
        before = {name: p.detach().clone() for name, p in module.named_parameters()}
        logged = plain_update(optimizer, loss, batch_idx, held)
        updates.append((logged, moved_groups(before, module)))
        return logged

    module.update = recording
    return updates


def one_training_step(module: AdsModule) -> list[set[str]]:
    """What each update of one epoch-0 step moves: [labeled, (agreement, discrepancy,)
    labeled] (Algorithm 1's extra labeled pass first in epoch 0)."""
    updates = stepping_by_hand(module)
    torch.manual_seed(2)
    labeled = (torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]))
    unlabeled = (torch.randn(8, 1, 8, 8), torch.arange(8))
    module.training_step({"labeled": labeled, "unlabeled": unlabeled}, 0)
    return [moved for _, moved in updates]


@pytest.mark.parametrize("head", ["linear", "cosine_prototype"])
@pytest.mark.parametrize("step_optimizer", ["sgd", "run", "separate"])
def test_each_update_moves_only_its_parameters(head, step_optimizer):
    """Under every step_optimizer: the labeled step (Eq. 1) moves g, f1, f2, the agreement
    step (Eq. 5) g alone, the discrepancy step (Eq. 8) f1, f2 alone; the backbone's own linear
    classifier is never trained."""
    module = small_module(head, step_optimizer=step_optimizer)
    moved = one_training_step(module)
    assert moved == [{"g", "f"}, {"g"}, {"f"}, {"g", "f"}]


def test_without_unlabeled_steps_only_the_labeled_bce_trains():
    """unlabeled_steps=false: epoch 0's extra labeled step and the step's own, nothing else."""
    module = small_module(unlabeled_steps=False)
    assert one_training_step(module) == [{"g", "f"}, {"g", "f"}]
    assert sorted(module.epoch_means.names) == ["labeled_bce", "loss"]


ADAM = functools.partial(torch.optim.Adam, lr=1e-3)


def held_parameters(module: AdsModule, optimizer: torch.optim.Optimizer) -> set[str]:
    """Which of g, f and the backbone's classifier `optimizer` holds parameters of."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    names = [name for name, p in module.named_parameters() if id(p) in held]
    return {
        next(key for key, prefix in GROUPS.items() if name.startswith(prefix)) for name in names
    }


@pytest.mark.parametrize(
    ("step_optimizer", "expected"),
    [
        ("sgd", [("Adam", {"g", "f"}), ("SGD", {"g"}), ("SGD", {"f"})]),
        ("run", [("Adam", {"g", "f"})]),
        ("separate", [("Adam", {"g", "f"}), ("Adam", {"g"}), ("Adam", {"f"})]),
    ],
)
def test_the_step_optimizer_option_builds_these_optimizers(step_optimizer, expected):
    """With the run's optimizer Adam: sgd adds SGD(lr 0.1, momentum 0, weight decay 5e-4)
    for the agreement and discrepancy steps; each optimizer holds exactly these groups; the
    run's scheduler goes to the run's optimizers only."""
    torch.manual_seed(0)
    backbone = SmallCNN([1, 8, 8], 10, channels=(4, 8), hidden=16)
    scheduler = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    module = AdsModule(backbone, ADAM, 10, scheduler, step_optimizer=step_optimizer)
    optimizers, schedulers = module.configure_optimizers()
    built = [(type(o).__name__, held_parameters(module, o)) for o in optimizers]
    assert built == expected
    assert [s.optimizer for s in schedulers] == [
        o for o in optimizers if type(o).__name__ == "Adam"
    ]
    for optimizer in optimizers[1:] if step_optimizer == "sgd" else []:
        settings = optimizer.param_groups[0]
        assert (settings["lr"], settings["momentum"], settings["weight_decay"]) == (0.1, 0, 5e-4)
    labeled, agreement, discrepancy = (optimizers[i] for i in STEP_ROLES[step_optimizer])
    assert labeled is optimizers[0]
    assert (agreement is discrepancy) == (step_optimizer == "run")


def agreement_step_of_g(step_optimizer: str, weighting: str) -> torch.Tensor:
    """How far one agreement step moves g's parameters (flattened), without weight decay."""
    torch.manual_seed(0)
    backbone = SmallCNN([1, 8, 8], 10, channels=(4, 8), hidden=16)
    module = AdsModule(
        backbone,
        ADAM,
        10,
        weighting=weighting,
        step_optimizer=step_optimizer,
        step_sgd={"weight_decay": 0.0},
    )
    module.double().eval()  # float64: steps of 1e-8 stay exact; eval: the same outputs
    stepping_by_hand(module)
    before = torch.cat([p.detach().flatten().clone() for p in module.backbone.parameters()])
    agreement_optimizer = module.step_optimizers()[1]
    torch.manual_seed(3)
    x_u = torch.randn(8, 1, 8, 8, dtype=torch.float64)
    module.update(agreement_optimizer, module.agreement_loss(x_u)[0], 0)
    return torch.cat([p.detach().flatten() for p in module.backbone.parameters()]) - before


def test_under_sgd_the_weights_scale_the_agreement_step_and_under_separate_adam_they_do_not():
    """The code's weights are the paper's / 128: under SGD g moves exactly 128× less; under a
    fresh Adam of its own (separate) the step is the same size either way."""
    sgd_paper, sgd_code = agreement_step_of_g("sgd", "paper"), agreement_step_of_g("sgd", "code")
    assert sgd_paper.abs().max() > 0
    assert torch.allclose(sgd_code * 128, sgd_paper, rtol=1e-4, atol=1e-9)
    adam_paper = agreement_step_of_g("separate", "paper").norm()
    adam_code = agreement_step_of_g("separate", "code").norm()
    assert adam_code / adam_paper > 0.5


def test_the_selector_ranks_by_the_mean_entropy_of_both_classifiers():
    """Candidates 10-13: (ŷ¹, ŷ²) built so that Eq. 3 and the code's entropy rank them apart."""
    same = [[0.95, 0.35], [0.05, 0.05], [0.5, 0.4]]
    first = torch.tensor([*same, [0.5, 0.5]])
    second = torch.tensor([*same, [1.0, 0.0]])
    table = torch.stack([first, second])
    module = small_module()
    module.classifier_probabilities = lambda x: table[:, x[:, 0].long()]

    def h(*p):
        return -sum(v * math.log(v) for v in p)

    paper = {10: h(0.95, 0.35), 11: h(0.05, 0.05), 12: h(0.5, 0.4), 13: math.log(2) / 2}
    bits = {10: h(0.95 / 1.3, 0.35 / 1.3), 11: math.log(2), 12: h(5 / 9, 4 / 9)}
    code = {**{i: v / math.log(2) for i, v in bits.items()}, 13: 0.5}
    for variant, expected, order in [
        ("paper", paper, [12, 10, 13, 11]),
        ("code", code, [11, 12, 10, 13]),
    ]:
        module.entropy = variant
        indices, scores = AdsSelector().select(module, candidates_request(4))
        assert indices.tolist() == order, variant
        assert torch.allclose(scores, torch.tensor([expected[i] for i in order]), atol=1e-6)


def test_the_default_ranks_a_sample_no_class_fits_above_a_confident_one(tiny_config):
    """Candidate 10: every sigmoid 0.001 in both classifiers (no class fits); candidate 11:
    one sigmoid 0.999, the rest 0.001 (confident). The configured default (the code's
    renormalised entropy) puts 10 first at log2 10 bits, 11 at 0.10 bits; Eq. 3 on the raw
    sigmoids scores both ≈ 0 (0.069 and 0.063 nats): it cannot tell them apart."""
    low, high = 0.001, 0.999
    none_fits = torch.full((10,), low)
    confident = torch.tensor([high, *[low] * 9])
    table = torch.stack([none_fits, confident]).expand(2, 2, 10)
    module = build_module(tiny_config("method=ads"), 10)
    module.classifier_probabilities = lambda x: table[:, x[:, 0].long()]
    indices, scores = AdsSelector().select(module, candidates_request(2, candidates=2))
    shares = confident / confident.sum()
    assert indices.tolist() == [10, 11]
    assert scores[0].item() == pytest.approx(math.log2(10), abs=1e-5)
    assert scores[1].item() == pytest.approx(-(shares * shares.log2()).sum().item(), abs=1e-5)
    assert scores[1].item() == pytest.approx(0.1019, abs=1e-4)
    module.entropy = "paper"
    paper = AdsSelector().select(module, candidates_request(2, candidates=2))[1]
    h_low, h_high = -low * math.log(low), -high * math.log(high)
    assert paper.tolist() == pytest.approx([10 * h_low, h_high + 9 * h_low], abs=1e-6)


def candidates_request(query: int, candidates: int = 4) -> SelectionRequest:
    """Candidates 10, 11, … whose input is the row of the constructed outputs."""
    indices = torch.arange(10, 10 + candidates)
    dataset = TensorDataset(torch.arange(float(candidates))[:, None], indices)
    loader = DataLoader(dataset, batch_size=3)
    return SelectionRequest(loader, loader, indices, query=query, seed=0)


def test_a_stage_trains_on_the_unlabeled_loader_without_labels(tiny_config, monkeypatch):
    """One real stage on digits: every step gets a labeled (x, y) batch and an unlabeled
    (x, global index) batch of the datamodule's unlabeled training loader; one epoch covers
    every unlabeled sample and no labeled one."""
    seen = []
    original = AdsModule.training_step

    def recording(self, batch, batch_idx):
        seen.append((self.trainer.datamodule, batch))
        return original(self, batch, batch_idx)

    monkeypatch.setattr(AdsModule, "training_step", recording)
    cfg = tiny_config("method=ads", "trainer.max_epochs=1")
    data = build_data(cfg.dataset)
    budget = Budget(initial=30, query=10, stages=1, subset=60)
    pool = Pool.with_initial(len(data.pool_targets), budget.initial, cfg.seed)
    logger = EpochMetricsCallback(Sink(), stage=0, epochs_before=0)
    outcome = run_stage(experiment_for(cfg, data, budget), pool, 0, None, logger, stage_progress())
    datamodule = seen[0][0]
    assert datamodule.unlabeled_training is outcome.module.unlabeled_training
    unlabeled = torch.cat([batch["unlabeled"][1] for _, batch in seen]).numpy()
    assert all(len(batch["unlabeled"]) == 2 for _, batch in seen)
    assert np.array_equal(np.sort(unlabeled), np.sort(pool.unlabeled_indices))
    assert not np.isin(unlabeled, pool.labeled_indices).any()
    assert all(len(batch["unlabeled"][1]) <= 128 for _, batch in seen)
    assert len(seen) == math.ceil(len(pool.unlabeled_indices) / 128)
    assert 0 <= outcome.test_metrics["test/classifier_acc/1"] <= 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"head": "mlp"}, "head='mlp' is not one of linear, cosine_prototype"),
        ({"entropy": "binary"}, "entropy='binary'"),
        ({"weighting": "fixed"}, "weighting='fixed'"),
        ({"step_optimizer": "adam"}, "step_optimizer='adam' is not one of sgd, run, separate"),
        ({"head": "cosine_prototype", "prototypes": 0}, "prototypes=0"),
        ({"head": "cosine_prototype", "temperature": 0.0}, "temperature=0.0"),
        ({"train_loss_prediction": True}, "lpm_on_all_methods=false"),
    ],
)
def test_the_ads_options_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        small_module(**options)


def test_the_selector_refuses_a_module_without_two_classifiers():
    class Plain(torch.nn.Module):
        device = torch.device("cpu")

    with pytest.raises(ConfigError, match="use method=ads"):
        AdsSelector().check_module(Plain())


def test_ddp_is_refused_before_the_run_directory_is_touched(tiny_config, tmp_path):
    cfg = tiny_config("method=ads", "trainer=ddp")
    with pytest.raises(ConfigError, match="method=ads updates its networks in several"):
        run(cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []
