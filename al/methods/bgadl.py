"""BGADL (Tran et al. ICML 2019; the AL survey §3): a dropout classifier trained jointly with a
VAE-ACGAN whose reconstructions x′ = g(e(x*), y*) of the labeled samples join the classifier's
training data; acquisition is BALD with MC dropout (conf/method/bgadl.yaml).

Per step on a labeled batch, the public code's three updates in its order (survey Eq. 1):
  E:     L_E = MSE(g(e(x), y), x) + KL_mean                                    (encoder only)
  G:     L_G = BCE(d(g(z, y)), 1) + CE(c(g(z, y)), y) + w·MSE(g(e(x), y), x)   (generator only)
  D, C:  L_D = BCE(d(x), 1) + BCE(d(g(z, y)), 0) + BCE(d(g(e(x), y)), 0)
         L_C = CE(c(x), y) + CE(c(g(z, y)), y) [+ CE(c(g(e(x), y)), y) with `on_the_fly`]
with g(z, y) and g(e(x), y) made again by the updated G (the code; `discriminator_fakes`).
The generator works in pixels in [0, 1] at `image_size`; the classifier reads its own
normalised inputs, mapped explicitly both ways with the dataset's pixel statistics (the
public code feeds raw pixels and silently bypasses its normaliser; not copied).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from al.data.base import PixelStats
from al.errors import ConfigError
from al.methods.module import (
    ManualSteps,
    OptimizerFactory,
    SchedulerFactory,
    TaskModule,
    check_finite,
)
from al.models.backbone import Backbone
from al.models.vae import reparameterize
from al.models.vae_acgan import Encoder, Generator, RealFakeDiscriminator, gan_init
from al.options import NonNegativeFloat, PositiveInt
from al.tasks import Task

SYNTHESES = ("on_the_fly", "stored", "none")
SYNTHETIC_BATCHNORMS = ("running", "joint", "own_batch")
DISCRIMINATOR_FAKES = ("regenerated", "reused")
FIRST_STAGES = ("classifier_only", "joint")
VAE_ACGAN_STREAM = 0xB6AD  # mixed into the stage's seed for E, G and D's initialisation


@dataclass(frozen=True)
class GenerativeOptimizer:
    """E, G and D's optimizer: Adadelta(lr, rho, eps) with StepLR(step_size, gamma) per epoch
    (the code: 1.0, 0.9, 1e-6; halved every 8 epochs)."""

    lr: float = 1.0
    rho: float = 0.9
    eps: float = 1e-6
    step_size: int = 8
    gamma: float = 0.5


def kl_mean(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """The code's KL: 0.5·mean(μ² + σ² − log σ² − 1), averaged over batch and dimensions."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1).mean()


def encoder_loss(reconstruction, real, mu, logvar) -> torch.Tensor:
    """L_E = MSE(g(e(x), y), x) + KL_mean."""
    return F.mse_loss(reconstruction, real) + kl_mean(mu, logvar)


def generator_loss(judged_fake, fake_logits, y, reconstruction, real, weight) -> torch.Tensor:
    """L_G = BCE(d(g(z, y)), 1) + CE(c(g(z, y)), y) + w·MSE(g(e(x), y), x)."""
    fooled = F.binary_cross_entropy(judged_fake, torch.ones_like(judged_fake))
    return fooled + F.cross_entropy(fake_logits, y) + weight * F.mse_loss(reconstruction, real)


def discriminator_loss(judged_real, judged_fake, judged_reconstruction) -> torch.Tensor:
    """L_D = BCE(d(x), 1) + BCE(d(g(z, y)), 0) + BCE(d(g(e(x), y)), 0)."""
    real = F.binary_cross_entropy(judged_real, torch.ones_like(judged_real))
    fake = F.binary_cross_entropy(judged_fake, torch.zeros_like(judged_fake))
    made = F.binary_cross_entropy(judged_reconstruction, torch.zeros_like(judged_reconstruction))
    return real + fake + made


class BgadlModule(ManualSteps, TaskModule):
    """The dropout classifier (the backbone, tested and scored by BALD) with BGADL's VAE-ACGAN.

    `synthesis`: `on_the_fly` (the code: every labeled x adds its reconstruction x′ to each
    classifier step), `stored` (x′ = g(μ(x*), y*) made once when x* is labeled, by the stage
    that picked it, and kept in the run state; it trains every later stage's classifier as a
    labeled pair and, in the batch, passes for real with the VAE-ACGAN too) or `none` (BALD
    without synthesis: no VAE-ACGAN at all, exactly the standard classifier). `image_size`
    (28 or 32) is the generator's; `latent_dim` (100) z's; `reconstruction_weight` w (0.75);
    `weight_decay_per_sample` k sets the classifier's weight decay to k / N_train for the
    stage's N_train training pairs (the code: 3.5), None leaves the optimizer's own, with or
    without synthesis.

    `synthetic_batchnorm`: how the classifier's BatchNorm normalises generated inputs (the
    code's LeNet-5 has none): `running` (the running statistics of real samples, as at test
    time), `joint` (real and generated inputs in one batch, whose statistics the running ones
    follow) or `own_batch` (each generated batch by its own statistics, running ones frozen).
    `discriminator_fakes`: the D/C step's g(z, y) and g(e(x), y), `regenerated` by G after its
    update (the code) or `reused` from G's step.

    `first_stage`: `classifier_only` trains the classifier alone before the first acquisition
    (stage 0; the code builds its VAE-ACGAN only after it), `joint` with the VAE-ACGAN from
    stage 0. `synthetic_weight` weighs the classifier's losses on g(z, y) and g(e(x), y) in L_C
    (the code: 1).
    """

    def __init__(
        self,
        backbone: Backbone,
        optimizer: OptimizerFactory,
        num_classes: PositiveInt,
        input_shape: Sequence[int],
        scheduler: SchedulerFactory | None = None,
        synthesis: str = "on_the_fly",
        image_size: PositiveInt = 28,
        latent_dim: PositiveInt = 100,
        reconstruction_weight: NonNegativeFloat = 0.75,
        generative_optimizer: Mapping | None = None,
        weight_decay_per_sample: float | None = None,
        synthetic_batchnorm: str = "running",
        discriminator_fakes: str = "regenerated",
        first_stage: str = "classifier_only",
        synthetic_weight: NonNegativeFloat = 0.1,
        task: Task | None = None,
        train_loss_prediction: bool = False,
    ) -> None:
        super().__init__(backbone, optimizer, num_classes, scheduler, task, train_loss_prediction)
        for name, value, allowed in (
            ("synthesis", synthesis, SYNTHESES),
            ("synthetic_batchnorm", synthetic_batchnorm, SYNTHETIC_BATCHNORMS),
            ("discriminator_fakes", discriminator_fakes, DISCRIMINATOR_FAKES),
            ("first_stage", first_stage, FIRST_STAGES),
        ):
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not one of {', '.join(allowed)}")
        if len(input_shape) != 3:
            raise ConfigError(
                f"bgadl generates images, and this dataset's inputs have shape "
                f"{list(input_shape)}: use an image dataset (digits, mnist, cifar10, …)"
            )
        self.synthesis, self.stores_synthetic = synthesis, synthesis == "stored"
        self.single_device = synthesis != "none"  # E, G and D+C: three backward passes
        self.automatic_optimization = synthesis == "none"
        self.input_size = tuple(input_shape[1:])
        self.image_size, self.latent_dim = image_size, latent_dim
        self.reconstruction_weight = reconstruction_weight
        self.weight_decay_per_sample = weight_decay_per_sample
        self.synthetic_batchnorm = synthetic_batchnorm
        self.discriminator_fakes = discriminator_fakes
        self.first_stage, self.synthetic_weight = first_stage, synthetic_weight
        self.generative_optimizer = GenerativeOptimizer(**(generative_optimizer or {}))
        self.pixel_stats: PixelStats | None = None
        if synthesis != "none":
            self.build_vae_acgan(input_shape[0], num_classes)

    def build_vae_acgan(self, channels: int, num_classes: int) -> None:
        """E, G and D, initialised from a stream of their own (derived from the stage's seed):
        the draws that follow, the data order among them, are those of `synthesis=none`."""
        seed = np.random.SeedSequence([torch.initial_seed(), VAE_ACGAN_STREAM])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed.generate_state(1, np.uint64)[0]))
            self.encoder = Encoder(channels, self.image_size, self.latent_dim)
            self.generator = Generator(channels, self.image_size, self.latent_dim, num_classes)
            self.real_fake = RealFakeDiscriminator(channels, self.image_size)
            for net in (self.encoder, self.generator, self.real_fake):
                net.apply(gan_init)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.synthesis != "none":
            self.pixel_stats = self.trainer.datamodule.pool.pixel_stats
            if self.pixel_stats is None:
                raise ConfigError(
                    "bgadl needs the pool's pixel statistics (PoolInputs.pixel_stats) to map "
                    "generated pixels to the classifier's inputs; this dataset sets none"
                )

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Classifier inputs → the generator's pixels in [0, 1] at image_size."""
        pixels = self.pixel_stats.to_pixels(x).clamp(0, 1)
        return resized(pixels, (self.image_size, self.image_size))

    def to_input(self, image: torch.Tensor) -> torch.Tensor:
        """The generator's pixels → classifier inputs at the dataset's size."""
        return self.pixel_stats.to_inputs(resized(image, self.input_size))

    @torch.no_grad()
    def synthesize(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x′ = g(μ(x), y) of newly labeled inputs, as classifier inputs (`stored`)."""
        return self.to_input(self.generator(self.encoder(self.to_image(x))[0], y))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        if self.synthesis == "none":
            return self.classifier_step(x, y, batch_idx)
        if self.classifier_alone:
            self.apply_update(self.classifier_step(x, y, batch_idx), *self.optimizer_list())
            return None
        encoder_opt, generator_opt, real_fake_opt, classifier_opt = self.optimizers()
        real = self.to_image(x)
        z = torch.randn(len(y), self.latent_dim, device=x.device)
        losses = {"encoder": self.update_encoder(real, y, encoder_opt)}
        losses["generator"], fake, made = self.update_generator(x, real, y, z, generator_opt)
        if self.discriminator_fakes == "regenerated":
            with torch.no_grad():
                fake, made = self.generate(real, y, z)
        losses["discriminator"], losses["classifier"], logits = (
            self.update_discriminator_and_classifier(
                x, y, real, fake.detach(), made.detach(), (real_fake_opt, classifier_opt)
            )
        )
        for value in losses.values():
            check_finite(value, self.current_epoch, batch_idx)
        self.track_epoch({**losses, "loss": losses["classifier"]}, logits, y, batch_idx)
        return None

    def classify_synthetic(self, x: torch.Tensor, *images: torch.Tensor) -> list[torch.Tensor]:
        """The classifier's logits of each batch of generated pixels in `images`, normalised
        per `synthetic_batchnorm`, the running statistics left as they are; `x`, the real
        inputs of the step, joins them in one batch with `joint`."""
        inputs = [self.to_input(image) for image in images]
        if self.synthetic_batchnorm == "joint":
            with frozen_running_statistics(self.backbone):
                return self.classify_together(x, inputs)[1:]
        normalised = {"running": batchnorm_in_eval, "own_batch": frozen_running_statistics}
        with normalised[self.synthetic_batchnorm](self.backbone):
            return [self(batch) for batch in inputs]

    def classify_real_and_synthetic(
        self, x: torch.Tensor, *images: torch.Tensor
    ) -> list[torch.Tensor]:
        """The logits of `x` (whose batch the running statistics follow; with `joint`, `x`
        and `images` together) and of each batch in `images`, as `classify_synthetic`."""
        if self.synthetic_batchnorm == "joint":
            return self.classify_together(x, [self.to_input(image) for image in images])
        return [self(x), *self.classify_synthetic(x, *images)]

    def classify_together(self, x: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        """The logits of `x` and each of `inputs` from one pass over them all."""
        logits = self(torch.cat([x, *inputs]))
        return list(logits.split([len(x), *(len(batch) for batch in inputs)]))

    def reconstruct(self, real: torch.Tensor, y: torch.Tensor):
        """g(z_e, y) with z_e drawn from e(x), and e(x)'s μ and log σ²."""
        mu, logvar = self.encoder(real)
        return self.generator(reparameterize(mu, logvar), y), mu, logvar

    def update_encoder(self, real, y, optimizer) -> torch.Tensor:
        reconstruction, mu, logvar = self.reconstruct(real, y)
        loss = encoder_loss(reconstruction, real, mu, logvar)
        self.apply_update(loss, optimizer)
        return loss.detach()

    def generate(self, real: torch.Tensor, y: torch.Tensor, z: torch.Tensor):
        """g(z, y) and a reconstruction g(e(x), y) of the real images."""
        return self.generator(z, y), self.reconstruct(real, y)[0]

    def update_generator(self, x, real, y, z, optimizer):
        fake, made = self.generate(real, y, z)
        (fake_logits,) = self.classify_synthetic(x, fake)
        loss = generator_loss(
            self.real_fake(fake), fake_logits, y, made, real, self.reconstruction_weight
        )
        self.apply_update(loss, optimizer)
        return loss.detach(), fake, made

    def update_discriminator_and_classifier(self, x, y, real, fake, made, optimizers):
        """One step of D and C together: L_D + L_C (their parameters are disjoint)."""
        d_loss = discriminator_loss(
            self.real_fake(real), self.real_fake(fake), self.real_fake(made)
        )
        images = (fake, made) if self.synthesis == "on_the_fly" else (fake,)
        logits, *synthetic_logits = self.classify_real_and_synthetic(x, *images)
        c_loss = F.cross_entropy(logits, y)
        for batch_logits in synthetic_logits:
            c_loss = c_loss + self.synthetic_weight * F.cross_entropy(batch_logits, y)
        self.apply_update(d_loss + c_loss, *optimizers)
        return d_loss.detach(), c_loss.detach(), logits.detach()

    def classifier_step(self, x: torch.Tensor, y: torch.Tensor, batch_idx: int) -> torch.Tensor:
        """The standard classifier's loss, cross-entropy on the labeled batch (`synthesis=none`,
        and stage 0 with `first_stage=classifier_only`)."""
        logits = self(x)
        loss = self.task.loss(logits, y)
        check_finite(loss, self.current_epoch, batch_idx)
        self.track_epoch({"ce": loss, "loss": loss}, logits, y, batch_idx)
        return loss

    @property
    def classifier_alone(self) -> bool:
        """Whether this stage trains the classifier without the VAE-ACGAN."""
        return self.stage == 0 and self.first_stage == "classifier_only"

    def configure_optimizers(self):
        """E, G and D: Adadelta with StepLR each; the classifier: the configured optimizer
        (and scheduler) over the backbone, with `weight_decay_per_sample` with or without
        synthesis."""
        if self.synthesis == "none" or self.classifier_alone:
            return self.classifier_optimizers()
        settings = self.generative_optimizer
        generative = [
            torch.optim.Adadelta(net.parameters(), settings.lr, settings.rho, settings.eps)
            for net in (self.encoder, self.generator, self.real_fake)
        ]
        classifier = self.optimizer_factory(self.backbone.parameters(), **self.weight_decay())
        schedulers = [
            torch.optim.lr_scheduler.StepLR(optimizer, settings.step_size, settings.gamma)
            for optimizer in generative
        ]
        if self.scheduler_factory is not None:
            schedulers.append(self.scheduler_factory(classifier))
        return [*generative, classifier], schedulers

    def classifier_optimizers(self) -> torch.optim.Optimizer | dict:
        """The classifier alone (`synthesis=none`, `classifier_alone`): the configured
        optimizer and scheduler, as every classifier's, with the weight decay of
        `weight_decay_per_sample`."""
        optimizer = self.optimizer_factory(self.backbone.parameters(), **self.weight_decay())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}

    def weight_decay(self) -> dict[str, float]:
        """{"weight_decay": k / N_train} with `weight_decay_per_sample`, else nothing."""
        if self.weight_decay_per_sample is None:
            return {}
        datamodule = self.trainer.datamodule
        synthetic = 0 if datamodule.synthetic is None else len(datamodule.synthetic)
        return {
            "weight_decay": self.weight_decay_per_sample / (datamodule.labeled_count + synthetic)
        }


def batchnorm_layers(network: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@contextmanager
def batchnorm_in_eval(network: torch.nn.Module) -> Iterator[None]:
    """BatchNorm in eval mode (normalising by, and leaving, the running statistics), every
    other layer (dropout) in its own mode."""
    layers = batchnorm_layers(network)
    modes = [layer.training for layer in layers]
    for layer in layers:
        layer.eval()
    try:
        yield
    finally:
        for layer, mode in zip(layers, modes, strict=True):
            layer.train(mode)


@contextmanager
def frozen_running_statistics(network: torch.nn.Module) -> Iterator[None]:
    """Train-mode BatchNorm that leaves its running mean and variance as they are
    (momentum 0: running = 1·running + 0·batch)."""
    layers = batchnorm_layers(network)
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    try:
        yield
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum


def resized(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)
