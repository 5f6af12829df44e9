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
from al.errors import ConfigError
from al.loop import build_data, run, run_stage
from al.methods.ads import (
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
    """La = Σ_i (1/n)(1 − σ(E_i − τ)) La'_i (Eq. 5), rebuilt from the module's outputs."""
    torch.manual_seed(1)
    module = AdsModule(MLP([4], 3, hidden=(8,)), SGD, 3, tau=0.3)
    x = torch.randn(6, 4)
    probabilities = module.classifier_probabilities(x)
    entropy = -(probabilities * probabilities.log()).sum(2).mean(0)
    difference = (probabilities[0] - probabilities[1]).abs().mean(1)
    expected = ((1 - torch.sigmoid(entropy - 0.3)) / 6 * difference).sum()
    loss, mean = module.agreement_loss(x)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert mean.item() == pytest.approx(entropy.mean().item(), rel=1e-5)


def parameters_moved(module: AdsModule, step) -> dict[str, bool]:
    """Which of g, f1, f2 and the backbone's unused classifier one optimizer step moves."""
    before = {name: p.detach().clone() for name, p in module.named_parameters()}
    optimizer, loss = step(module)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    moved = {name: not torch.equal(before[name], p) for name, p in module.named_parameters()}
    groups = {"classifier": "backbone.classifier.", "g": "backbone.", "f": "heads."}
    result = {}
    for name, changed in moved.items():
        group = next(key for key, prefix in groups.items() if name.startswith(prefix))
        result.setdefault(group, set()).add(changed)
    return result


def agreement_step(module: AdsModule):
    return module.configure_optimizers()[0][1], module.agreement_loss(torch.randn(8, 1, 8, 8))[0]


def discrepancy_step(module: AdsModule):
    x_u, x_l, y_l = torch.randn(8, 1, 8, 8), torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    discrepancy, bce = module.discrepancy_loss(x_u, x_l, y_l)
    return module.configure_optimizers()[0][2], discrepancy + bce


def labeled_step(module: AdsModule):
    x_l, y_l = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    return module.configure_optimizers()[0][0], module.labeled_loss(x_l, y_l)[0]


@pytest.mark.parametrize("head", ["linear", "cosine_prototype"])
@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (agreement_step, {"g": {True}, "f": {False}}),
        (discrepancy_step, {"g": {False}, "f": {True}}),
        (labeled_step, {"g": {True}, "f": {True}}),
    ],
)
def test_each_update_moves_only_its_parameters(head, step, expected):
    """Agreement (Eq. 5) moves g alone, discrepancy (Eq. 8) f1 and f2 alone, the labeled
    step (Eq. 1) all of them; the backbone's own linear classifier is never trained."""
    moved = parameters_moved(small_module(head), step)
    assert moved == {**expected, "classifier": {False}}


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


def candidates_request(query: int) -> SelectionRequest:
    """Candidates 10-13 whose input is the row of the constructed outputs."""
    dataset = TensorDataset(torch.arange(4.0)[:, None], torch.arange(10, 14))
    loader = DataLoader(dataset, batch_size=3)
    return SelectionRequest(loader, loader, torch.arange(10, 14), query=query, seed=0)


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
    outcome = run_stage(cfg, data, pool, budget, 0, None, logger, stage_progress())
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
        AdsSelector().score(Plain(), torch.zeros(1, 4))


def test_ddp_is_refused_before_the_run_directory_is_touched(tiny_config, tmp_path):
    cfg = tiny_config("method=ads", "trainer=ddp")
    with pytest.raises(ConfigError, match="method=ads updates its networks in several"):
        run(cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []
