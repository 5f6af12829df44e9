"""M2's bounds, M2-VAAL's adversary and the slides' two latent-distance acquisitions, on
constructed inputs with hand-computed answers."""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from al.build import build_module
from al.errors import ConfigError, DataError
from al.methods.discriminator import discriminator_metrics
from al.methods.m2 import LatentPools, M2Module, distance_sums
from al.methods.m2_latent_diverse import class_quotas, diverse_picks
from al.methods.m2_latent_weighted import anchor_mean_distances, weighted_uncertainty
from al.methods.selector import TieBreak
from al.models.cnn import SmallCNN
from al.models.m2 import build_m2, gaussian_kl, negative_log_likelihood
from al.models.mlp import MLP

from conftest import compose_config

SMALL = dict(latent_dim=3, hidden=16, conv_channels=(4, 8), mlp_hidden=16)


@pytest.mark.parametrize("shape", [[1, 8, 8], [5]])
def test_unlabeled_bound_is_the_q_weighted_labeled_bounds_plus_the_entropy(shape):
    """U(x) = Σ_y q(y|x)·L(x, y) − H(q): the batched B·C evaluation equals one labeled bound
    per class, with the same reparameterisation noise."""
    torch.manual_seed(0)
    m2 = build_m2(shape, 4, **SMALL)
    x = torch.randn(3, *shape)
    q = F.softmax(torch.randn(3, 4), dim=1)
    noise = torch.randn(3, 4, 3)
    per_class = torch.stack(
        [
            m2.labeled_bound(x, F.one_hot(torch.full((3,), c), 4).float(), noise[:, c])
            for c in range(4)
        ],
        dim=1,
    )
    entropy = -(q * q.log()).sum(1)
    expected = (q * per_class).sum(1) - entropy
    assert torch.allclose(m2.unlabeled_bound(x, q, noise), expected, atol=1e-5)


def test_labeled_bound_is_reconstruction_plus_log_classes_plus_kl():
    """L(x, y) = −log N(x; mean, σ²) − log p(y) + KL(q(z|x,y) ‖ N(0, I)), each term checked
    against torch.distributions at the noise-free draw z = μ."""
    torch.manual_seed(1)
    m2 = build_m2([6], 3, **SMALL)
    x, y = torch.randn(2, 6), F.one_hot(torch.tensor([0, 2]), 3).float()
    mu, logvar = m2.encode(x, y)
    params = m2.decode(y, mu)
    mean, log_variance = params[:, 0], params[:, 1]
    reconstruction = -Normal(mean, (0.5 * log_variance).exp()).log_prob(x).sum(1)
    kl = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(1)
    expected = reconstruction + math.log(3) + kl
    bound = m2.labeled_bound(x, y, noise=torch.zeros_like(mu))
    assert torch.allclose(bound, expected, atol=1e-4)
    assert torch.allclose(gaussian_kl(mu, logvar), kl, atol=1e-5)


def test_bernoulli_likelihood_is_binary_cross_entropy_summed():
    x = torch.tensor([[1.0, 0.0, 0.5]])
    logits = torch.tensor([[[0.0, 2.0, -1.0]]])
    expected = -(math.log(0.5) + math.log(1 - torch.sigmoid(torch.tensor(2.0)).item()))
    p = torch.sigmoid(torch.tensor(-1.0)).item()
    expected -= 0.5 * math.log(p) + 0.5 * math.log(1 - p)
    assert negative_log_likelihood(x, logits, "bernoulli").item() == pytest.approx(expected, 1e-5)


def test_the_conv_m2_is_the_slides_three_million_parameter_model():
    m2 = build_m2([1, 28, 28], 10)
    assert 2.9e6 < sum(p.numel() for p in m2.parameters()) < 3.5e6
    with pytest.raises(ConfigError, match="likelihood='poisson'"):
        build_m2([1, 28, 28], 10, likelihood="poisson")
    with pytest.raises(ConfigError, match="sides divide by 4"):
        build_m2([1, 30, 30], 10)


def module(adversarial: bool, discriminator: dict | None = None, **options) -> M2Module:
    torch.manual_seed(0)
    return M2Module(
        SmallCNN([1, 8, 8], 4),
        functools.partial(torch.optim.Adam, lr=1e-3),
        4,
        [1, 8, 8],
        discriminator=discriminator,
        adversarial=adversarial,
        **SMALL,
        **options,
    )


def m2_loss(m2: M2Module, seed: int = 3) -> torch.Tensor:
    torch.manual_seed(seed)
    x_l, y_l, x_u = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3]), torch.randn(6, 1, 8, 8)
    losses, _, _ = m2.m2_losses(x_l, y_l, x_u)
    return sum(losses.values())


def test_without_the_adversarial_term_the_m2_loss_has_no_discriminator_in_it():
    """adversarial=false: changing D's weights leaves the M2 loss and its gradients as they
    were; adversarial=true: the loss changes. Either way the M2 loss moves no weight of D (only
    L_D trains it)."""
    for adversarial in (False, True):
        m2 = module(adversarial, discriminator={"hidden": 8, "layers": 2})
        m2.eval()  # BatchNorm statistics fixed, so two evaluations compare
        loss = m2_loss(m2)
        loss.backward()
        assert all(p.grad is None for p in m2.discriminator.parameters())
        encoder_gradient = m2.generative.mu.weight.grad.clone()
        m2.zero_grad()
        with torch.no_grad():
            for p in m2.discriminator.parameters():
                p.add_(1.0)
        perturbed = m2_loss(m2)
        perturbed.backward()
        same_gradient = torch.allclose(m2.generative.mu.weight.grad, encoder_gradient)
        assert torch.allclose(perturbed, loss) == (not adversarial), adversarial
        assert same_gradient == (not adversarial), adversarial


def test_the_discriminator_step_moves_only_the_discriminator():
    m2 = module(True, discriminator={"hidden": 8, "layers": 2})
    _, _, latents = m2.m2_losses(torch.randn(4, 1, 8, 8), torch.arange(4), torch.randn(6, 1, 8, 8))
    m2.discriminator_loss(*latents).backward()
    outside = [p.grad for name, p in m2.named_parameters() if not name.startswith("discriminator")]
    assert all(g is None for g in outside)
    assert all(p.grad is not None for p in m2.discriminator.parameters())


def test_the_normal_weight_prior_adds_half_the_squared_weights_over_n_and_spares_d():
    """weight_prior=normal: J^α gains 0.5·Σθ²/N over q(y|x) and M2's networks (N = 10 training
    points here), with gradient θ/N on them and none on the discriminator; none: no term."""
    plain = module(False, discriminator={"hidden": 8, "layers": 2})
    prior = module(False, discriminator={"hidden": 8, "layers": 2}, weight_prior="normal")
    prior.load_state_dict(plain.state_dict())
    plain.eval(), prior.eval()
    prior.training_points = 10
    squares = sum(
        p.square().sum() for p in [*prior.backbone.parameters(), *prior.generative.parameters()]
    )
    torch.testing.assert_close(m2_loss(prior) - m2_loss(plain), 0.5 * squares / 10)
    prior.negative_log_prior().backward()
    assert all(p.grad is None for p in prior.discriminator.parameters())
    torch.testing.assert_close(prior.generative.mu.weight.grad, prior.generative.mu.weight / 10)
    with pytest.raises(ConfigError, match="weight_prior='laplace' is not one of none, normal"):
        module(False, weight_prior="laplace")


def test_the_m2_options_are_checked():
    with pytest.raises(ConfigError, match="adversarial=true needs a discriminator"):
        module(True)
    with pytest.raises(ConfigError, match="epoch='all'"):
        module(False, epoch="all")
    with pytest.raises(ConfigError, match="unlabeled_batch_size=0"):
        module(False, unlabeled_batch_size=0)
    bernoulli = module(False, likelihood="bernoulli")
    with pytest.raises(DataError, match=r"likelihood=bernoulli needs inputs in \[0, 1\]"):
        bernoulli.check_input_range(torch.tensor([-0.5, 2.0]))


def test_the_classifier_is_the_backbone_and_vectors_get_the_mlp():
    m2 = M2Module(MLP([5], 3), functools.partial(torch.optim.Adam), 3, [5], **SMALL)
    x = torch.randn(7, 5)
    assert torch.equal(m2(x), m2.backbone(x).logits)
    latent, probabilities = m2.latent_code(x)
    assert latent.shape == (7, 3) and torch.allclose(probabilities.sum(1), torch.ones(7))


def test_discriminator_metrics_on_known_outputs():
    metrics = discriminator_metrics(torch.tensor([0.9, 0.4]), torch.tensor([0.2, 0.6, 0.1, 0.3]))
    assert metrics["discriminator/acc_labeled"] == 0.5
    assert metrics["discriminator/acc_unlabeled"] == 0.75
    assert metrics["discriminator/acc"] == 0.625
    bce_l = -(math.log(0.9) + math.log(0.4)) / 2
    bce_u = -(math.log(0.8) + math.log(0.4) + math.log(0.9) + math.log(0.7)) / 4
    assert metrics["discriminator/loss"] == pytest.approx(bce_l + bce_u, 1e-6)


@pytest.mark.parametrize(
    ("query", "capacities", "expected"),
    [
        (10, [5, 5, 5], [4, 3, 3]),  # 3 each; the remainder to the most candidates, then lowest
        # 4, 3 and 3 asked of classes 1, 3, 0; class 0 holds 2, its third goes to class 1
        (10, [2, 9, 0, 9], [2, 5, 0, 3]),
        (7, [1, 1, 5], [1, 1, 5]),
        (6, [3, 3, 3], [2, 2, 2]),
    ],
)
def test_class_quotas_share_the_query_and_fill_what_a_class_cannot(query, capacities, expected):
    assert class_quotas(query, capacities) == expected


def pools(candidates, candidate_classes, labeled, labeled_labels, predictions=None) -> LatentPools:
    """Latent pools of 2-D points, the candidates' q(y|x) one-hot on `candidate_classes`."""
    labels = torch.tensor(labeled_labels)
    return LatentPools(
        candidate_indices=torch.arange(100, 100 + len(candidates)),
        candidate_latents=torch.tensor(candidates, dtype=torch.float),
        candidate_probabilities=F.one_hot(torch.tensor(candidate_classes), 2).float(),
        labeled_latents=torch.tensor(labeled, dtype=torch.float),
        labeled_predictions=labels if predictions is None else torch.tensor(predictions),
        labeled_labels=labels,
    )


def test_algorithm_1_picks_the_farthest_from_its_class_anchors_then_from_its_picks():
    """Class 0's anchor sits at the origin, class 1's at (10, 0); the misclassified labeled
    sample at (0, 9) is no anchor. Candidates of class 0: (1, 0), (3, 0), (0, 2), (-2.5, 0);
    class 1: (10, 1), (14, 0). Query 4 → 2 per class. Class 0: (3, 0) first (distance 3),
    then the sum to {origin, (3, 0)} is 1+2, 3+0, 2+√13, 2.5+5.5 → (-2.5, 0) with 8.
    Class 1: (14, 0) (4), then (10, 1): 1 + √17."""
    latent = pools(
        [[1, 0], [3, 0], [0, 2], [-2.5, 0], [10, 1], [14, 0]],
        [0, 0, 0, 0, 1, 1],
        [[0, 0], [10, 0], [0, 9]],
        [0, 1, 0],
        predictions=[0, 1, 1],
    )
    positions, scores = diverse_picks(latent, 4, TieBreak(0))
    assert positions.tolist() == [1, 3, 5, 4]
    assert scores.tolist() == pytest.approx([3.0, 4.0, 4.0, (1 + math.sqrt(17)) / 2])


def test_algorithm_1_measures_a_class_without_anchors_from_every_labeled_sample():
    """No labeled sample is classified correctly into class 1: its candidate (2, 0) vs (-5, 0)
    is judged by the distance sum to both labeled samples (0, 0) and (4, 0): 2+2 vs 5+9."""
    latent = pools([[1, 1], [2, 0], [-5, 0]], [0, 1, 1], [[0, 0], [4, 0]], [0, 1], [0, 0])
    positions, _ = diverse_picks(latent, 2, TieBreak(0))
    assert positions.tolist() == [0, 2]


def test_algorithm_2_weighs_low_confidence_by_the_normalised_anchor_distance():
    """All three candidates are predicted class 0 (an even split goes to the first class), so
    their mean distances to class 0's anchor (0, 0) are 1, 4 and 12 (normalised 1/12, 4/12,
    1); confidences 0.6, 0.9, 0.5 → scores 0.4/12, 0.1·4/12 = 0.4/12 and 0.5: the far, unsure
    third first; the near, unsure first and the farther, surer second tie."""
    latent = pools([[1, 0], [0, 4], [12, 0]], [0, 0, 1], [[0, 0], [10, 0]], [0, 1])
    latent.candidate_probabilities = torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.5, 0.5]])
    distances = anchor_mean_distances(latent)
    assert distances.tolist() == pytest.approx([1.0, 4.0, 12.0])
    scores = weighted_uncertainty(latent.candidate_probabilities.max(1).values, distances)
    assert scores.tolist() == pytest.approx([0.4 / 12, 0.1 * 4 / 12, 0.5])


def test_distance_sums_match_the_full_matrix_in_chunks():
    torch.manual_seed(0)
    points, anchors = torch.randn(50, 4), torch.randn(33, 4)
    expected = torch.cdist(points, anchors).sum(1)
    assert torch.allclose(distance_sums(points, anchors, chunk=7), expected, atol=1e-4)


@pytest.mark.parametrize(
    ("overrides", "alpha"),
    [
        (["method=m2_random"], 0.1),  # the paper's α = 0.1·N
        (["+experiment=m2_vaal_fmnist"], 0.1),
        (["+experiment=m2_short_schedule", "method=m2_entropy"], 30.0),
        (["+experiment=sweep_digits", "method=m2_latent_diverse"], 30.0),
        (["+experiment=sweep_digits", "method=m2_vaal", "m2_alpha=0.1"], 0.1),
        (["+experiment=sweep_digits", "method=m2_vaal", "method.module.alpha=5"], 5.0),
        (["+experiment=m2_vaal_fmnist_cpu"], 30.0),
        (["+experiment=m2_vaal_fmnist_cold_cpu"], 30.0),
    ],
)
def test_the_short_schedule_sets_alpha_for_the_m2_methods_and_the_paper_is_one_override_away(
    overrides, alpha
):
    cfg = compose_config(*overrides)
    module = build_module(cfg, cfg.dataset.num_classes)
    assert isinstance(module, M2Module) and module.alpha == alpha


def test_the_sweeps_short_schedule_leaves_the_other_methods_modules_alone():
    cfg = compose_config("+experiment=sweep_digits", "method=entropy")
    assert cfg.m2_alpha == 30.0 and "alpha" not in cfg.method.module
    assert not isinstance(build_module(cfg, cfg.dataset.num_classes), M2Module)
