"""Golden test: our VAE and discriminator are VAAL's and TA-VAAL's networks (sinhasam/vaal
model.py, cubeyoung/TA-VAAL models/query_models.py; fixture made by make_vaal_networks.py):
same parameter shapes in the same order, and the same outputs when both get the same weights
(`hashed_uniform`, position by position). And which parameters `init: code` sets, against
what the codes' `weight_init` sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from al.models.vae import ConvVAE, Discriminator, initialise

FIXTURE = json.loads(Path(__file__).with_name("vaal_networks.json").read_text())
ATOL = 1e-5
LATENT = 32
CODES = ("vaal", "ta_vaal")


POOL = 65521  # prime: the tiled pattern never lines up with a power-of-two layer width


def hashed_uniform(count: int, salt: int) -> torch.Tensor:
    """`count` values uniform in [−√3, √3) (std 1): a pool of POOL values hashed from their
    position (integer arithmetic: exact on every machine), started at a salt-hashed offset and
    tiled."""
    h = (torch.arange(POOL, dtype=torch.int64) * 0x9E3779B1) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
    h = ((h ^ (h >> 12)) * 0x297A2D39) & 0xFFFFFFFF
    pool = ((h ^ (h >> 15)).double() / 2**32 - 0.5).mul(12**0.5).float()
    start = (salt * 0x85EBCA77 + 12345) % POOL
    return pool.roll(-start).repeat(count // POOL + 1)[:count]


@torch.no_grad()
def filled(network: torch.nn.Module) -> torch.nn.Module:
    """Every parameter from `hashed_uniform`, salted by its position in registration order
    (std 1/√fan-in for weights, 0.1 for vectors), as the fixture filled the code's."""
    for salt, parameter in enumerate(network.parameters()):
        scale = parameter[0].numel() ** -0.5 if parameter.dim() > 1 else 0.1
        parameter.copy_(hashed_uniform(parameter.numel(), salt).view_as(parameter) * scale)
    return network


def uninitialised(build) -> torch.nn.Module:
    """`build()` on the meta device, then given storage: no default init to pay for."""
    with torch.device("meta"):
        network = build()
    return network.to_empty(device="cpu")


def shapes(network: torch.nn.Module) -> list[list[int]]:
    return [list(p.shape) for p in network.parameters()]


def changed_by(init: str, network: torch.nn.Module) -> list[bool]:
    """Per parameter: does `initialise(network, init)` change what PyTorch's default drew?"""
    before = [p.detach().clone() for p in network.parameters()]
    initialise(network, init)
    return [not torch.equal(a, b) for a, b in zip(before, network.parameters(), strict=True)]


@pytest.mark.parametrize("code", CODES)
def test_vae_matches_the_codes_vae(code):
    """μ, log σ² of the encoder and the decoder's output for z = μ (TA-VAAL: and r)."""
    expected = FIXTURE[code]["vae"]
    conditioned = code == "ta_vaal"
    vae = uninitialised(lambda: ConvVAE(3, LATENT, rank_conditioned=conditioned))
    assert shapes(vae) == expected["parameter_shapes"]
    filled(vae).train()
    x = hashed_uniform(2 * 3 * 32 * 32, 1000).view(2, 3, 32, 32)
    rank = hashed_uniform(6, 1002)[:2] if conditioned else None
    with torch.no_grad():
        mu, logvar = vae.encode(x)
        reconstruction = vae.decode(mu, rank).flatten()
    torch.testing.assert_close(mu, torch.tensor(expected["mu"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(logvar, torch.tensor(expected["logvar"]), atol=ATOL, rtol=0)
    torch.testing.assert_close(
        reconstruction[expected["reconstruction_positions"]],
        torch.tensor(expected["reconstruction"]),
        atol=ATOL,
        rtol=0,
    )


@pytest.mark.parametrize("code", CODES)
def test_discriminator_matches_the_codes_discriminator(code):
    expected = FIXTURE[code]["discriminator"]
    conditioned = code == "ta_vaal"
    discriminator = Discriminator(LATENT, rank_conditioned=conditioned)
    assert shapes(discriminator) == expected["parameter_shapes"]
    codes = hashed_uniform(6 * LATENT, 1001).view(6, LATENT)
    rank = hashed_uniform(6, 1002) if conditioned else None
    with torch.no_grad():
        outputs = filled(discriminator)(codes, rank)
    torch.testing.assert_close(outputs, torch.tensor(expected["outputs"]), atol=ATOL, rtol=0)


@pytest.mark.parametrize("code", CODES)
def test_code_init_sets_the_discriminator_parameters_the_codes_set(code):
    torch.manual_seed(0)
    discriminator = Discriminator(LATENT, rank_conditioned=code == "ta_vaal")
    assert changed_by("code", discriminator) == FIXTURE[code]["discriminator_changed_by_init"]


@pytest.mark.parametrize("code", CODES)
def test_code_init_sets_the_vae_parameters_the_codes_set(code):
    """Encoder convs and the decoder's Linear; not the μ / log σ² heads, not a ConvT."""
    torch.manual_seed(0)
    vae = ConvVAE(3, LATENT, channels=(8, 8, 8, 8), rank_conditioned=code == "ta_vaal")
    assert changed_by("code", vae) == FIXTURE[code]["vae_changed_by_init"]
