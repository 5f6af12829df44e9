"""Kingma et al. (2014)'s M2 generative model: the inference network q(z|x,y), the generator
p(x|y,z), and the bounds of their Eqs. 6 and 7 — −L(x, y) for a labeled pair and −U(x) with y
marginalised exactly over every class. The classifier q(y|x) is the task module's backbone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from al.errors import ConfigError

LIKELIHOODS = {"gaussian": 2, "bernoulli": 1}  # output heads per input element
LOGVAR_RANGE = (-7.0, 7.0)  # the Gaussian decoder's log σ², clamped against collapse


class ConvTrunk(nn.Module):
    """Two [Conv k4 s2 p1 → ReLU] stages (H, W divisible by 4), flattened."""

    def __init__(self, input_shape: Sequence[int], channels: Sequence[int]) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        if height % 4 or width % 4 or len(channels) != 2:
            raise ConfigError(
                f"M2's conv networks need 2 channel widths and images whose sides divide by 4, "
                f"got conv_channels={list(channels)} for {list(input_shape)}"
            )
        first, second = channels
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, first, 4, 2, 1),
            nn.ReLU(),
            nn.Conv2d(first, second, 4, 2, 1),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.out_features = second * (height // 4) * (width // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvHead(nn.Module):
    """The generator's image head: Linear → ReLU → 2 × ConvT k4 s2 p1, to `heads` maps per
    input channel (mean and log σ², or Bernoulli logits)."""

    def __init__(
        self, hidden: int, input_shape: Sequence[int], channels: Sequence[int], heads: int
    ) -> None:
        super().__init__()
        in_channels, height, width = input_shape
        first, second = channels
        self.start = (second, height // 4, width // 4)
        self.net = nn.Sequential(
            nn.Linear(hidden, math.prod(self.start)),
            nn.ReLU(),
            nn.Unflatten(1, self.start),
            nn.ConvTranspose2d(second, first, 4, 2, 1),
            nn.ReLU(),
            nn.ConvTranspose2d(first, in_channels * heads, 4, 2, 1),
        )
        self.heads = heads

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        out = self.net(h)
        return out.view(len(h), self.heads, -1, *out.shape[2:])


class FlatHead(nn.Module):
    """The generator's vector head: Linear(hidden → heads · D)."""

    def __init__(self, hidden: int, input_shape: Sequence[int], heads: int) -> None:
        super().__init__()
        self.shape = tuple(input_shape)
        self.heads = heads
        self.net = nn.Linear(hidden, heads * math.prod(input_shape))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h).view(len(h), self.heads, *self.shape)


class M2(nn.Module):
    """q(z|x,y) = N(μ, σ²) with μ, log σ² from [trunk(x), y] through one hidden layer;
    p(x|y,z) from [y, z] through one hidden layer and `head`; p(y) uniform, p(z) = N(0, I).

    `y` is a vector over the classes: one-hot for a label, or q(y|x) to place an unlabeled
    sample in the latent space (`latent`).
    """

    def __init__(
        self,
        trunk: nn.Module,
        trunk_features: int,
        head: nn.Module,
        num_classes: int,
        latent_dim: int,
        hidden: int,
        likelihood: str,
        activation: type[nn.Module],
    ) -> None:
        super().__init__()
        self.num_classes, self.latent_dim, self.likelihood = num_classes, latent_dim, likelihood
        self.trunk = trunk
        self.encoder_hidden = nn.Sequential(
            nn.Linear(trunk_features + num_classes, hidden), activation()
        )
        self.mu, self.logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.decoder_hidden = nn.Sequential(
            nn.Linear(latent_dim + num_classes, hidden), activation()
        )
        self.head = head

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """μ and log σ² of q(z|x,y)."""
        h = self.encoder_hidden(torch.cat([self.trunk(x), y], dim=1))
        return self.mu(h), self.logvar(h)

    def decode(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(B, heads, *x.shape[1:]): the parameters of p(x|y,z)."""
        return self.head(self.decoder_hidden(torch.cat([z, y], dim=1)))

    def labeled_bound(
        self, x: torch.Tensor, y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """L(x, y) per sample (Eq. 6): −log p(x|y,z) − log p(y) + KL(q(z|x,y) ‖ p(z)), one
        reparameterised draw z = μ + σ·`noise` (fresh N(0, I) when None), KL analytic."""
        mu, logvar = self.encode(x, y)
        noise = torch.randn_like(mu) if noise is None else noise
        z = mu + noise * (0.5 * logvar).exp()
        reconstruction = negative_log_likelihood(x, self.decode(y, z), self.likelihood)
        return reconstruction + math.log(self.num_classes) + gaussian_kl(mu, logvar)

    def unlabeled_bound(
        self, x: torch.Tensor, q_y: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """U(x) per sample (Eq. 7): Σ_y q(y|x)·L(x, y) − H(q(y|x)), summed exactly over all
        C classes in one batch of B·C pairs; `noise` (B, C, latent_dim) or None."""
        batch, classes = q_y.shape
        every_x = x.repeat_interleave(classes, dim=0)
        every_y = torch.eye(classes, device=x.device, dtype=x.dtype).repeat(batch, 1)
        flat_noise = None if noise is None else noise.reshape(batch * classes, -1)
        bounds = self.labeled_bound(every_x, every_y, flat_noise).view(batch, classes)
        entropy = -(q_y * q_y.clamp_min(1e-12).log()).sum(1)
        return (q_y * bounds).sum(1) - entropy

    def latent(self, x: torch.Tensor, q_y: torch.Tensor) -> torch.Tensor:
        """μ of q(z|x, y = q(y|x)): where x sits in the latent space without a label."""
        return self.encode(x, q_y)[0]


def negative_log_likelihood(x: torch.Tensor, params: torch.Tensor, likelihood: str):
    """−log p(x|y,z) per sample, summed over the elements of x: Gaussian with mean and
    log σ² heads, or Bernoulli with logits (inputs must lie in [0, 1])."""
    if likelihood == "bernoulli":
        nll = F.binary_cross_entropy_with_logits(params[:, 0], x, reduction="none")
    else:
        mean, logvar = params[:, 0], params[:, 1].clamp(*LOGVAR_RANGE)
        nll = 0.5 * (math.log(2 * math.pi) + logvar + (x - mean).square() * (-logvar).exp())
    return nll.flatten(1).sum(1)


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per sample, analytic."""
    return -0.5 * (1 + logvar - mu.square() - logvar.exp()).sum(1)


def build_m2(
    input_shape: Sequence[int],
    num_classes: int,
    latent_dim: int = 50,
    hidden: int = 512,
    conv_channels: Sequence[int] = (32, 64),
    mlp_hidden: int = 500,
    likelihood: str = "gaussian",
) -> M2:
    """The conv M2 for images (C, H, W) — about 3.3M parameters at 28×28 with the defaults,
    the M2-VAAL slides' "larger" model — or Kingma et al.'s MLP for vectors: one hidden
    layer of `mlp_hidden` softplus units on each side."""
    if likelihood not in LIKELIHOODS:
        raise ConfigError(f"likelihood={likelihood!r} is not one of {', '.join(LIKELIHOODS)}")
    heads = LIKELIHOODS[likelihood]
    if len(input_shape) == 3:
        trunk = ConvTrunk(input_shape, conv_channels)
        head = ConvHead(hidden, input_shape, conv_channels, heads)
        sizes = (trunk.out_features, head, hidden, nn.ReLU)
    else:
        trunk = nn.Flatten()
        head = FlatHead(mlp_hidden, input_shape, heads)
        sizes = (math.prod(input_shape), head, mlp_hidden, nn.Softplus)
    features, head, width, activation = sizes
    return M2(trunk, features, head, num_classes, latent_dim, width, likelihood, activation)
