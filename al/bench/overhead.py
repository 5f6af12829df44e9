"""`overhead`: one AL stage's training through al's Lightning path vs a plain PyTorch loop.

Both train a fresh `ClassifierModule` (the default SmallCNN on digits, the default Adam) on
the same labeled samples from the real datamodule's training loader, for the same epochs
(so the same optimizer steps), in train mode, with no validation, progress bar or logger,
at the same thread count; each repeat runs both, from the same seed.
"""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from al.bench.figures import Figure, timed
from al.bench.settings import Settings
from al.data import ALDataModule, datamodule_for
from al.errors import build
from al.loop import build_data, build_module
from al.toy import CONF_DIR


def stage_config(settings: Settings, epochs: int) -> DictConfig:
    """The default experiment's config (digits, SmallCNN, Adam, batch 32), no logger."""
    accelerator = "gpu" if settings.device.type == "cuda" else "cpu"
    overrides = [
        "logger=none",
        f"trainer.max_epochs={epochs}",
        f"trainer.accelerator={accelerator}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def lightning_stage(cfg: DictConfig, datamodule: ALDataModule, num_classes: int) -> float:
    """Seconds of al's `trainer.fit` of a fresh task module (the loop's training step)."""
    pl.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, num_classes)
    trainer: pl.Trainer = build(cfg.trainer, callbacks=[])
    seconds, _ = timed(trainer.fit, module, datamodule)
    return seconds


def plain_stage(
    cfg: DictConfig, datamodule: ALDataModule, num_classes: int, device: torch.device
) -> float:
    """Seconds of a bare PyTorch loop over the same module class, loader and epochs."""
    pl.seed_everything(cfg.seed, verbose=False)
    module = build_module(cfg, num_classes).to(device)
    optimizer = module.configure_optimizers()

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


def run(settings: Settings) -> list[Figure]:
    """Lightning / plain over `repeats` pairs, after one warm-up epoch of each."""
    epochs, labels = settings.pick(20, 2), settings.pick(500, 100)
    cfg = stage_config(settings, epochs)
    data = build_data(cfg.dataset)
    labeled = np.sort(np.random.default_rng(cfg.seed).choice(len(data.pool), labels, False))
    datamodule = datamodule_for(data, labeled, **cfg.loader)
    warm_up = stage_config(settings, 1)
    lightning_stage(warm_up, datamodule, data.num_classes)
    plain_stage(warm_up, datamodule, data.num_classes, settings.device)
    lightning, plain = [], []
    for _ in range(settings.repeats):
        lightning.append(lightning_stage(cfg, datamodule, data.num_classes))
        plain.append(plain_stage(cfg, datamodule, data.num_classes, settings.device))
    steps = epochs * len(datamodule.train_dataloader())
    return [
        Figure(
            "overhead",
            f"digits stage: {labels} labels, {epochs} epochs, {steps} steps",
            "plain PyTorch loop",
            [a / b for a, b in zip(lightning, plain, strict=True)],
            {"seconds": lightning, "baseline_seconds": plain},
            target="<= 1.05",
        )
    ]
