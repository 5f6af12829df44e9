"""Make vaal_networks.json: VAAL's and TA-VAAL's VAE and discriminator networks, by the
authors' code: their outputs under shared weights, and which parameters their init sets.

Usage: python tests/golden/make_vaal_networks.py VAAL_REPO TA_VAAL_REPO [OUT]
  VAAL_REPO: sinhasam/vaal; TA_VAAL_REPO: cubeyoung/TA-VAAL (commits in COMMITS below).

Forward: the codes' `VAE(32, 3)` and `Discriminator(32)` (VAAL model.py; TA-VAAL
models/query_models.py, rank-conditioned) get every parameter, in registration order, from
`hashed_uniform` (integer-hashed values, tiled: exact on every machine; std 1/√fan-in for
weights, 0.1 for vectors), as the test does for ours; batch norm in training mode. Stored: the
parameter shapes, μ and log σ² of a hashed input x (2 × 3 × 32 × 32), the decoder's output
for z = μ (TA-VAAL: [μ | r]) at 64 hashed positions, and the discriminators' outputs on hashed
latent codes. The codes' forward draws z with noise; encoder, heads and decoder are called
one by one instead (`_encode`, `fc_mu`, `fc_logvar`, `_decode`).
Init: which parameters the codes' `weight_init` changes, found by building each network
twice from one torch seed, with and without it. Not run by the tests.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

COMMITS = {
    "sinhasam/vaal": "67263f32665990a9408430a86df5b6ecd96a812d",
    "cubeyoung/TA-VAAL": "11610718c431f848d19aa6a94b781dfc0dcfd81d",
}
LATENT, SAMPLES, CODES, POSITIONS = 32, 2, 6, 64


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
def fill(network: torch.nn.Module) -> None:
    """Every parameter from `hashed_uniform`, salted by its position in registration order."""
    for salt, parameter in enumerate(network.parameters()):
        scale = parameter[0].numel() ** -0.5 if parameter.dim() > 1 else 0.1
        parameter.copy_(hashed_uniform(parameter.numel(), salt).view_as(parameter) * scale)


def load(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def changed_by_weight_init(cls, *args) -> list[bool]:
    """Per parameter: does the class's weight_init change what PyTorch's default init drew?"""
    torch.manual_seed(0)
    initialised = cls(*args)
    original, cls.weight_init = cls.weight_init, lambda self: None
    try:
        torch.manual_seed(0)
        default = cls(*args)
    finally:
        cls.weight_init = original
    return [
        not torch.equal(a, b)
        for a, b in zip(initialised.parameters(), default.parameters(), strict=True)
    ]


def shapes(network: torch.nn.Module) -> list[list[int]]:
    return [list(p.shape) for p in network.parameters()]


@torch.no_grad()
def vae_outputs(vae, x: torch.Tensor, rank: torch.Tensor | None) -> dict:
    fill(vae)
    vae.train()
    h = vae._encode(x)
    mu, logvar = vae.fc_mu(h), vae.fc_logvar(h)
    z = mu if rank is None else torch.cat([mu, rank[:, None]], 1)
    positions = (hashed_uniform(POSITIONS, 7).add(3**0.5) / 12**0.5 * x.numel()).long()
    return {
        "parameter_shapes": shapes(vae),
        "mu": mu.tolist(),
        "logvar": logvar.tolist(),
        "reconstruction_positions": positions.tolist(),
        "reconstruction": vae._decode(z).flatten()[positions].tolist(),
    }


@torch.no_grad()
def discriminator_outputs(discriminator, codes: torch.Tensor, rank) -> dict:
    fill(discriminator)
    out = discriminator(codes) if rank is None else discriminator(rank[:, None], codes)
    return {"parameter_shapes": shapes(discriminator), "outputs": out[:, 0].tolist()}


def main(vaal_repo: Path, ta_vaal_repo: Path, out: Path) -> None:
    vaal = load(vaal_repo / "model.py", "vaal_model")
    ta_vaal = load(ta_vaal_repo / "models/query_models.py", "ta_vaal_models")
    x = hashed_uniform(SAMPLES * 3 * 32 * 32, 1000).view(SAMPLES, 3, 32, 32)
    codes = hashed_uniform(CODES * LATENT, 1001).view(CODES, LATENT)
    ranks = hashed_uniform(max(SAMPLES, CODES), 1002)
    fixture = {
        "reference": {
            "repositories": COMMITS,
            "file": "vaal: model.py; TA-VAAL: models/query_models.py",
            "function": "VAE (_encode, fc_mu, fc_logvar, _decode), Discriminator.forward, "
            "VAE/Discriminator.weight_init with kaiming_init",
            "dtype": "float32",
        },
        "made_by": "tests/golden/make_vaal_networks.py",
        "inputs": {
            "x": "hashed_uniform(2·3·32·32, 1000)",
            "codes": "hashed_uniform(6·32, 1001)",
            "ranks": "hashed_uniform(6, 1002)",
        },
        "vaal": {
            "vae": vae_outputs(vaal.VAE(LATENT, 3), x, None),
            "discriminator": discriminator_outputs(vaal.Discriminator(LATENT), codes, None),
            "vae_changed_by_init": changed_by_weight_init(vaal.VAE, LATENT, 3),
            "discriminator_changed_by_init": changed_by_weight_init(vaal.Discriminator, LATENT),
        },
        "ta_vaal": {
            "vae": vae_outputs(ta_vaal.VAE(LATENT, 3), x, ranks[:SAMPLES]),
            "discriminator": discriminator_outputs(ta_vaal.Discriminator(LATENT), codes, ranks),
            "vae_changed_by_init": changed_by_weight_init(ta_vaal.VAE, LATENT, 3),
            "discriminator_changed_by_init": changed_by_weight_init(ta_vaal.Discriminator, LATENT),
        },
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("vaal_networks.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else default)
