"""Two augmented views of each pool input for self-supervised objectives (SimCLR's recipe,
Chen et al. 2020 §3 and Appendix A: random resized crop, flip, colour jitter, greyscale)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from al.data.base import PixelStats, UnlabeledView


@dataclass(frozen=True)
class Augmentation:
    """The view distribution: crops covering `crop_scale` of the image, a horizontal flip with
    probability `flip`, colour jitter of strength `jitter` (SimCLR's s: brightness, contrast
    and saturation 0.8·s, hue 0.2·s; greyscale images: brightness and contrast only) applied
    with probability `jitter_p`, and greyscale with probability `greyscale_p` (colour only)."""

    crop_scale: Sequence[float] = (0.2, 1.0)
    flip: float = 0.5
    jitter: float = 0.5
    jitter_p: float = 0.8
    greyscale_p: float = 0.2

    def transform(self, size: Sequence[int], channels: int) -> Callable:
        """The per-sample transform of pixel images (C, H, W) in [0, 1]."""
        s = self.jitter
        colour = channels == 3
        jitter = v2.ColorJitter(
            0.8 * s, 0.8 * s, 0.8 * s if colour else 0, 0.2 * s if colour else 0
        )
        steps = [
            v2.RandomResizedCrop(tuple(size), scale=tuple(self.crop_scale), antialias=True),
            v2.RandomHorizontalFlip(self.flip),
            v2.RandomApply([jitter], p=self.jitter_p),
        ]
        if colour:
            steps.append(v2.RandomGrayscale(self.greyscale_p))
        return v2.Compose(steps)


class TwoViews(Dataset):
    """`(view_1, view_2)` of each input of an unlabeled pool view: augmented as pixels, then
    normalised back to the task learner's inputs. It holds no label. Item `epoch · n + i`
    is input i's views in that epoch, drawn from (seed, epoch, i) alone (`EpochSampler`)."""

    def __init__(
        self, inputs: UnlabeledView, stats: PixelStats, augment: Callable, seed: int
    ) -> None:
        self.inputs, self.stats, self.augment, self.seed = inputs, stats, augment, seed

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, position = divmod(item, len(self.inputs))
        x, _ = self.inputs[position]
        pixels = self.stats.to_pixels(x[None])[0].clamp(0, 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hash((self.seed, epoch, position)) % 2**62)
            first, second = self.augment(pixels), self.augment(pixels)
        return self.stats.to_inputs(first[None])[0], self.stats.to_inputs(second[None])[0]
