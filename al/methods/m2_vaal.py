"""M2-VAAL (the M2-VAAL slides): label the candidates the discriminator on M2's latent
[μ_z, y′] judges most confidently unlabeled — the lowest D first."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from al.errors import ConfigError
from al.methods.discriminator import DISCRIMINATOR_METRICS, discriminator_metrics
from al.methods.selector import (
    SelectionRequest,
    Selector,
    collect,
)


class M2VaalSelector(Selector):
    """Scores 1 − D([μ_z, y′]) with the discriminator the M2 module trained this stage, and
    reports its loss and accuracy on labeled vs candidates (the slides' argument rests on
    them) as stage metrics; D of every sample is kept for `al.reports.analysis`."""

    reported_metrics = DISCRIMINATOR_METRICS

    def check_module(self, module: pl.LightningModule) -> None:
        """Refuse a task module without M2-VAAL's discriminator."""
        if getattr(module, "discriminator", None) is None:
            raise ConfigError(
                "m2_vaal selects with the M2 module's discriminator, and this module has none: "
                "set method.module.discriminator (as conf/method/m2_vaal.yaml)"
            )

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        labeled_indices, labeled = collect(request.labeled, module.discriminate, module.device)
        candidate_indices, candidates = collect(
            request.candidates, module.discriminate, module.device
        )
        labeled, candidates = labeled.float().cpu(), candidates.float().cpu()
        self.metrics = discriminator_metrics(labeled, candidates)
        self.diagnostics = {
            "labeled_index": labeled_indices.numpy(),
            "labeled_discriminator": labeled.numpy(),
            "candidate_index": candidate_indices.numpy(),
            "candidate_discriminator": candidates.numpy(),
        }
        return self.ties.top_k(candidate_indices, 1.0 - candidates, request.query)
