"""The stub VAE and discriminator of the VAAL / TA-VAAL golden fixtures, in our interface.

The fixtures ran the authors' objectives on these same maps (in the codes' interfaces; see
make_vaal.py, make_ta_vaal.py): x ↦ μ = x·W_μ, log σ² = ½·tanh(x·W_σ), z = μ (no noise),
reconstruction [z | r]·W_d + b_d; discriminator sigmoid([μ | r]·w + b), r the rank value when
rank-conditioned (TA-VAAL), absent otherwise (VAAL)."""

from __future__ import annotations

import torch
from torch import nn


class StubVAE(nn.Module):
    """`encode(x)` → (μ, log σ²); `sample` → z = μ; `decode(z, rank)` → reconstruction."""

    def __init__(self, weights: dict) -> None:
        super().__init__()
        for name in ("encoder", "decoder", "decoder_bias"):
            self.register_buffer(name, torch.tensor(weights[name]))
        self.latent = self.encoder.shape[1] // 2
        self.unused = nn.Parameter(torch.zeros(1))  # Adam refuses an empty parameter list

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = x @ self.encoder
        return h[:, : self.latent], 0.5 * torch.tanh(h[:, self.latent :])

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu

    def decode(self, z: torch.Tensor, rank: torch.Tensor | None) -> torch.Tensor:
        z = z if rank is None else torch.cat([z, rank[:, None]], dim=1)
        return z @ self.decoder + self.decoder_bias


class StubDiscriminator(nn.Module):
    """sigmoid([μ | r]·w + b): one probability "labeled" per sample."""

    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weights["discriminator"]))
        self.bias = nn.Parameter(torch.tensor(weights["discriminator_bias"]))

    def forward(self, mu: torch.Tensor, rank: torch.Tensor | None = None) -> torch.Tensor:
        if rank is not None:
            mu = torch.cat([mu, rank[:, None]], dim=1)
        return torch.sigmoid(mu @ self.weight + self.bias)


def recorded_backward_losses(monkeypatch, run) -> list[float]:
    """The value of every tensor `run()` calls .backward() on, in order."""
    losses = []
    original = torch.Tensor.backward

    def recording(self, *args, **kwargs):
        losses.append(self.item())
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.Tensor, "backward", recording)
        run()
    return losses


def sequential_batches(count: int, size: int, device: torch.device):
    """`shuffled_batches` without the shuffle: the codes' unshuffled loaders, endlessly."""
    order = torch.arange(count, device=device)
    while True:
        yield from order.split(size)
