"""Golden test: VAAL's VAE and discriminator objectives, its training iteration and its
sampler against the authors' code (sinhasam/vaal `Solver.vae_loss`, `Solver.train`,
`AdversarySampler.sample`; fixture made by make_vaal.py), on the stub networks of
vaal_stubs.py. Our settings that match the code: kl=sum, vae_steps=2, β = λ = 1,
discriminator_batch=shared."""

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
from al.models.vae import vae_loss

FIXTURE = json.loads(Path(__file__).with_name("vaal.json").read_text())
TRAIN = FIXTURE["train"]
ATOL = 1e-5


def selector(epochs_v: float = 1.0) -> vaal.VaalSelector:
    """The code's settings on the stubs' vector inputs."""
    return vaal.VaalSelector(
        input_shape=[len(TRAIN["labeled"][0])],
        beta=TRAIN["beta"],
        lambda_adv=TRAIN["lambda_adv"],
        epochs_v=epochs_v,
        batch_size=TRAIN["batch_size"],
        vae_steps=TRAIN["vae_steps"],
        kl="sum",
        discriminator_batch="shared",
    )


def networks() -> tuple[StubVAE, StubDiscriminator]:
    return StubVAE(FIXTURE["weights"]), StubDiscriminator(FIXTURE["weights"])


def batches(pool: str) -> list[torch.Tensor]:
    return list(torch.tensor(TRAIN[pool]).split(TRAIN["batch_size"]))


@pytest.mark.parametrize("case", FIXTURE["vae_loss"], ids=lambda c: f"beta{c['beta']}")
def test_vae_loss_matches_solver_vae_loss(case):
    """MSE (mean) + β·KL summed over batch and dimensions (`kl: sum`)."""
    x, recon, mu, logvar = (torch.tensor(case[k]) for k in ("x", "recon", "mu", "logvar"))
    loss = vae_loss(recon, x, mu, logvar, case["beta"], "sum")
    assert loss.item() == pytest.approx(case["loss"], abs=ATOL)


def test_objectives_match_the_losses_solver_train_backpropagates():
    """The code's VAE steps read batches (1, 1) then (2, 2); its discriminator step (2, 2)."""
    vae, discriminator = networks()
    method = selector()
    labeled, unlabeled = batches("labeled"), batches("unlabeled")
    no_conditions = (None,) * 4
    for step, expected in enumerate(TRAIN["vae_objectives"]):
        loss = method.vae_objective(
            vae, discriminator, labeled[step], unlabeled[step], *no_conditions
        )
        assert loss.item() == pytest.approx(expected, abs=ATOL)
    loss = method.discriminator_objective(
        vae, discriminator, labeled[-1], unlabeled[-1], *no_conditions
    )
    assert loss.item() == pytest.approx(TRAIN["discriminator_objective"], abs=ATOL)


def test_one_training_iteration_backpropagates_the_codes_losses_in_its_order(monkeypatch):
    """Our loop, unshuffled as the code's loaders: two VAE steps on fresh batches, then the
    discriminator on the last of them (`discriminator_batch: shared`)."""
    monkeypatch.setattr(vaal, "shuffled_batches", sequential_batches)
    labeled, unlabeled = torch.tensor(TRAIN["labeled"]), torch.tensor(TRAIN["unlabeled"])
    one_iteration = TRAIN["batch_size"] / (len(labeled) + len(unlabeled))
    method = selector(epochs_v=one_iteration)
    vae, discriminator = networks()
    losses = recorded_backward_losses(
        monkeypatch,
        lambda: method.train_adversary(vae, discriminator, labeled, unlabeled, None),
    )
    expected = [*TRAIN["vae_objectives"], TRAIN["discriminator_objective"]]
    assert losses == pytest.approx(expected, abs=ATOL)


def test_sampler_picks_the_candidates_adversary_sampler_picks():
    """The lowest D(μ) first (ours ranks 1 − D, the code −D)."""
    sampler = FIXTURE["sampler"]
    candidates = torch.tensor(sampler["candidates"])
    vae, discriminator = networks()
    labeled_probability = selector().discriminate(vae, discriminator, candidates, None)
    picks, _ = TieBreak(0).top_k(
        torch.arange(len(candidates)), 1.0 - labeled_probability, sampler["budget"]
    )
    assert picks.tolist() == sampler["picks"]
