"""BatchBALD: joint entropies by hand, BALD for one point, one of two duplicates per batch,
exact and sampled estimators agreeing and switched where C^n exceeds `samples`, lazy and full
greedy agreeing, and consistent MC dropout drawn from the seed."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap

import pytest
import torch

import al.methods.batchbald as batchbald_module
from al.errors import ConfigError
from al.methods.bald import bald
from al.methods.batchbald import (
    BatchBaldSelector,
    Configurations,
    JointEstimator,
    batchbald_greedy,
    draw_classes,
    extend,
    joint_entropies,
    tile_shape,
)
from al.methods.classifier import ClassifierModule
from al.methods.selector import SelectionRequest, TieBreak
from al.models.cnn import SmallCNN
from al.models.mlp import MLP

from conftest import ROOT

CPU = torch.device("cpu")
EXACT = JointEstimator(samples=10**6, memory_bytes=2**26)


def random_probs(seed: int, candidates: int = 40, passes: int = 6, classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(candidates, passes, classes, generator=generator)
    return logits.softmax(2)


def configurations_of(points: torch.Tensor, samples: int | None = None) -> Configurations:
    generator = torch.Generator().manual_seed(0)
    configs = Configurations.empty(points.shape[1], CPU)
    for probs in points:
        configs = extend(configs, probs, samples, generator)
    return configs


def test_joint_entropy_of_two_points_two_classes_two_passes_by_hand():
    # Pass 1: y_a uniform, y_b = 0; pass 2: y_a = 0, y_b uniform. p(0,0) = ½(½ + ½) = ½,
    # p(1,0) = p(0,1) = ¼: H = ½ ln 2 + 2 · ¼ ln 4 = 1.5 ln 2.
    a = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    b = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
    assert torch.allclose(
        joint_entropies(configurations_of(a[None]), b[None]), torch.tensor(1.5 * math.log(2))
    )
    # Identical points whose passes disagree: y_b = y_a, so H(y_a, y_b) = H(y_a) = ln 2.
    twin = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    joint = joint_entropies(configurations_of(twin[None]), twin[None])
    assert torch.allclose(joint, torch.tensor(math.log(2)))
    assert torch.allclose(
        configurations_of(torch.stack([a, b])).entropy(), torch.tensor(1.5 * math.log(2))
    )


def test_one_point_is_bald_picks_and_scores():
    for seed in range(4):
        probs = random_probs(seed)
        picks, gains = batchbald_greedy(
            probs, 1, EXACT, torch.Generator().manual_seed(0), TieBreak(0)
        )
        bald_pick, bald_score = TieBreak(0).top_k(
            torch.arange(len(probs)), bald(probs.transpose(0, 1)), 1
        )
        assert torch.equal(picks, bald_pick)
        assert torch.allclose(gains, bald_score, atol=1e-5)


def test_of_two_duplicates_with_the_highest_bald_a_batch_of_two_takes_one():
    # 4 passes. The twins tell passes {1, 2} from {3, 4} (BALD ln 2); `other` tells 1 from 2 and
    # 3 from 4, less surely (BALD ln 2 − H(0.9, 0.1)); `flat` is uniform (BALD 0).
    twin = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    other = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.9, 0.1], [0.1, 0.9]])
    flat = torch.full((4, 2), 0.5)
    probs = torch.stack([flat, twin, twin, other])
    top_two = TieBreak(0).top_k(torch.arange(4), bald(probs.transpose(0, 1)), 2)[0]
    assert sorted(top_two.tolist()) == [1, 2]
    picks, gains = batchbald_greedy(probs, 2, EXACT, torch.Generator().manual_seed(0), TieBreak(0))
    assert picks.tolist()[0] in (1, 2) and picks.tolist()[1] == 3  # one twin (a tie), then other
    noisy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
    assert torch.allclose(gains, torch.tensor([math.log(2), math.log(2) - noisy]), atol=1e-5)


class AlwaysSampled(JointEstimator):
    """Sampled configurations from the first point chosen on."""

    def samples_for(self, chosen: int, classes: int) -> int:
        return self.samples


def test_sampled_joint_entropies_agree_with_exact_ones():
    probs = random_probs(1, candidates=20, passes=8, classes=3)
    chosen, candidates = probs[:3], probs[3:]
    exact = joint_entropies(configurations_of(chosen), candidates)
    sampled = joint_entropies(configurations_of(chosen, samples=20_000), candidates)
    assert (exact - sampled).abs().max() < 0.02
    # Sampled beyond the first point of the batch: the same greedy picks, gains within 0.02.
    estimated = AlwaysSampled(samples=20_000, memory_bytes=2**26)
    exact_picks, exact_gains = batchbald_greedy(
        probs, 4, EXACT, torch.Generator().manual_seed(0), TieBreak(0)
    )
    picks, gains = batchbald_greedy(
        probs, 4, estimated, torch.Generator().manual_seed(0), TieBreak(0)
    )
    assert torch.equal(picks, exact_picks) and (gains - exact_gains).abs().max() < 0.02


def test_classes_are_drawn_in_proportion_to_unnormalised_weights():
    weights = torch.tensor([[0.0, 1.0, 3.0], [2.0, 0.0, 0.0]]).repeat(20_000, 1)
    drawn = draw_classes(weights, torch.Generator().manual_seed(0))
    first, second = drawn[0::2], drawn[1::2]
    assert (second == 0).all() and not (first == 0).any()  # weight 0: never
    assert abs((first == 2).float().mean().item() - 0.75) < 0.01  # ±3.3 standard errors


def greedy_decisions(monkeypatch, probs, query, estimator, lazy=True):
    """The `samples` each extension of the greedy got (None: enumerated), the configurations
    and candidates of each joint-entropy call, and the picks and gains."""
    extensions, scored = [], []

    def spy_extend(configs, point, samples, generator=None):
        extensions.append(samples)
        return extend(configs, point, samples, generator)

    def spy_joint(configs, candidates, memory_bytes):
        scored.append((configs.log_joint.shape[1], len(candidates)))
        return joint_entropies(configs, candidates, memory_bytes)

    monkeypatch.setattr(batchbald_module, "extend", spy_extend)
    monkeypatch.setattr(batchbald_module, "joint_entropies", spy_joint)
    generator = torch.Generator().manual_seed(0)
    picks, gains = batchbald_greedy(probs, query, estimator, generator, TieBreak(0), lazy)
    return extensions, scored, picks, gains


def test_configurations_are_enumerated_while_c_to_the_n_is_at_most_samples(monkeypatch):
    # BlackHC/BatchBALD src/multi_bald.py: exact while num_classes ** chosen ≤ num_samples.
    # C = 3, samples = 27: the 3³ = 27 configurations of 3 chosen points enumerated, 3⁴ not.
    estimator = JointEstimator(samples=27, memory_bytes=2**26)
    assert [estimator.samples_for(chosen, 3) for chosen in range(6)] == [None] * 4 + [27, 27]
    probs = random_probs(5, candidates=12, classes=3)
    extensions, scored, _, _ = greedy_decisions(monkeypatch, probs, 6, estimator, lazy=False)
    assert extensions == [None, None, None, 27, 27]  # after picks 1..5
    assert [configurations for configurations, _ in scored] == [1, 3, 9, 27, 27, 27]


def test_at_100_classes_the_default_samples_sample_from_the_fourth_pick_on(monkeypatch):
    # 100¹ and 100² ≤ 10,000 configurations are enumerated; the 100³ = 10⁶ that the 4th pick
    # enumerated under the old rule (exact up to a batch of 4) are sampled.
    estimator = BatchBaldSelector().estimator
    assert estimator.samples == 10_000
    probs = random_probs(6, candidates=8, passes=3, classes=100)
    extensions, scored, _, _ = greedy_decisions(monkeypatch, probs, 5, estimator, lazy=False)
    assert extensions == [None, None, 10_000, 10_000]
    assert [configurations for configurations, _ in scored] == [1, 100, 10_000, 10_000, 10_000]


def test_lazy_greedy_scores_fewer_candidates_for_the_same_picks_and_gains(monkeypatch):
    # Exact joint entropies throughout (3⁶ ≤ 10⁶): lazy evaluation is exact for a submodular
    # gain, so only the number of candidates scored may change. BALD spread from 0 (scale 0:
    # the same probabilities under every pass) upwards; rounds of 2 candidates at 243
    # configurations (3 classes · 243 · 2 entries).
    scales = torch.linspace(0, 3, 60)[:, None, None]
    probs = (scales * torch.randn(60, 6, 3, generator=torch.Generator().manual_seed(8))).softmax(2)
    monkeypatch.setattr(batchbald_module, "LAZY_ROUND_ENTRIES", 3 * 243 * 2)
    estimator = JointEstimator(samples=10**6, memory_bytes=2**20)
    full = greedy_decisions(monkeypatch, probs, 7, estimator, lazy=False)
    lazy = greedy_decisions(monkeypatch, probs, 7, estimator, lazy=True)
    assert torch.equal(lazy[2], full[2]) and torch.allclose(lazy[3], full[3], atol=1e-6)
    assert lazy[0] == full[0]  # the same estimator decisions
    assert sum(count for _, count in full[1]) == 7 * 60  # every candidate, every step
    assert lazy[1][0] == (1, 60)  # the first step has no bounds yet: every candidate
    assert sum(count for _, count in lazy[1]) < 0.75 * 7 * 60


def test_tiles_and_the_memory_budget_change_no_result():
    probs = random_probs(2)
    configs = configurations_of(probs[:2])  # 16 configurations
    reference = joint_entropies(configs, probs, 2**26)
    for memory_bytes in (1, 2 * 4 * 4 * 5, 2 * 4 * 4 * 16 * 3):
        assert torch.allclose(joint_entropies(configs, probs, memory_bytes), reference)
    # 2 · C · 4 bytes a configuration: one candidate × 5 of 16, or 3 candidates × all 16.
    assert tile_shape(40, 4, 16, 2 * 4 * 4 * 5) == (1, 5)
    assert tile_shape(40, 4, 16, 2 * 4 * 4 * 16 * 3) == (3, 16)
    assert tile_shape(40, 4, 16, 1) == (1, 1)
    picks = [
        batchbald_greedy(
            probs[:12],
            4,
            JointEstimator(1000, budget),
            torch.Generator().manual_seed(0),
            TieBreak(0),
        )[0]
        for budget in (1, 2**26)
    ]
    assert torch.equal(*picks)


def test_a_configuration_no_pass_allows_adds_nothing():
    # The chosen point is class 0 under every pass: configuration (1) has probability 0, and
    # H(y_a, y_x) = H(y_x) = H(¾, ¼), with a candidate that has a zero probability too.
    certain = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    candidate = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    joint = joint_entropies(configurations_of(certain[None]), candidate[None])
    h_x = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert torch.allclose(joint, torch.tensor([h_x]))


def test_greedy_picks_are_distinct_and_deterministic_given_the_seed():
    probs = random_probs(3, candidates=12, classes=3)
    estimator = JointEstimator(samples=500, memory_bytes=2**26)  # sampled from 6 chosen on
    first = batchbald_greedy(probs, 12, estimator, torch.Generator().manual_seed(7), TieBreak(0))
    second = batchbald_greedy(probs, 12, estimator, torch.Generator().manual_seed(7), TieBreak(0))
    assert sorted(first[0].tolist()) == list(range(12))
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    assert not torch.isnan(first[1]).any()


def module_with_dropout(backbone_class=MLP, input_shape=(3,)):
    torch.manual_seed(0)
    backbone = backbone_class(list(input_shape), 5, dropout=0.5)
    return ClassifierModule(backbone, torch.optim.Adam, num_classes=5).eval()


def request_for(x: torch.Tensor, query: int, seed: int = 0) -> SelectionRequest:
    indices = torch.arange(100, 100 + len(x))
    loader = [(x[:5], indices[:5]), (x[5:], indices[5:])]
    return SelectionRequest(loader, loader, indices, query, seed=seed)


def test_every_sample_of_a_pass_sees_the_same_dropout_mask_drawn_from_the_seed():
    module = module_with_dropout()
    x = torch.randn(5, 3).repeat(2, 1)  # the same five inputs in both batches
    selector = BatchBaldSelector(passes=6)
    request = request_for(x, 2, seed=1)
    indices, probs = selector.mc_probabilities(module, request.candidates, seed=1)
    assert indices.tolist() == list(range(100, 110)) and probs.shape == (10, 6, 5)
    assert torch.equal(probs[:5], probs[5:])
    assert not torch.allclose(probs[:, 0], probs[:, 1])  # the passes differ
    _, again = selector.mc_probabilities(module, request.candidates, seed=1)
    _, other_seed = selector.mc_probabilities(module, request.candidates, seed=2)
    assert torch.equal(probs, again) and not torch.equal(probs, other_seed)
    assert not module.backbone.dropout.training and torch.equal(module(x), module(x))


def test_full_passes_fix_masks_too_and_leave_batchnorm_alone():
    module = module_with_dropout(SmallCNN, (1, 8, 8))
    module.backbone.conv_dropout = torch.nn.Dropout(0.1)  # a second dropout: full passes
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    x = torch.randn(5, 1, 8, 8).repeat(2, 1, 1, 1)
    _, probs = BatchBaldSelector(passes=4).mc_probabilities(module, request_for(x, 2).candidates, 0)
    assert torch.equal(probs[:5], probs[5:])
    after = {k: v for k, v in module.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_selector_with_query_one_picks_bald_on_its_passes():
    module = module_with_dropout()
    x = torch.randn(12, 3)
    selector = BatchBaldSelector(passes=8)
    with torch.no_grad():
        picks, gains = selector.select(module, request_for(x, 1, seed=4))
        indices, probs = selector.mc_probabilities(module, request_for(x, 1).candidates, seed=4)
    expected, score = TieBreak(0).top_k(indices, bald(probs.transpose(0, 1)), 1)
    assert torch.equal(picks, expected) and torch.allclose(gains, score, atol=1e-5)


def test_candidate_pool_keeps_the_highest_bald_in_pool_order():
    probs = random_probs(4, candidates=10)
    positions = BatchBaldSelector(candidate_pool=3).pool_positions(probs)
    best = torch.sort(bald(probs.transpose(0, 1)), descending=True).indices[:3]
    assert positions.tolist() == sorted(best.tolist())
    assert BatchBaldSelector().pool_positions(probs).tolist() == list(range(10))
    with pytest.raises(ConfigError, match=r"candidate_pool=3 is below budget\.query=5"):
        BatchBaldSelector(candidate_pool=3).request(request_for(torch.randn(10, 3), 5))


def test_a_model_without_dropout_or_bad_options_are_refused_before_training():
    module = ClassifierModule(MLP([3], 5), torch.optim.Adam, num_classes=5)
    refusal = r"set model\.dropout=0\.5"
    with pytest.raises(ConfigError, match=refusal):
        BatchBaldSelector().setup(None, module, "fit")
    BatchBaldSelector(samples=100_000, memory_mb=1).setup(None, module_with_dropout(), "fit")
    with pytest.raises(ConfigError, match="samples=0 must be at least 1"):
        BatchBaldSelector(samples=0)
    with pytest.raises(ConfigError, match="memory_mb=0 must be positive"):
        BatchBaldSelector(memory_mb=0)


@pytest.mark.slow
def test_joint_entropies_stay_within_their_memory_budget():
    """10k candidates × 10 classes against 10k sampled configurations, a 256 MB budget: the
    blocks' live tensors (the predictives and their xlogy) must fit it; einsum's permuted
    copies once took twice as much."""
    script = textwrap.dedent(
        """
        import resource, torch
        from al.methods.batchbald import Configurations, joint_entropies
        generator = torch.Generator().manual_seed(0)
        probs = torch.softmax(torch.randn(10_000, 20, 10, generator=generator), 2)
        configs = Configurations(torch.randn(20, 10_000, generator=generator), sampled=True)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        joint_entropies(configs, probs, 256 * 2**20)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert int(done.stdout) < 256 * 1.25  # MB of peak growth
