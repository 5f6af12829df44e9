"""Golden test: SRAAL's online uncertainty indicator (OUI), VAE loss and one iteration's
generator and state-discriminator objectives against the authors' code (Beichen1996/SRAAL
`uncertainty_score`, `Solver.vae_loss`, `Solver.train`; fixture made by make_sraal.py), on
stub networks. The code's OUI divides by torch.var's unbiased variance: `oui_variance:
unbiased` (ours defaults to the population variance on purpose: a one-hot row scores 0)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from vaal_stubs import StubDiscriminator, recorded_backward_losses, sequential_batches

import al.methods.sraal as sraal
import al.methods.vaal as vaal
from al.models.vae import vae_loss
from al.tasks.classification import Classification

FIXTURE = json.loads(Path(__file__).with_name("sraal.json").read_text())
TRAIN, WEIGHTS = FIXTURE["train"], FIXTURE["weights"]
ATOL = 1e-5


class StubSplitVAE(nn.Module):
    """μ = x·W_μ, log σ² = ½·tanh(x·W_σ); the decoder reads the first half of z."""

    def __init__(self) -> None:
        super().__init__()
        for name in ("encoder", "decoder", "decoder_bias"):
            self.register_buffer(name, torch.tensor(WEIGHTS[name]))
        self.latent = self.encoder.shape[1] // 2
        self.decoder_dims = self.latent // 2
        self.unused = nn.Parameter(torch.zeros(1))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.encoder
        return h[:, : self.latent], 0.5 * torch.tanh(h[:, self.latent :])

    def decode(self, z: torch.Tensor, rank: None) -> torch.Tensor:
        return z[:, : self.decoder_dims] @ self.decoder + self.decoder_bias


class StubClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("weight", torch.tensor(WEIGHTS["classifier"]))
        self.register_buffer("bias", torch.tensor(WEIGHTS["classifier_bias"]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.weight + self.bias


def networks() -> nn.ModuleDict:
    return nn.ModuleDict(
        {
            "vae": StubSplitVAE(),
            "classifier": StubClassifier(),
            "discriminator": StubDiscriminator(WEIGHTS),
        }
    )


def selector(**overrides) -> sraal.SraalSelector:
    """The code's settings (recon 5, KL β 1, CE 5, λ 1, 2 generator steps, unbiased OUI, the
    discriminator step on the last generator step's batch)."""
    settings = {
        "input_shape": [len(TRAIN["labeled"][0])],
        "num_classes": len(WEIGHTS["classifier_bias"]),
        "latent_dim": len(WEIGHTS["discriminator"]),
        "batch_size": TRAIN["batch_size"],
        "vae_steps": TRAIN["vae_steps"],
        "oui_variance": "unbiased",
        "discriminator_batch": "shared",
    }
    method = sraal.SraalSelector(**(settings | overrides))
    method.task = Classification()
    return method


def unlabeled_oui() -> torch.Tensor:
    """Our OUI of the stub task model's softmax on the unlabeled samples."""
    logits = torch.tensor(TRAIN["unlabeled"]) @ torch.tensor(WEIGHTS["task_model"])
    return sraal.oui(F.softmax(logits, dim=1), "unbiased")


def batches(pool: str) -> list[torch.Tensor]:
    return list(torch.tensor(TRAIN[pool]).split(TRAIN["batch_size"]))


def test_oui_matches_uncertainty_score():
    """Seeded rows, a nearly one-hot row (the code: ≈ 1/C) and a two-rival row."""
    probs = F.softmax(torch.tensor(FIXTURE["oui"]["logits"]), dim=1)
    torch.testing.assert_close(
        sraal.oui(probs, "unbiased"), torch.tensor(FIXTURE["oui"]["oui"]), atol=ATOL, rtol=0
    )
    torch.testing.assert_close(
        unlabeled_oui(), torch.tensor(TRAIN["unlabeled_oui"]), atol=ATOL, rtol=0
    )


@pytest.mark.parametrize("case", FIXTURE["vae_loss"], ids=lambda c: f"beta{c['beta']}")
def test_vae_loss_matches_solver_vae_loss(case):
    """5·MSE + β·KL summed over dimensions, averaged over the batch (`kl: batchmean`)."""
    x, recon, mu, logvar = (torch.tensor(case[k]) for k in ("x", "recon", "mu", "logvar"))
    loss = vae_loss(recon, x, mu, logvar, case["beta"], "batchmean", 5.0)
    assert loss.item() == pytest.approx(case["loss"], abs=ATOL)


def test_objectives_match_the_losses_solver_train_backpropagates(monkeypatch):
    """Generator steps on batches (1, 1) and (2, 2); the state discriminator on (2, 2), with
    the unlabeled samples' OUI as targets. z = μ, as the stubs the code ran."""
    monkeypatch.setattr(sraal, "reparameterize", lambda mu, logvar: mu)
    nets, method = networks(), selector()
    labeled, unlabeled = batches("labeled"), batches("unlabeled")
    labels = torch.tensor(TRAIN["labels"]).split(TRAIN["batch_size"])
    for step, expected in enumerate(TRAIN["generator_objectives"]):
        loss = method.generator_loss(nets, labeled[step], labels[step], unlabeled[step])
        assert loss.item() == pytest.approx(expected, abs=ATOL)
    states = unlabeled_oui().split(TRAIN["batch_size"])
    loss = method.discriminator_loss(nets, labeled[-1], unlabeled[-1], states[-1])
    assert loss.item() == pytest.approx(TRAIN["discriminator_objective"], abs=ATOL)


def test_one_training_iteration_backpropagates_the_codes_losses_in_its_order(monkeypatch):
    """Our loop, unshuffled as the code's loaders: the code's three losses in its order, the
    discriminator's on the second generator step's batch (`discriminator_batch: shared`)."""
    monkeypatch.setattr(sraal, "reparameterize", lambda mu, logvar: mu)
    monkeypatch.setattr(vaal, "shuffled_batches", sequential_batches)  # the adversaries' draws
    labeled, unlabeled = torch.tensor(TRAIN["labeled"]), torch.tensor(TRAIN["unlabeled"])
    one_iteration = TRAIN["batch_size"] / (len(labeled) + len(unlabeled))
    method, nets = selector(epochs_v=one_iteration), networks()
    losses = recorded_backward_losses(
        monkeypatch,
        lambda: method.train_adversary(
            nets, labeled, torch.tensor(TRAIN["labels"]), unlabeled, unlabeled_oui()
        ),
    )
    expected = [*TRAIN["generator_objectives"], TRAIN["discriminator_objective"]]
    assert losses == pytest.approx(expected, abs=ATOL)
