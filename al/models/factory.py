"""Fresh backbones of the run's model config, for modules that need more than one."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from al.errors import build
from al.models.backbone import Backbone


class BackboneFactory:
    """`factory(seed)`: a new backbone from `model` (the run's `model` config, passed unbuilt:
    `_recursive_: false`), its initialisation drawn from `seed` alone; the global random
    stream is left as it was."""

    def __init__(self, model: DictConfig) -> None:
        self.model = model

    def __call__(self, seed: int) -> Backbone:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build(self.model)
