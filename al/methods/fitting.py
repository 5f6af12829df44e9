"""Networks a selector trains for itself (VAAL's VAE and discriminator, TA-VAAL's, SRAAL's, the
k-center initial pool's VAE), fitted by Lightning with the run's accelerator, precision and
strategy: on a GPU they train there, in the run's mixed precision, and under DDP each rank trains
on its share of every batch with gradients averaged, instead of every rank training the same
networks; a signal stops them as it stops the task learner.

Such a network is a `StepNetwork`: one optimisation step per item of a step-index loader, its
batches drawn by the network itself from tensors already on the device (so the draws, and the
picks, are those of the plain loop on one device).
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy
from torch.utils.data import DataLoader


class StepNetwork(pl.LightningModule):
    """A selector's networks trained by manual optimisation, one update per training step."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False

    def rank_share(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a batch drawn alike on every rank (all of it on one device)."""
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1 or len(batch) < world:
            return batch
        return batch[self.global_rank :: world]

    def update(self, loss: torch.Tensor, optimizer) -> None:
        """Zero `optimizer`'s gradients, backpropagate `loss`, step it."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


def fit_network(
    network: pl.LightningModule, steps: int, like: pl.Trainer | None, distributed: bool = True
) -> None:
    """Fit `network` for `steps` training steps with `like`'s accelerator, precision and
    strategy (one CPU without it; one device unless `distributed`), then leave it on the device
    it trained on."""
    if steps == 0:
        return
    trainer = network_trainer(like, distributed)
    loader = DataLoader(range(steps), batch_size=None, generator=torch.Generator())
    with torch.enable_grad():
        trainer.fit(network, train_dataloaders=loader)
    network.to(trainer.strategy.root_device)


def network_trainer(like: pl.Trainer | None, distributed: bool = True) -> pl.Trainer:
    """A one-epoch Trainer on `like`'s devices and precision, DDP across `like`'s ranks when it
    has several (and `distributed`), with no logging, checkpoints or progress of its own."""
    settings = {
        "max_epochs": 1,
        "barebones": True,  # no logging, checkpoints, progress or summary: a step's least cost
        "use_distributed_sampler": False,  # every rank reads every step; each takes its share
    }
    if like is None:
        return pl.Trainer(accelerator="cpu", devices=1, **settings)
    device = like.strategy.root_device
    settings |= {"accelerator": device.type, "precision": like.precision}
    if distributed and like.world_size > 1:
        strategy = DDPStrategy(
            cluster_environment=like.strategy.cluster_environment,
            process_group_backend=like.strategy.process_group_backend,
            find_unused_parameters=True,  # a discriminator step leaves the VAE without gradients
        )
        return pl.Trainer(
            strategy=strategy, devices=like.num_devices, num_nodes=like.num_nodes, **settings
        )
    return pl.Trainer(strategy=SingleDeviceStrategy(device=device), **settings)
