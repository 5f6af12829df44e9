"""`overhead`: one AL stage's training through al's Lightning path vs a plain PyTorch loop.

Both train a fresh task module (`ClassifierModule`) on the same labeled samples from the real
datamodule's training loader, for the same epochs (so the same optimizer steps), in train
mode, with no validation, progress bar or logger, at the same thread count; each repeat runs
them from the same seed. A third run, Lightning's own floor, trains the same module through the
same Trainer with a `training_step` that is the loss alone (no epoch means, no metric, no
finiteness check): al's cost is the gap between the first and the third.

Two scales: the default experiment (digits, the 8×8 SmallCNN, batch 32: a step of a few ms,
where per-step costs show most) and the papers' CIFAR setting (ResNet-18 on 32×32 images,
batch 128, on CIFAR-10-format files the benchmark writes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from al import CONF_DIR
from al.bench.figures import Figure, timed
from al.bench.loader import fake_data
from al.bench.settings import Settings
from al.build import build_data, build_module
from al.data import ALData, ALDataModule, datamodule_for
from al.errors import build


@dataclass(frozen=True)
class Scale:
    """One stage to time: its name, config overrides, labeled samples and epochs; `files`:
    its dataset reads the files the benchmark writes; `best_of`: each repeat's time is the
    fastest of that many runs (timeit's rule against a shared machine's noise; cheap stages)."""

    name: str
    overrides: tuple[str, ...]
    labels: int
    epochs: int
    files: bool = False
    best_of: int = 1


def cifar_scale(settings: Settings, labels: int) -> Scale:
    """The papers' CIFAR setting: ResNet-18, batch 128 (16 quick), on the files the benchmark
    writes, `labels` labeled images (32 quick), 2 epochs (1 quick)."""
    return Scale(
        "CIFAR-10 format, ResNet-18",
        ("dataset=cifar10", "model=resnet18", f"loader.batch_size={settings.pick(128, 16)}"),
        settings.pick(labels, 32),
        settings.pick(2, 1),
        files=True,
    )


def scales(settings: Settings) -> list[Scale]:
    digits = Scale("digits, SmallCNN", (), settings.pick(500, 100), settings.pick(20, 2), best_of=3)
    return [digits, cifar_scale(settings, 512)]


def stage_config(
    settings: Settings,
    epochs: int,
    scale: Scale | None = None,
    root: str = "",
    extra: tuple[str, ...] = (),
) -> DictConfig:
    """The default experiment's config (with `scale`'s overrides, its files under `root`, and
    `extra` overrides), no logger."""
    accelerator = "gpu" if settings.device.type == "cuda" else "cpu"
    files = scale is not None and scale.files
    overrides = [
        *(scale.overrides if scale is not None else ()),
        *extra,
        *([f"dataset.root={root}", "dataset.pool_size=null"] if files else []),
        "logger=none",
        f"trainer.max_epochs={epochs}",
        f"trainer.accelerator={accelerator}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


class LossOnly(pl.LightningModule):
    """Lightning's floor: `inner`'s backbone and optimizer, a training step that is the loss."""

    def __init__(self, inner: pl.LightningModule) -> None:
        super().__init__()
        self.inner = inner

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        return F.cross_entropy(self.inner(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.inner.configure_optimizers()


def lightning_stage(
    cfg: DictConfig, datamodule: ALDataModule, num_classes: int, loss_only: bool = False
) -> float:
    """Seconds of al's `trainer.fit` of a fresh task module (the loop's training step), or of
    the same module's loss alone (`loss_only`)."""
    pl.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, num_classes)
    trainer: pl.Trainer = build(cfg.trainer, callbacks=[])
    seconds, _ = timed(trainer.fit, LossOnly(module) if loss_only else module, datamodule)
    return seconds


def plain_stage(
    cfg: DictConfig, datamodule: ALDataModule, num_classes: int, device: torch.device
) -> float:
    """Seconds of a bare PyTorch loop over the same module class, loader and epochs."""
    pl.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, num_classes).to(device)
    optimizer = module.configure_optimizers()
    if isinstance(optimizer, dict):  # with a scheduler, whose per-epoch step is left out
        optimizer = optimizer["optimizer"]

    def fit() -> None:
        module.train()
        for _ in range(cfg.trainer.max_epochs):
            for x, y in datamodule.train_dataloader():
                loss = F.cross_entropy(module(x.to(device)), y.to(device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

    seconds, _ = timed(fit)
    return seconds


def stage_data(cfg: DictConfig, scale: Scale) -> tuple[ALData, ALDataModule]:
    """`cfg`'s data and a datamodule of `scale.labels` labeled samples drawn from its seed."""
    data: ALData = build_data(cfg.dataset)
    labeled = np.random.default_rng(cfg.seed).choice(len(data.pool), scale.labels, False)
    return data, datamodule_for(data, np.sort(labeled), **cfg.loader)


def scale_figures(settings: Settings, scale: Scale, root: str) -> list[Figure]:
    """al / plain and Lightning's floor / plain at one scale, after a warm-up of each."""
    cfg = stage_config(settings, scale.epochs, scale, root)
    data, datamodule = stage_data(cfg, scale)
    warm_up = stage_config(settings, 1, scale, root)
    lightning_stage(warm_up, datamodule, data.num_classes)
    plain_stage(warm_up, datamodule, data.num_classes, settings.device)
    runs = {
        "al": lambda: lightning_stage(cfg, datamodule, data.num_classes),
        "floor": lambda: lightning_stage(cfg, datamodule, data.num_classes, loss_only=True),
        "plain": lambda: plain_stage(cfg, datamodule, data.num_classes, settings.device),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(settings.repeats):
        for name, stage in runs.items():
            times[name].append(min(stage() for _ in range(scale.best_of)))
    steps = scale.epochs * len(datamodule.train_dataloader())
    best = f", best of {scale.best_of}" if scale.best_of > 1 else ""
    what = f"{scale.name}: {scale.labels} labels, {steps} steps{best}"
    return [
        against_plain(f"{what}, al", times["al"], times["plain"], target="<= 1.05"),
        against_plain(
            f"{what}, Lightning alone",
            times["floor"],
            times["plain"],
            note="the same Trainer, loss-only step",
        ),
    ]


def against_plain(name: str, seconds: list[float], plain: list[float], **labels: str) -> Figure:
    """The figure of `seconds` against the plain loop's, repeat by repeat."""
    ratios = [a / b for a, b in zip(seconds, plain, strict=True)]
    values = {"seconds": seconds, "baseline_seconds": plain}
    return Figure("overhead", name, "plain PyTorch loop", ratios, values, **labels)


def run(settings: Settings) -> list[Figure]:
    with fake_data(settings.pick(1_000, 100)) as root:
        return [
            figure
            for scale in scales(settings)
            for figure in scale_figures(settings, scale, str(root))
        ]
