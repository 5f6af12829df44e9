"""BGADL's VAE-ACGAN (Tran et al. 2019; the public code's MNIST networks): encoder e(x),
class-conditional generator g(z, y) with a sigmoid output in [0, 1], and a real/fake
discriminator d(x). The task learner is the auxiliary classifier. Images are `size`×`size`
(28 or 32) with any number of channels; weights N(0, 0.02), biases 0, as the code."""

from __future__ import annotations

import torch
from torch import nn

from al.errors import ConfigError

SIZES = (28, 32)


def check_size(size: int) -> None:
    if size not in SIZES:
        raise ConfigError(f"image_size={size} is not one of {SIZES}: BGADL's nets are for these")


class Encoder(nn.Module):
    """Conv(c→64, k4 s2) → BN → ReLU → Conv(64→128, k4 s2) → BN → ReLU → Linear(→1024) →
    ReLU → μ, log σ² heads (linear). The code's encoder ends in a single-channel conv (a
    1-value bottleneck at 28 px) and sigmoid heads for μ and log σ²; neither is copied."""

    def __init__(self, channels: int, size: int, latent_dim: int) -> None:
        super().__init__()
        check_size(size)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(128 * (size // 4) ** 2, 1024),
            nn.ReLU(),
        )
        self.mu, self.logvar = nn.Linear(1024, latent_dim), nn.Linear(1024, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.mu(h), self.logvar(h)


class Generator(nn.Module):
    """[z, onehot(y)] → FC 1024 → BN → ReLU → FC 128·(s/4)² → BN → ReLU → ConvT(128→64) → BN →
    ReLU → ConvT(64→c) → sigmoid (the code's infoGAN-style generator)."""

    def __init__(self, channels: int, size: int, latent_dim: int, num_classes: int) -> None:
        super().__init__()
        check_size(size)
        self.num_classes = num_classes
        start = (128, size // 4, size // 4)
        self.net = nn.Sequential(
            nn.Linear(latent_dim + num_classes, 1024),
            nn.BatchNorm1d(1024),
            nn.ReLU(),
            nn.Linear(1024, 128 * start[1] * start[2]),
            nn.BatchNorm1d(128 * start[1] * start[2]),
            nn.ReLU(),
            nn.Unflatten(1, start),
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, channels, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        one_hot = nn.functional.one_hot(y, self.num_classes).to(z.dtype)
        return self.net(torch.cat([z, one_hot], dim=1))


class RealFakeDiscriminator(nn.Module):
    """Conv(c→64, k4 s2) → LReLU(0.2) → Conv(64→128, k4 s2) → BN → LReLU → FC 1024 → BN → LReLU
    → FC 1 → sigmoid: the probability that an image is real."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        check_size(size)
        self.net = nn.Sequential(
            nn.Conv2d(channels, 64, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(64, 128, 4, 2, 1),
            nn.BatchNorm2d(128),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(128 * (size // 4) ** 2, 1024),
            nn.BatchNorm1d(1024),
            nn.LeakyReLU(0.2),
            nn.Linear(1024, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def gan_init(layer: nn.Module) -> None:
    """The code's init: N(0, 0.02) weights and zero biases for conv and linear layers."""
    if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(layer.weight, 0.0, 0.02)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
