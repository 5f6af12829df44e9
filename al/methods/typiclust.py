"""TypiClust (Hacohen et al., ICML 2022, "Active Learning on a Budget"): k-means into as many
clusters as labels after the stage, then the most typical candidate of each of the largest
clusters that hold no labeled sample, on the task model's penultimate features."""

from __future__ import annotations

import numpy as np
import pytorch_lightning as pl
import torch

from al.methods.cold_start import Distance, penultimate_features, typiclust_picks
from al.methods.selector import SelectionRequest, Selector, TieBreak
from al.options import PositiveInt


class TypiClustSelector(Selector):
    """`al.methods.cold_start.typiclust_picks` over the labeled samples and the candidates,
    k-means seeded by the stage's selection seed; scores are the picks' typicality. Features
    go to the CPU as float32 NumPy for faiss."""

    def __init__(
        self,
        max_clusters: PositiveInt = 500,
        min_cluster_size: PositiveInt = 6,
        neighbours: PositiveInt = 20,
        distance: Distance = "squared",
        normalize: bool = True,
        kmeans_iterations: PositiveInt = 100,
    ) -> None:
        super().__init__()
        self.max_clusters = max_clusters
        self.min_cluster_size = min_cluster_size
        self.neighbours = neighbours
        self.distance = distance
        self.normalize = normalize
        self.kmeans_iterations = kmeans_iterations

    def select(
        self, module: pl.LightningModule, request: SelectionRequest
    ) -> tuple[torch.Tensor, torch.Tensor]:
        indices, features, labeled = penultimate_features(module, request, self.normalize)
        positions, scores = self.picks(features, labeled, request.query, self.ties, request.seed)
        return indices[torch.from_numpy(positions)], torch.from_numpy(scores).float()

    def picks(
        self, features: np.ndarray, labeled: np.ndarray, query: int, ties: TieBreak, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """`typiclust_picks` with this selector's settings (rows of `features`, normalised
        already when `normalize`); also the initial pool's (al.initial)."""
        return typiclust_picks(
            features,
            labeled,
            query,
            ties,
            seed,
            self.max_clusters,
            self.min_cluster_size,
            self.neighbours,
            self.distance,
            self.kmeans_iterations,
        )
