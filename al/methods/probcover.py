"""ProbCover (Yehuda et al., NeurIPS 2022, "Active Learning Through a Covering Lens"): greedy
maximum coverage by δ-balls on the task model's penultimate features, δ given or chosen by the
paper's purity heuristic."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from al.errors import ConfigError
from al.methods.cold_start import (
    delta_ball_graph,
    delta_grid,
    kmeans_assign,
    penultimate_features,
    probcover_picks,
    purity_delta,
)
from al.methods.selector import SelectionRequest, Selector, TieBreak
from al.options import PositiveFloat, PositiveInt, Probability


class ProbCoverSelector(Selector):
    """Greedy max coverage over the labeled samples and the candidates (the labeled samples'
    balls cover from the start); scores are the rows each pick newly covered. With `delta`
    null, δ is the largest of `delta_step`, 2·`delta_step`, … ≤ `delta_max` whose ball purity
    w.r.t. k-means pseudo-labels (k = the number of classes, seeded by the stage's selection
    seed) is ≥ `alpha`. Features go to the CPU as float32 NumPy for faiss. Stage metrics:
    `probcover/delta`, `probcover/coverage` (share of rows covered after the picks) and, when
    δ is chosen, `probcover/purity`."""

    reported_metrics = ("probcover/delta", "probcover/coverage")

    def __init__(
        self,
        delta: PositiveFloat | None = None,
        alpha: Probability = 0.95,
        delta_step: PositiveFloat = 0.05,
        delta_max: PositiveFloat = 2.0,
        normalize: bool = True,
        kmeans_iterations: PositiveInt = 100,
        chunk: PositiveInt = 4096,
    ) -> None:
        super().__init__()
        if delta_step > delta_max:
            raise ConfigError(
                f"method.selector.delta_step={delta_step} is larger than "
                f"method.selector.delta_max={delta_max}: no candidate δ; lower delta_step"
            )
        self.delta = delta
        self.alpha = alpha
        self.grid = delta_grid(delta_step, delta_max)
        self.normalize = normalize
        self.kmeans_iterations = kmeans_iterations
        self.chunk = chunk

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        indices, features, labeled = penultimate_features(module, request, self.normalize)
        positions, gains = self.picks(
            features, labeled, request.query, self.ties, request.seed, module.num_classes
        )
        return indices[torch.from_numpy(positions)], torch.from_numpy(gains).float()

    def picks(
        self,
        features: np.ndarray,
        labeled: np.ndarray,
        query: int,
        ties: TieBreak,
        seed: int,
        classes: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """ProbCover's picks and coverage gains with this selector's settings (rows of
        `features`, normalised already when `normalize`; δ by purity over `classes`
        pseudo-labels unless given); also the initial pool's (al.initial)."""
        delta = self.delta
        if delta is None:
            delta = self.purest_delta(features, classes, seed)
        graph = delta_ball_graph(features, delta, self.chunk)
        positions, gains, covered = probcover_picks(graph, labeled, query, ties)
        self.metrics["probcover/delta"] = float(delta)
        self.metrics["probcover/coverage"] = float(covered.mean())
        return positions, gains

    def purest_delta(self, features: np.ndarray, classes: int, seed: int) -> float:
        """The purity heuristic's δ, its purity kept as a stage metric."""
        labels = kmeans_assign(features, min(classes, len(features)), seed, self.kmeans_iterations)
        delta, purity = purity_delta(features, labels, self.alpha, self.grid)
        self.metrics["probcover/purity"] = purity
        return delta
