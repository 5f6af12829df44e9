"""VAAL's β-VAE and discriminator, optionally conditioned on TA-VAAL's ranker output r."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from al.errors import ConfigError


def conv_stage(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def deconv_stage(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


def vaal_deconv_stages(widths: Sequence[int]) -> list[nn.Module]:
    """VAAL's decoder body (sinhasam/vaal model.py): 3 × [ConvT k4 s2 p1 → BN → ReLU]."""
    return [m for a, b in itertools.pairwise(widths) for m in deconv_stage(a, b)]


def sraal_deconv_stages(widths: Sequence[int]) -> list[nn.Module]:
    """SRAAL's decoder body (Beichen1996/SRAAL model.py), VAAL's but for its first two stages:
    ConvT → BN (no ReLU), then ConvT → ReLU → BN → ReLU, then ConvT → BN → ReLU."""
    first, second, third, last = widths
    return [
        nn.ConvTranspose2d(first, second, 4, 2, 1, bias=False),
        nn.BatchNorm2d(second),
        nn.ConvTranspose2d(second, third, 4, 2, 1, bias=False),
        nn.ReLU(),
        nn.BatchNorm2d(third),
        nn.ReLU(),
        *deconv_stage(third, last),
    ]


DECODERS = {"vaal": vaal_deconv_stages, "sraal": sraal_deconv_stages}


class VAE(nn.Module):
    """What both VAEs share: μ and log σ² heads on `encoder`, a decoder reading the first
    `decoder_dims` latent dimensions (and the rank value when `rank_conditioned`)."""

    encoder: nn.Module
    mu: nn.Linear
    logvar: nn.Linear
    decoder_dims: int
    rank_conditioned: bool

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h)

    def decoder_input(self, z: torch.Tensor, rank: torch.Tensor | None) -> torch.Tensor:
        z = z[:, : self.decoder_dims]
        return torch.cat([z, rank[:, None]], dim=1) if self.rank_conditioned else z

    def decode(self, z: torch.Tensor, rank: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """z ~ q(z|x) by the reparameterisation trick."""
        return reparameterize(mu, logvar)

    def forward(self, x: torch.Tensor, rank: torch.Tensor | None = None):
        """(reconstruction, μ, log σ², z) of an already prepared batch."""
        return reconstruct(self, x, rank)


class ConvVAE(VAE):
    """VAAL's VAE for `image_size`-px images (32 in the references; inputs of another size are
    resized to it). Encoder: 4 × [Conv k4 s2 p1 → BN → ReLU] with `channels` (128…1024),
    linear heads for μ and log σ². Decoder: Linear(d [+1] → C₄·(s/8)²) → 3 × ConvT → ConvT(k1)
    to the input channels, the 3 ConvT stages laid out as `decoder` names (`vaal`, both VAAL
    codes; `sraal`, SRAAL's code). With `rank_conditioned`, the decoder also gets a rank value
    in [0, 1] (TA-VAAL: σ(r), or U(0, 1) in the first iteration)."""

    def __init__(
        self,
        in_channels: int,
        latent_dim: int,
        image_size: int = 32,
        channels: Sequence[int] = (128, 256, 512, 1024),
        rank_conditioned: bool = False,
        decoder_dims: int | None = None,
        decoder: str = "vaal",
    ) -> None:
        super().__init__()
        if decoder not in DECODERS:
            raise ConfigError(f"decoder={decoder!r} is not one of {', '.join(DECODERS)}")
        if len(channels) != 4 or image_size % 16:
            raise ConfigError(
                f"VAE needs 4 channel widths and an image_size divisible by 16, got "
                f"channels={list(channels)}, image_size={image_size}"
            )
        self.image_size, self.rank_conditioned = image_size, rank_conditioned
        self.decoder_dims = decoder_dims or latent_dim
        widths = [in_channels, *channels]
        self.encoder = nn.Sequential(
            *[m for a, b in itertools.pairwise(widths) for m in conv_stage(a, b)],
            nn.Flatten(),
        )
        flat = channels[-1] * (image_size // 16) ** 2
        self.mu, self.logvar = nn.Linear(flat, latent_dim), nn.Linear(flat, latent_dim)
        self.start = (channels[-1], image_size // 8)
        self.expand = nn.Linear(
            self.decoder_dims + rank_conditioned, channels[-1] * (image_size // 8) ** 2
        )
        self.decoder = nn.Sequential(
            *DECODERS[decoder](list(reversed(channels))),
            nn.ConvTranspose2d(channels[0], in_channels, 1),
        )

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The VAE's view of a batch: resized to image_size × image_size."""
        if x.shape[-1] == self.image_size and x.shape[-2] == self.image_size:
            return x
        return F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear")

    def decode(self, z: torch.Tensor, rank: torch.Tensor | None) -> torch.Tensor:
        channels, size = self.start
        return self.decoder(self.expand(self.decoder_input(z, rank)).view(-1, channels, size, size))


class MLPVAE(VAE):
    """TA-VAAL's toy VAE (§4.1): 2-layer MLP encoder and decoder for vector inputs."""

    def __init__(
        self,
        input_dim: int,
        latent_dim: int,
        hidden: int = 64,
        rank_conditioned: bool = False,
        decoder_dims: int | None = None,
    ) -> None:
        super().__init__()
        self.rank_conditioned = rank_conditioned
        self.decoder_dims = decoder_dims or latent_dim
        self.encoder = nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU())
        self.mu, self.logvar = nn.Linear(hidden, latent_dim), nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(
            nn.Linear(self.decoder_dims + rank_conditioned, hidden),
            nn.ReLU(),
            nn.Linear(hidden, input_dim),
        )

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)

    def decode(self, z: torch.Tensor, rank: torch.Tensor | None) -> torch.Tensor:
        return self.decoder(self.decoder_input(z, rank))


def reconstruct(vae: nn.Module, x: torch.Tensor, rank: torch.Tensor | None = None):
    """(reconstruction, μ, log σ², z) of `vae` on the batch `x`, by its `encode`, `sample` and
    `decode`: z is drawn for the whole batch even where the networks run on a rank's share."""
    mu, logvar = vae.encode(x)
    z = vae.sample(mu, logvar)
    return vae.decode(z, rank), mu, logvar, z


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    return mu + torch.randn_like(mu) * (0.5 * logvar).exp()


def build_vae(
    input_shape: Sequence[int],
    latent_dim: int,
    rank_conditioned: bool,
    decoder_dims: int | None = None,
    decoder: str = "vaal",
    **sizes,
) -> nn.Module:
    """The conv VAE for images (its ConvT stages laid out as `decoder`), the MLP VAE for
    vectors; the decoder reads the first `decoder_dims` latent dimensions (all by default;
    half in SRAAL)."""
    if len(input_shape) == 3:
        channels = sizes["channels"]
        return ConvVAE(
            input_shape[0],
            latent_dim,
            sizes["image_size"],
            channels,
            rank_conditioned,
            decoder_dims,
            decoder,
        )
    hidden = sizes["hidden"]
    return MLPVAE(math.prod(input_shape), latent_dim, hidden, rank_conditioned, decoder_dims)


class Discriminator(nn.Module):
    """Linear(d [+1 for r] → h) → ReLU → … → Linear(h → 1) → sigmoid, `linear_layers` linear
    layers in all (3 in VAAL's code, 5 in SRAAL's): the probability of a latent code's state."""

    def __init__(
        self,
        latent_dim: int,
        hidden: int = 512,
        rank_conditioned: bool = False,
        linear_layers: int = 3,
    ) -> None:
        super().__init__()
        self.rank_conditioned = rank_conditioned
        widths = [latent_dim + rank_conditioned] + [hidden] * (linear_layers - 1)
        layers = [m for a, b in itertools.pairwise(widths) for m in (nn.Linear(a, b), nn.ReLU())]
        self.net = nn.Sequential(*layers, nn.Linear(hidden, 1), nn.Sigmoid())

    def forward(self, mu: torch.Tensor, rank: torch.Tensor | None = None) -> torch.Tensor:
        if self.rank_conditioned:
            mu = torch.cat([mu, rank[:, None]], dim=1)
        return self.net(mu).squeeze(1)


INITS = ("code", "kaiming", "default")
CODE_INITIALISED = (nn.Linear, nn.Conv2d)  # what the codes' kaiming_init matches
KAIMING_INITIALISED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def kaiming_init(layer: nn.Module, weighted: tuple[type[nn.Module], ...]) -> None:
    """Kaiming-normal weights and zero biases for the `weighted` layer types, unit weights and
    zero biases for batch norm; other layers untouched."""
    if isinstance(layer, weighted):
        nn.init.kaiming_normal_(layer.weight)
        if layer.bias is not None:
            nn.init.zeros_(layer.bias)
    elif isinstance(layer, nn.BatchNorm1d | nn.BatchNorm2d):
        nn.init.ones_(layer.weight)
        nn.init.zeros_(layer.bias)


def initialise(network: nn.Module, init: str) -> None:
    """Weight init of a VAE, discriminator or classifier (the papers do not say which).
    `code`: the VAAL, TA-VAAL and SRAAL codes' `weight_init` as it acts — their `kaiming_init`
    matches Linear and Conv2d (Kaiming-normal weights, zero biases) and batch norm, not
    ConvTranspose2d, and the VAE's `weight_init` hands it the names "fc_mu" and "fc_logvar",
    not the layers: every ConvTranspose2d and the μ and log σ² heads keep PyTorch's default.
    `kaiming`: every linear and (transposed) conv layer, the heads included. `default`:
    PyTorch's everywhere."""
    if init == "default":
        return
    code = init == "code"
    skipped = [network.mu, network.logvar] if code and isinstance(network, VAE) else []
    for layer in network.modules():
        if not any(layer is head for head in skipped):
            kaiming_init(layer, CODE_INITIALISED if code else KAIMING_INITIALISED)


def vae_loss(
    reconstruction: torch.Tensor,
    target: torch.Tensor,
    mu: torch.Tensor,
    logvar: torch.Tensor,
    beta: float,
    kl: str = "sum",
    reconstruction_weight: float = 1.0,
) -> torch.Tensor:
    """w·MSE reconstruction (mean) + β·KL(q(z|x) ‖ N(0, I)); KL summed over batch and
    dimensions (`sum`, VAAL code), averaged over both (`mean`, TA-VAAL code) or summed over
    dimensions and averaged over the batch (`batchmean`, SRAAL code)."""
    divergence = -0.5 * (1 + logvar - mu.square() - logvar.exp())
    if kl == "sum":
        divergence = divergence.sum()
    elif kl == "mean":
        divergence = divergence.mean()
    else:
        divergence = divergence.sum(1).mean()
    return reconstruction_weight * F.mse_loss(reconstruction, target) + beta * divergence
