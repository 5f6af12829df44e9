"""FixMatch's weak (flip-and-shift) and strong (RandAugment, then Cutout) augmentations of
unlabeled pixel batches (Sohn et al. 2020, §2.3 and Appendix, Table 12): batched on the batch's
device, one draw per sample, reproducible from a `torch.Generator` on that device."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from al.options import NonNegativeInt, Probability

# RandAugment's operations with the range each one's parameter is drawn from, uniformly and
# per sample (FixMatch, Appendix Table 12). Brightness, Color, Contrast, Sharpness: the
# enhancement factor (0: black, grey, mean or blurred image; 1: the image); Posterize: bits
# kept (an integer); Rotate: degrees; ShearX/Y: rate; Solarize: the threshold on [0, 1]
# pixels; TranslateX/Y: the fraction of the image side. The reference code draws instead an
# integer level 1-9 per op and maps it to other ranges (third_party/auto_augment/
# augmentations.py: enhancement 0.1-1.9, Posterize 4-1 bits, Translate 1-9 px).
OPS: dict[str, tuple[float, float]] = {
    "AutoContrast": (0.0, 0.0),
    "Brightness": (0.05, 0.95),
    "Color": (0.05, 0.95),
    "Contrast": (0.05, 0.95),
    "Equalize": (0.0, 0.0),
    "Identity": (0.0, 0.0),
    "Posterize": (4.0, 8.0),
    "Rotate": (-30.0, 30.0),
    "Sharpness": (0.05, 0.95),
    "ShearX": (-0.3, 0.3),
    "ShearY": (-0.3, 0.3),
    "Solarize": (0.0, 1.0),
    "TranslateX": (-0.3, 0.3),
    "TranslateY": (-0.3, 0.3),
}
NAMES = tuple(OPS)
# What Cutout paints and geometric ops bring in from outside the image: the reference code's
# grey (0 in its [-1, 1] pixels; augmentations.py, `cutout_numpy` and `pil_unwrap`).
GREY = 0.5


class StrongDraw(NamedTuple):
    """The random choices of one strong augmentation of a batch of B images: `ops[k, b]` the
    index in `NAMES` of sample b's k-th operation, `values[k, b]` its parameter in Table 12's
    units, and `cutout[b]` the side, top row and left column of its grey square, in pixels
    (the square may reach past the border, where it is cut)."""

    ops: torch.Tensor
    values: torch.Tensor
    cutout: torch.Tensor


@dataclass
class StrongAugment:
    """RandAugment as FixMatch runs it: each sample applies `num_ops` operations drawn
    uniformly from `OPS` (repeats allowed), each with its own parameter drawn uniformly from
    its range, then Cutout: a grey square of side L · min(H, W) at a uniform random centre."""

    num_ops: NonNegativeInt = 2
    # L's upper end: 0.5 (Table 12: Cutout L ∈ [0, 0.5]).
    cutout: Probability = 0.5
    # uniform: L ~ U[0, cutout) (Table 12, and TorchSSL/USB, which FlexMatch's authors run);
    # fixed: L = cutout (the reference code: 16 px of 32, libml/augment.py:222 → cutout_numpy).
    cutout_side: Literal["uniform", "fixed"] = "uniform"

    def __call__(self, pixels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The strong view of pixel images (B, C, H, W) in [0, 1], C = 1 or 3."""
        return self.apply(pixels, self.draw(pixels, generator))

    def draw(self, pixels: torch.Tensor, generator: torch.Generator) -> StrongDraw:
        """Every sample's operations, parameters and Cutout square, drawn from `generator`."""
        batch, _, height, width = pixels.shape
        device = pixels.device
        shape = (self.num_ops, batch)
        ops = torch.randint(len(NAMES), shape, generator=generator, device=device)
        share = torch.rand(shape, generator=generator, device=device)
        low, high = torch.tensor(list(OPS.values()), device=device)[ops].unbind(-1)
        values = low + (high - low) * share
        bits = (low + (high - low + 1) * share).floor().clamp(max=high)  # uniform on 4 … 8
        values = torch.where(ops == NAMES.index("Posterize"), bits, values)
        scale = torch.rand(batch, generator=generator, device=device)
        if self.cutout_side == "fixed":
            scale = torch.ones_like(scale)
        side = (self.cutout * scale * min(height, width)).long()
        top = torch.randint(height, (batch,), generator=generator, device=device) - side // 2
        left = torch.randint(width, (batch,), generator=generator, device=device) - side // 2
        return StrongDraw(ops, values, torch.stack([side, top, left], dim=1))

    def apply(self, pixels: torch.Tensor, draw: StrongDraw) -> torch.Tensor:
        """`pixels` augmented as `draw` says: the operations in order, then Cutout."""
        for ops, values in zip(draw.ops, draw.values, strict=True):
            pixels = apply_op(pixels, ops, values)
        return cutout(pixels, *draw.cutout.unbind(dim=1))


def apply_op(pixels: torch.Tensor, ops: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sample b of `pixels` after operation `NAMES[ops[b]]` with parameter `values[b]`: each
    operation runs once, batched over the samples that drew it (one device-to-host copy of
    the 14 counts)."""
    counts = torch.bincount(ops, minlength=len(NAMES)).tolist()
    chosen_by_op = ops.argsort(stable=True).split(counts)
    out = pixels.clone()
    values = values.to(pixels.dtype)
    for operation, chosen in zip(OPERATIONS.values(), chosen_by_op, strict=True):
        if len(chosen):
            out[chosen] = operation(pixels[chosen], values[chosen])
    return out


def _factor(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1)


def _blend(pixels: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ImageEnhance: factor · image + (1 − factor) · degenerate, clipped to [0, 1]."""
    return (pixels * _factor(factor) + other * (1 - _factor(factor))).clamp(0, 1)


def _greyscale(pixels: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma (PIL's "L"), (B, 1, H, W); a one-channel image is its own."""
    if pixels.shape[1] == 1:
        return pixels
    red, green, blue = pixels.unbind(dim=1)
    return (0.2989 * red + 0.587 * green + 0.114 * blue).unsqueeze(1)


def _colour(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Saturation: blend with the greyscale image (one channel: unchanged, as PIL)."""
    return pixels if pixels.shape[1] == 1 else _blend(pixels, _greyscale(pixels), factor)


def _contrast(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the mean of the greyscale image."""
    return _blend(pixels, _greyscale(pixels).mean(dim=(1, 2, 3), keepdim=True), factor)


def _posterize(pixels: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep `bits` bits of each 8-bit value: ⌊x · 2^bits⌋ / 2^bits."""
    levels = _factor(2**bits)
    return (pixels * levels).floor().clamp(max=levels - 1) / levels


def _sharpen(pixels: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's Sharpness: blend with the image smoothed by [[1,1,1],[1,5,1],[1,1,1]] / 13, the
    border pixels kept."""
    if min(pixels.shape[-2:]) <= 2:
        return pixels
    rows = pixels[..., :-2, :] + pixels[..., 1:-1, :] + pixels[..., 2:, :]
    box = rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]
    inner = pixels[..., 1:-1, 1:-1]
    smooth = (box + 4 * inner) / 13
    out = pixels.clone()
    out[..., 1:-1, 1:-1] = inner + (1 - _factor(factor)) * (smooth - inner)
    return out.clamp(0, 1)


def _solarize(pixels: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert the values at or above the threshold."""
    return torch.where(pixels >= _factor(threshold), 1 - pixels, pixels)


def _rotate(pixels: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Anticlockwise about the centre."""
    angle = torch.deg2rad(degrees)
    cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
    return _warp(pixels, [cos, -sin, zero, sin, cos, zero])


def _shear_x(pixels: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """PIL's (1, rate, 0, 0, 1, 0): about the top-left corner."""
    one, zero = torch.ones_like(rate), torch.zeros_like(rate)
    return _warp(pixels, [one, rate, rate * pixels.shape[-2] / 2, zero, one, zero])


def _shear_y(pixels: torch.Tensor, rate: torch.Tensor) -> torch.Tensor:
    """PIL's (1, 0, 0, rate, 1, 0): about the top-left corner."""
    one, zero = torch.ones_like(rate), torch.zeros_like(rate)
    return _warp(pixels, [one, zero, zero, rate, one, rate * pixels.shape[-1] / 2])


def _translate_x(pixels: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """Right by `share` of the width, in whole pixels."""
    one, zero = torch.ones_like(share), torch.zeros_like(share)
    return _warp(pixels, [one, zero, -(share * pixels.shape[-1]).round(), zero, one, zero])


def _translate_y(pixels: torch.Tensor, share: torch.Tensor) -> torch.Tensor:
    """Down by `share` of the height, in whole pixels."""
    one, zero = torch.ones_like(share), torch.zeros_like(share)
    return _warp(pixels, [one, zero, zero, zero, one, -(share * pixels.shape[-2]).round()])


def _warp(pixels: torch.Tensor, entries: list[torch.Tensor]) -> torch.Tensor:
    """Each sample under its own map (B, 2, 3) from output pixel centres to input points, in
    pixels from the image centre (torchvision's inverse affine matrices), nearest neighbour
    (PIL's default), grey outside. The grid is built as torchvision's `_affine_grid` builds
    it, so that nearest-neighbour picks agree."""
    batch, _, height, width = pixels.shape
    dtype, device = pixels.dtype, pixels.device
    matrix = torch.stack(entries, dim=1).view(batch, 2, 3)
    xs = torch.linspace((1 - width) / 2, (width - 1) / 2, width, dtype=dtype, device=device)
    ys = torch.linspace((1 - height) / 2, (height - 1) / 2, height, dtype=dtype, device=device)
    ys, xs = torch.meshgrid(ys, xs, indexing="ij")
    base = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1).view(1, height * width, 3)
    half = torch.tensor([width / 2, height / 2], dtype=dtype, device=device)
    grid = base.expand(batch, -1, -1).bmm(matrix.transpose(1, 2) / half)
    grid = grid.view(batch, height, width, 2)
    return F.grid_sample(pixels - GREY, grid, mode="nearest", align_corners=False) + GREY


OPERATIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "AutoContrast": lambda pixels, _: TF.autocontrast(pixels),
    "Brightness": lambda pixels, factor: _blend(pixels, torch.zeros_like(pixels), factor),
    "Color": _colour,
    "Contrast": _contrast,
    "Equalize": lambda pixels, _: TF.equalize(pixels),
    "Identity": lambda pixels, _: pixels,
    "Posterize": _posterize,
    "Rotate": _rotate,
    "Sharpness": _sharpen,
    "ShearX": _shear_x,
    "ShearY": _shear_y,
    "Solarize": _solarize,
    "TranslateX": _translate_x,
    "TranslateY": _translate_y,
}


def cutout(
    pixels: torch.Tensor, side: torch.Tensor, top: torch.Tensor, left: torch.Tensor
) -> torch.Tensor:
    """Paint sample b's square of `side[b]` pixels from row `top[b]`, column `left[b]` grey,
    cut at the border (DeVries & Taylor 2017; FixMatch, Table 12)."""
    height, width = pixels.shape[-2:]
    rows = torch.arange(height, device=pixels.device)
    columns = torch.arange(width, device=pixels.device)
    in_rows = (rows >= top[:, None]) & (rows < (top + side)[:, None])
    in_columns = (columns >= left[:, None]) & (columns < (left + side)[:, None])
    square = in_rows[:, None, :, None] & in_columns[:, None, None, :]
    return torch.where(square, torch.full_like(pixels, GREY), pixels)


def weak_augment(
    pixels: torch.Tensor,
    generator: torch.Generator,
    translate: float = 0.125,
    flip: float = 0.5,
) -> torch.Tensor:
    """FixMatch's weak view ("flip-and-shift", §2.3): each sample flipped horizontally with
    probability `flip`, then shifted by whole pixels drawn uniformly from [−p, p] in y and x,
    p = round(`translate` · side), the image reflected at its border (the reference code pads
    by p with reflection and crops at random: libml/augment.py:69-71, p = 4 of 32)."""
    batch, channels, height, width = pixels.shape
    device = pixels.device
    pad_y, pad_x = math.floor(translate * height + 0.5), math.floor(translate * width + 0.5)
    flips = torch.rand(batch, generator=generator, device=device) < flip
    shift_y = torch.randint(-pad_y, pad_y + 1, (batch,), generator=generator, device=device)
    shift_x = torch.randint(-pad_x, pad_x + 1, (batch,), generator=generator, device=device)
    pixels = torch.where(flips.view(-1, 1, 1, 1), pixels.flip(-1), pixels)
    padded = F.pad(pixels, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    rows = torch.arange(height, device=device) - shift_y[:, None] + pad_y
    columns = torch.arange(width, device=device) - shift_x[:, None] + pad_x
    rows = rows.view(batch, 1, height, 1).expand(-1, channels, -1, padded.shape[-1])
    shifted = padded.gather(2, rows)
    columns = columns.view(batch, 1, 1, width).expand(-1, channels, height, -1)
    return shifted.gather(3, columns)
