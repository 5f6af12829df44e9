"""Golden test: BGADL's L_E, L_G, L_D and L_C against the authors' code (toantm/BGADL
`demo_mnist.py`, one iteration of `VAEACGAN.train`; fixture made by make_bgadl.py).

The networks are the code's run on small stand-ins; the fixture holds what each returned.
L_E, L_G and L_D are the project's loss functions on those outputs; L_C (and L_D again) come
from BgadlModule's D/C step with the same stand-in discriminator and classifier (no
BatchNorm, as the code's LeNet-5), `synthesis: on_the_fly` (the code's three CE terms) and
pixels equal to the classifier's inputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from al.data.base import PixelStats
from al.methods.bgadl import (
    BgadlModule,
    discriminator_loss,
    encoder_loss,
    generator_loss,
)
from al.models.backbone import Backbone

FIXTURE = json.loads(Path(__file__).with_name("bgadl.json").read_text())
INPUTS, LOSSES = FIXTURE["inputs"], FIXTURE["losses"]
RECONSTRUCTION_WEIGHT = 0.75  # demo_mnist.py: G_loss += 0.75 * G_dec_loss
ATOL = 1e-5


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def linear(weights: dict) -> nn.Linear:
    layer = nn.Linear(*tensor(weights["weight"]).T.shape).double()
    layer.weight.data, layer.bias.data = tensor(weights["weight"]), tensor(weights["bias"])
    return layer


class FlatClassifier(Backbone):
    """The stand-in classifier: flattened pixels → one linear layer."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = linear(INPUTS["classifier"])
        self.stage_channels = [self.classifier.in_features]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return x.flatten(1), []


def test_encoder_loss_matches_the_code():
    """L_E = MSE(g(e(x), y), x) + latent_loss(μ, log σ²)."""
    step = FIXTURE["encoder_step"]
    mu, logvar = (tensor(v) for v in step["mu_logvar"])
    loss = encoder_loss(tensor(step["reconstruction"]), tensor(INPUTS["x"]), mu, logvar)
    assert loss.item() == pytest.approx(LOSSES["E_loss"], abs=ATOL)


def test_generator_loss_matches_the_code():
    """L_G = BCE(d(g(z, y)), 1) + CE(c(g(z, y)), y) + 0.75·MSE(g(e(x), y), x)."""
    step = FIXTURE["generator_step"]
    loss = generator_loss(
        tensor(step["judged_fake"]),
        tensor(step["fake_logits"]),
        torch.tensor(INPUTS["labels"]),
        tensor(step["reconstruction"]),
        tensor(INPUTS["x"]),
        RECONSTRUCTION_WEIGHT,
    )
    assert loss.item() == pytest.approx(LOSSES["G_loss"], abs=ATOL)


def test_discriminator_loss_matches_the_code():
    """L_D = BCE(d(x), 1) + BCE(d(g(z, y)), 0) + BCE(d(g(e(x), y)), 0)."""
    step = FIXTURE["discriminator_step"]
    loss = discriminator_loss(
        tensor(step["judged_real"]),
        tensor(step["judged_fake"]),
        tensor(step["judged_reconstruction"]),
    )
    assert loss.item() == pytest.approx(LOSSES["D_loss"], abs=ATOL)


def test_discriminator_and_classifier_step_matches_the_code(monkeypatch):
    """BgadlModule's D/C step on the code's D/C-step fakes: L_D and L_C = CE(c(x), y) +
    CE(c(g(z, y)), y) + CE(c(g(e(x), y)), y); the classifier's logits of x as the code's."""
    x = tensor(INPUTS["x"])
    module = BgadlModule(
        FlatClassifier(),
        optimizer=torch.optim.SGD,
        num_classes=len(INPUTS["classifier"]["bias"]),
        input_shape=x.shape[1:],
        synthesis="on_the_fly",
        synthetic_batchnorm="running",
        discriminator_fakes="regenerated",
        synthetic_weight=1.0,  # the code's
    ).double()
    module.real_fake = nn.Sequential(nn.Flatten(), linear(INPUTS["discriminator"]), nn.Sigmoid())
    module.pixel_stats = PixelStats(mean=(0.0,), std=(1.0,))
    monkeypatch.setattr(module, "apply_update", lambda loss, *optimizers: None)
    step = FIXTURE["discriminator_step"]
    fake, made = tensor(step["fake"]), tensor(step["reconstruction"])
    labels = torch.tensor(INPUTS["labels"])
    d_loss, c_loss, logits = module.update_discriminator_and_classifier(
        x, labels, x, fake, made, ()
    )
    torch.testing.assert_close(logits, tensor(step["real_logits"]), atol=ATOL, rtol=0)
    assert d_loss.item() == pytest.approx(LOSSES["D_loss"], abs=ATOL)
    assert c_loss.item() == pytest.approx(LOSSES["C_loss"], abs=ATOL)
