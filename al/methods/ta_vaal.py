"""TA-VAAL (Kim et al. 2021): VAAL conditioned on the ranker of a task learner trained with
the ranking loss (TA-VAAL Eq. 1; the module is the classifier with `pair_loss: ranking`).

Algorithm 1: r is the ranker's output for each sample, computed once without gradient from
the trained task learner in eval mode, except in the first VAE/discriminator iteration,
where r ~ U(0, 1). The decoder gets σ(r); the discriminator gets r (`discriminator_rank:
raw`, the code) or σ(r) (`sigmoid`, the paper's "normalized"). Selection (Algorithm 2):
the lowest D(r, μ) first.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.errors import ConfigError
from al.methods.selector import SelectionRequest, collect
from al.methods.vaal import VaalSelector
from al.options import PositiveInt

DISCRIMINATOR_RANKS = ("raw", "sigmoid")


class TaVaalSelector(VaalSelector):
    rank_conditioned = True

    def __init__(
        self,
        discriminator_rank: str = "raw",
        kl: str = "mean",
        vae_steps: PositiveInt = 1,
        **kwargs,
    ) -> None:
        super().__init__(kl=kl, vae_steps=vae_steps, **kwargs)
        if discriminator_rank not in DISCRIMINATOR_RANKS:
            raise ConfigError(
                f"discriminator_rank={discriminator_rank!r} is not one of {DISCRIMINATOR_RANKS}"
            )
        self.discriminator_rank = discriminator_rank

    def ranks(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        _, labeled = collect(request.labeled, module.predicted_loss, module.device)
        _, candidates = collect(request.candidates, module.predicted_loss, module.device)
        return labeled.float(), candidates.float()

    def iteration_conditions(self, iteration, ranks, labeled_batch, candidate_batch):
        rank_l, rank_u = ranks[0][labeled_batch], ranks[1][candidate_batch]
        if iteration == 0:
            uniform_l, uniform_u = torch.rand_like(rank_l), torch.rand_like(rank_u)
            return (uniform_l, uniform_l), (uniform_u, uniform_u)
        judged = (lambda r: r) if self.discriminator_rank == "raw" else torch.sigmoid
        return (torch.sigmoid(rank_l), judged(rank_l)), (torch.sigmoid(rank_u), judged(rank_u))
