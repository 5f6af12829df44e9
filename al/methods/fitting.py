"""Networks a selector trains for itself (VAAL's VAE and discriminator, TA-VAAL's, SRAAL's, the
k-center initial pool's VAE), fitted by Lightning with the run's accelerator, precision and
strategy: on a GPU they train there, in the run's mixed precision, and under DDP each rank
computes its share of every batch (`al.methods.rank_split`: the whole batch's loss, synced
BatchNorm), so the networks are one process's and each rank does 1/world of the work; a signal
stops them as it stops the task learner.

Such a network is a `StepNetwork`: one optimisation step per item of a step-index loader, its
batches drawn by the network itself, alike on every rank, from tensors already on the device
(so the draws, and the picks, are those of the plain loop on one device).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytorch_lightning as pl
import torch
from pytorch_lightning.strategies import DDPStrategy, SingleDeviceStrategy
from torch.utils.data import DataLoader


class StepNetwork(pl.LightningModule):
    """A selector's networks trained by manual optimisation, one update per training step."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.random_state: RandomState | None = None

    def on_train_start(self) -> None:
        """Draw on from the random state the fit started with (DDP's setup reseeds)."""
        if self.random_state is not None:
            self.random_state.restore()

    def configure_model(self) -> None:
        """Under DDP, split the networks across the ranks before DDP wraps them."""
        if self.trainer.world_size > 1:
            self.split_networks(self.global_rank, self.trainer.world_size)

    def split_networks(self, rank: int, world: int) -> None:
        """Replace each network by `al.methods.rank_split.split_across_ranks(network, rank,
        world, …)`: computed on this rank's share of every batch as one process computes it.
        Networks that are not split train the same on every rank."""

    def update(self, loss: torch.Tensor, optimizer) -> None:
        """Zero `optimizer`'s gradients, backpropagate `loss`, step it."""
        optimizer.zero_grad()
        self.manual_backward(loss)
        optimizer.step()


@dataclass(frozen=True)
class RandomState:
    """torch's random generators (the CPU's and every CUDA device's) at one moment."""

    cpu: torch.Tensor
    cuda: list[torch.Tensor]

    @classmethod
    def now(cls) -> RandomState:
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return cls(torch.get_rng_state(), cuda)

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda:
            torch.cuda.set_rng_state_all(self.cuda)


def fit_network(
    network: pl.LightningModule, steps: int, like: pl.Trainer | None, distributed: bool = True
) -> None:
    """Fit `network` for `steps` training steps with `like`'s accelerator, precision and
    strategy (one CPU without it; one device unless `distributed`), then leave it on the device
    it trained on."""
    if steps == 0:
        return
    trainer = network_trainer(like, distributed)
    network.random_state = RandomState.now()
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
        "use_distributed_sampler": False,  # every rank reads every step; networks split batches
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
