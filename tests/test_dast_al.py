"""ISDA's covariance and surrogate loss, and DAST-AL's EPMCM bound (Eq. 7) against Monte Carlo."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from al.errors import ConfigError
from al.methods.classifier import ClassifierModule
from al.methods.dast_al import EpmcmSelector, log_epmcm_bound
from al.models.isda import ClassCovariance, augmented_logits, isda_strength
from al.models.mlp import MLP

BATCHES = [(10, [0, 1]), (7, [0, 1, 2]), (5, [2]), (9, [0, 1, 2])]  # uneven, classes missing


@pytest.mark.parametrize("diagonal", [False, True])
def test_covariance_equals_that_of_all_features_seen_so_far(diagonal):
    generator = np.random.default_rng(0)
    estimator = ClassCovariance(num_classes=3, feature_dim=4, diagonal=diagonal)
    seen_features, seen_labels = [], []
    for size, classes in BATCHES:
        features = torch.from_numpy(generator.normal(2.0, 3.0, (size, 4))).float()
        labels = torch.from_numpy(generator.choice(classes, size))
        estimator.update(features, labels)
        seen_features.append(features)
        seen_labels.append(labels)
        all_features, all_labels = torch.cat(seen_features), torch.cat(seen_labels)
        for c in range(3):
            of_class = all_features[all_labels == c].double().numpy()
            assert estimator.count[c] == len(of_class)
            if len(of_class) == 0:
                continue
            expected = np.cov(of_class, rowvar=False, bias=True)
            expected = np.diag(expected) if diagonal else expected
            assert np.allclose(estimator.covariance[c].numpy(), expected, atol=1e-4)
            assert np.allclose(estimator.mean[c].numpy(), of_class.mean(0), atol=1e-5)


def test_quadratic_terms_by_hand():
    estimator = ClassCovariance(num_classes=3, feature_dim=2)
    estimator.covariance.copy_(torch.stack([torch.eye(2), 2 * torch.eye(2), torch.zeros(2, 2)]))
    weight = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    expected = torch.tensor([[0.0, 1.0, 4.0], [2.0, 0.0, 10.0], [0.0, 0.0, 0.0]])
    assert torch.allclose(estimator.quadratic_terms(weight), expected)


def test_diagonal_quadratic_terms_equal_the_differences_form_in_class_by_class_memory():
    """q[k, j] = Σ_a σ_ka (w_ja − w_ka)² computed from the (C, C, A) differences, against the
    expanded form the estimator uses (C × C)."""
    generator = torch.Generator().manual_seed(0)
    estimator = ClassCovariance(num_classes=5, feature_dim=7, diagonal=True).double()
    estimator.covariance.copy_(torch.rand(5, 7, generator=generator, dtype=torch.float64))
    weight = torch.randn(5, 7, generator=generator, dtype=torch.float64)
    differences = weight[None, :, :] - weight[:, None, :]
    expected = (differences**2 * estimator.covariance[:, None, :]).sum(dim=2)
    torch.testing.assert_close(estimator.quadratic_terms(weight), expected)
    assert torch.all(estimator.quadratic_terms(weight).diagonal().abs() < 1e-12)


def test_zero_covariance_or_zero_lambda_leaves_plain_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2])
    zero = ClassCovariance(3, 5).quadratic_terms(torch.randn(3, 5))
    plain = F.cross_entropy(logits, labels)
    assert torch.equal(F.cross_entropy(augmented_logits(logits, zero, labels, 0.5), labels), plain)
    some = torch.rand(3, 3).fill_diagonal_(0.0)  # q[k, k] = 0: w_k − w_k = 0
    assert torch.equal(augmented_logits(logits, some, labels, 0.0), logits)
    assert F.cross_entropy(augmented_logits(logits, some, labels, 0.5), labels) > plain


def test_lambda_schedule():
    assert [isda_strength(0.5, t, 200) for t in (0, 100, 199)] == [0.0, 0.25, 0.5 * 199 / 200]


def random_problem(seed: int, classes: int = 4, dim: int = 3):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(classes, dim, generator=generator, dtype=torch.float64)
    bias = torch.randn(classes, generator=generator, dtype=torch.float64)
    feature = torch.randn(dim, generator=generator, dtype=torch.float64)
    roots = torch.randn(classes, dim, dim, generator=generator, dtype=torch.float64) * 0.5
    covariance = roots @ roots.transpose(1, 2)  # positive semi-definite per class
    estimator = ClassCovariance(classes, dim).double()
    estimator.covariance.copy_(covariance)
    return weight, bias, feature, covariance, estimator.quadratic_terms(weight)


def monte_carlo(weight, bias, feature, covariance, samples: int, seed: int):
    """Means over ã ~ N(a, Σ_ŷ) of the Eq. 7 integrand and of Eq. 6's 1 − softmax_ŷ."""
    predicted = int(torch.argmax(weight @ feature + bias))
    normal = torch.distributions.MultivariateNormal(feature, covariance[predicted])
    torch.manual_seed(seed)
    augmented = normal.sample((samples,))
    logits = augmented @ weight.T + bias
    gaps = logits - logits[:, predicted : predicted + 1]
    bound_integrand = gaps.exp().sum(1) - 1
    expected_change = 1 - torch.softmax(logits, 1)[:, predicted]
    return bound_integrand.mean().item(), expected_change.mean().item()


def test_closed_form_bound_is_the_monte_carlo_limit_and_bounds_eq6():
    for seed in range(3):
        weight, bias, feature, covariance, quadratic = random_problem(seed)
        logits = (weight @ feature + bias)[None]
        closed = torch.exp(log_epmcm_bound(logits, quadratic)).item()
        gaps = []
        for samples in (100, 10_000, 1_000_000):
            bound_mc, eq6_mc = monte_carlo(weight, bias, feature, covariance, samples, seed)
            gaps.append(abs(bound_mc - closed) / closed)
            assert closed >= eq6_mc
        assert gaps[-1] < gaps[0] and gaps[-1] < 0.02


def test_log_space_bound_matches_the_direct_formula_and_never_overflows():
    weight, bias, feature, _, quadratic = random_problem(7)
    logits = (weight @ feature + bias)[None]
    predicted = int(logits.argmax())
    direct = (
        torch.exp(logits[0] - logits[0, predicted] + 0.5 * quadratic[predicted]).sum() - 1
    ).item()
    assert torch.exp(log_epmcm_bound(logits, quadratic)).item() == pytest.approx(direct)
    huge_logits, huge_quadratic = logits * 1e4, quadratic * 1e6
    huge = log_epmcm_bound(huge_logits, huge_quadratic)
    gaps = huge_logits[0] - huge_logits[0, predicted] + 0.5 * huge_quadratic[predicted]
    gaps[predicted] = float("-inf")
    assert torch.isfinite(huge).all() and huge.item() == pytest.approx(gaps.max().item())
    # confident candidates stay ordered where log(1 + Ē) would round to 0 in float32
    margins = torch.tensor([[20.0, 0.0], [25.0, 0.0], [30.0, 0.0]])
    ordered = log_epmcm_bound(margins, torch.zeros(2, 2))
    assert ordered[0] > ordered[1] > ordered[2]


def test_larger_covariance_of_the_predicted_class_scores_higher():
    logits = torch.tensor([[2.0, 0.0, 1.0], [2.0, 0.0, 1.0]])
    small, large = torch.full((3, 3), 0.1), torch.full((3, 3), 2.0)
    assert log_epmcm_bound(logits[:1], large) > log_epmcm_bound(logits[:1], small)


def isda_module(covariance: str = "full") -> ClassifierModule:
    torch.manual_seed(0)
    isda = {"enabled": True, "lambda0": 0.5, "covariance": covariance}
    return ClassifierModule(MLP([2], 3), torch.optim.Adam, num_classes=3, isda=isda)


@pytest.mark.parametrize("covariance", ["full", "diagonal"])
def test_covariance_accumulates_over_the_whole_stage(covariance):
    module = isda_module(covariance)
    x, y = torch.randn(24, 2), torch.arange(24) % 3
    for _stage in range(2):  # a warm-started second stage starts its statistics afresh
        trainer = pl.Trainer(
            max_epochs=3,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=10, shuffle=True))
        assert module.covariance.count.tolist() == [24.0, 24.0, 24.0]  # 3 epochs × 8 per class


def test_epmcm_needs_an_isda_trained_module():
    plain = ClassifierModule(MLP([2], 3), torch.optim.Adam, num_classes=3)
    with pytest.raises(ConfigError, match=r"isda\.enabled"):
        EpmcmSelector().check_module(plain)
    scores = EpmcmSelector().score(isda_module(), torch.randn(4, 2))
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    with pytest.raises(ConfigError, match=r"isda\.covariance='low_rank'"):
        ClassifierModule(
            MLP([2], 3), torch.optim.Adam, 3, isda={"enabled": True, "covariance": "low_rank"}
        )
