"""Random sampling: uniform, without replacement, from the candidates (the papers' baseline)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.methods.selector import SelectionRequest, Selector


class RandomSelector(Selector):
    """Draws `query` distinct candidates uniformly; the draw depends on (seed, stage) only."""

    tasks = ("classification", "segmentation")

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(request.seed)
        keys = torch.rand(len(request.candidate_indices), generator=generator)
        return self.ties.top_k(request.candidate_indices, keys, request.query)
