"""Golden test: TA-VAAL's ranking loss (Eq. 1), its rank-conditioned VAE and discriminator
objectives, training iterations and sampler against the authors' code (cubeyoung/TA-VAAL
`LossPredLoss`, `vae_loss`, `train_vaal`, `query_samples`; fixture made by make_ta_vaal.py),
on the stub networks of vaal_stubs.py. Our settings that match the code: kl=mean,
vae_steps=1, discriminator_rank=raw, β = λ = 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from vaal_stubs import (
    StubDiscriminator,
    StubVAE,
    recorded_backward_losses,
    sequential_batches,
)

import al.methods.vaal as vaal
from al.methods.selector import TieBreak
from al.methods.ta_vaal import TaVaalSelector
from al.models.loss_prediction import ranking_pair_loss
from al.models.vae import vae_loss

FIXTURE = json.loads(Path(__file__).with_name("ta_vaal.json").read_text())
TRAIN = FIXTURE["train"]
ATOL = 1e-5
CALLS_PER_ITERATION = 4  # each network: labeled, unlabeled in the VAE step, again in D's


def selector(**overrides) -> TaVaalSelector:
    settings = {
        "input_shape": [len(TRAIN["labeled"][0])],
        "beta": TRAIN["beta"],
        "lambda_adv": TRAIN["lambda_adv"],
        "kl": "mean",
        "vae_steps": 1,
        "discriminator_rank": "raw",
    }
    return TaVaalSelector(**(settings | overrides))


def networks() -> tuple[StubVAE, StubDiscriminator]:
    return StubVAE(FIXTURE["weights"]), StubDiscriminator(FIXTURE["weights"])


def ranks_fed(iteration: int) -> dict[str, torch.Tensor]:
    """The rank values the code's decoder and discriminator got in `iteration`."""
    first = CALLS_PER_ITERATION * iteration
    return {
        f"{network}_{side}": torch.tensor(TRAIN[f"{network}_ranks"][first + offset])
        for network in ("decoder", "discriminator")
        for offset, side in enumerate(("labeled", "unlabeled"))
    }


def candidate_ranks(x: torch.Tensor) -> torch.Tensor:
    """The stub ranker's r = x·w_r + b_r: our task module's predicted loss."""
    weights = FIXTURE["weights"]
    return x @ torch.tensor(weights["ranker"]) + torch.tensor(weights["ranker_bias"])


@pytest.mark.parametrize("case", FIXTURE["ranking_loss"], ids=lambda c: f"{len(c['target'])}")
def test_ranking_pair_loss_and_gradient_match_loss_pred_loss(case):
    """BCE of σ(l̂_i − l̂_j) against 1[l_i > l_j]; the equal pair of the batch of 8 → 0."""
    predicted = torch.tensor(case["predicted"], requires_grad=True)
    loss = ranking_pair_loss(predicted, torch.tensor(case["target"]))
    loss.backward()
    assert loss.item() == pytest.approx(case["loss"], abs=ATOL)
    torch.testing.assert_close(predicted.grad, torch.tensor(case["gradient"]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", FIXTURE["vae_loss"], ids=lambda c: f"beta{c['beta']}")
def test_vae_loss_matches_the_codes_mean_kl_vae_loss(case):
    x, recon, mu, logvar = (torch.tensor(case[k]) for k in ("x", "recon", "mu", "logvar"))
    loss = vae_loss(recon, x, mu, logvar, case["beta"], "mean")
    assert loss.item() == pytest.approx(case["loss"], abs=ATOL)


def test_rank_conditions_after_the_first_iteration_are_the_codes():
    """Decoder σ(r), discriminator the raw r, per sample of each batch."""
    fed = ranks_fed(1)
    ranks = fed["discriminator_labeled"], fed["discriminator_unlabeled"]
    everyone = torch.arange(len(ranks[0]))
    (decode_l, judge_l), (decode_u, judge_u) = selector().iteration_conditions(
        1, ranks, everyone, everyone
    )
    for ours, name in [
        (decode_l, "decoder_labeled"),
        (decode_u, "decoder_unlabeled"),
        (judge_l, "discriminator_labeled"),
        (judge_u, "discriminator_unlabeled"),
    ]:
        torch.testing.assert_close(ours, fed[name], atol=ATOL, rtol=0)


def test_first_iteration_feeds_one_uniform_draw_to_decoder_and_discriminator():
    """The code's iteration 0: r ~ U(0, 1), the same draw for both networks (ours draws its
    own, so only the structure is compared here; the values go in the objective test)."""
    fed = ranks_fed(0)
    assert torch.equal(fed["decoder_labeled"], fed["discriminator_labeled"])
    everyone = torch.arange(len(fed["decoder_labeled"]))
    ranks = torch.full((len(everyone),), -3.0), torch.full((len(everyone),), 3.0)  # unused
    (decode_l, judge_l), (decode_u, judge_u) = selector().iteration_conditions(
        0, ranks, everyone, everyone
    )
    assert decode_l is judge_l and decode_u is judge_u
    assert all(((r >= 0) & (r <= 1)).all() for r in (decode_l, decode_u))


@pytest.mark.parametrize("iteration", [0, 1])
def test_objectives_match_the_losses_train_vaal_backpropagates(iteration):
    vae, discriminator = networks()
    method = selector()
    fed = ranks_fed(iteration)
    x_l, x_u = torch.tensor(TRAIN["labeled"]), torch.tensor(TRAIN["unlabeled"])
    conditions = (
        fed["decoder_labeled"],
        fed["decoder_unlabeled"],
        fed["discriminator_labeled"],
        fed["discriminator_unlabeled"],
    )
    loss = method.vae_objective(vae, discriminator, x_l, x_u, *conditions)
    assert loss.item() == pytest.approx(TRAIN["vae_objectives"][iteration], abs=ATOL)
    loss = method.discriminator_objective(vae, discriminator, x_l, x_u, *conditions)
    assert loss.item() == pytest.approx(TRAIN["discriminator_objectives"][iteration], abs=ATOL)


def test_second_training_iteration_backpropagates_the_codes_losses(monkeypatch):
    """Our loop over two iterations of one whole batch each (the code's loaders here), learning
    rates 0 as the code's run: the losses of iteration 1 (ranker-conditioned) are the code's;
    iteration 0's depend on each code's own U(0, 1) draws."""
    monkeypatch.setattr(vaal, "shuffled_batches", sequential_batches)
    x_l, x_u = torch.tensor(TRAIN["labeled"]), torch.tensor(TRAIN["unlabeled"])
    method = selector(epochs_v=1.0, batch_size=len(x_l), lr_vae=0.0, lr_discriminator=0.0)
    fed = ranks_fed(1)
    ranks = fed["discriminator_labeled"], fed["discriminator_unlabeled"]
    vae, discriminator = networks()
    losses = recorded_backward_losses(
        monkeypatch, lambda: method.train_adversary(vae, discriminator, x_l, x_u, ranks)
    )
    assert len(losses) == 4
    expected = [TRAIN["vae_objectives"][1], TRAIN["discriminator_objectives"][1]]
    assert losses[2:] == pytest.approx(expected, abs=ATOL)


def test_sampler_picks_the_candidates_query_samples_adds():
    """The lowest D(r, μ) first; main.py adds the last `budget` of the code's ranking, lowest
    D last, so ours are those in reverse."""
    sampler = FIXTURE["sampler"]
    candidates = torch.tensor(sampler["candidates"])
    labeled = torch.tensor(TRAIN["labeled"])
    ranks = candidate_ranks(labeled), candidate_ranks(candidates)
    vae, discriminator = networks()
    labeled_probability = selector().discriminate(vae, discriminator, candidates, ranks)
    picks, _ = TieBreak(0).top_k(
        torch.arange(len(candidates)), 1.0 - labeled_probability, sampler["budget"]
    )
    assert picks.tolist() == sampler["picks"][::-1]
