"""FixMatch's weak and strong augmentations (al.semi.augment): known answers against
torchvision's single-image functions, hand-built shifts and squares, and the draws."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from al.semi.augment import (
    GREY,
    NAMES,
    OPERATIONS,
    OPS,
    StrongAugment,
    StrongDraw,
    apply_op,
    cutout,
    weak_augment,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def images(shape: tuple[int, int, int], batch: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand((batch, *shape), generator=torch.Generator().manual_seed(seed))


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def reference(name: str, value: float, image: torch.Tensor) -> torch.Tensor:
    """torchvision's result for one image, with RandAugment's conventions (grey fill)."""
    fill = [GREY] * image.shape[0]
    height, width = image.shape[-2:]
    shear = math.degrees(math.atan(value))
    calls = {
        "AutoContrast": lambda: TF.autocontrast(image),
        "Brightness": lambda: TF.adjust_brightness(image, value),
        "Color": lambda: TF.adjust_saturation(image, value),
        "Contrast": lambda: TF.adjust_contrast(image, value),
        "Equalize": lambda: TF.equalize(image),
        "Identity": lambda: image,
        "Posterize": lambda: TF.posterize(image, int(value)),
        "Rotate": lambda: TF.rotate(image, value, fill=fill),
        "Sharpness": lambda: TF.adjust_sharpness(image, value),
        "ShearX": lambda: TF.affine(
            image, 0.0, [0, 0], 1.0, [shear, 0.0], fill=fill, center=[0, 0]
        ),
        "ShearY": lambda: TF.affine(
            image, 0.0, [0, 0], 1.0, [0.0, shear], fill=fill, center=[0, 0]
        ),
        "Solarize": lambda: TF.solarize(image, value),
        "TranslateX": lambda: TF.affine(
            image, 0.0, [round(value * width), 0], 1.0, [0.0, 0.0], fill=fill
        ),
        "TranslateY": lambda: TF.affine(
            image, 0.0, [0, round(value * height)], 1.0, [0.0, 0.0], fill=fill
        ),
    }
    return calls[name]()


# One parameter per op inside its Table 12 range, away from nearest-neighbour ties.
VALUES = {
    "AutoContrast": 0.0, "Brightness": 0.3, "Color": 0.3, "Contrast": 0.6, "Equalize": 0.0,
    "Identity": 0.0, "Posterize": 5.0, "Rotate": -23.0, "Sharpness": 0.2, "ShearX": 0.27,
    "ShearY": -0.21, "Solarize": 0.4, "TranslateX": 0.25, "TranslateY": -0.25,
}  # fmt: skip


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("name", NAMES)
def test_each_op_matches_torchvision(name: str, shape: tuple[int, int, int]) -> None:
    """Nearest-neighbour picks and enhancement blends agree to float rounding (Color on one
    channel is the identity, as PIL and torchvision make it)."""
    pixels = images(shape, batch=4)
    value = VALUES[name]
    out = apply_op(pixels, torch.full((4,), NAMES.index(name)), torch.full((4,), value))
    expected = torch.stack([reference(name, value, image) for image in pixels])
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)
    assert not torch.equal(out, pixels) or name == "Identity" or (name, shape[0]) == ("Color", 1)


def test_ops_mixed_in_one_batch_match_each_alone() -> None:
    """Sample b of a batch whose samples drew different ops and parameters is what it would
    be with its op applied alone."""
    pixels = images((3, 32, 32), batch=len(NAMES))
    ops = torch.arange(len(NAMES))
    values = torch.tensor([VALUES[name] for name in NAMES])
    out = apply_op(pixels, ops, values)
    for b, name in enumerate(NAMES):
        torch.testing.assert_close(
            out[b], reference(name, VALUES[name], pixels[b]), atol=1e-6, rtol=0
        )


@pytest.mark.parametrize("shape", SHAPES)
def test_views_keep_shape_dtype_and_range(shape: tuple[int, int, int]) -> None:
    pixels = images(shape, batch=64)
    for view in (weak_augment(pixels, generator(1)), StrongAugment()(pixels, generator(1))):
        assert view.shape == pixels.shape and view.dtype == pixels.dtype
        assert view.device == pixels.device
        assert view.min() >= 0 and view.max() <= 1


@pytest.mark.parametrize("augment", [weak_augment, StrongAugment()], ids=["weak", "strong"])
def test_a_seed_fixes_the_view(augment) -> None:
    pixels = images((3, 32, 32), batch=32)
    first, again = augment(pixels, generator(7)), augment(pixels, generator(7))
    other = augment(pixels, generator(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_strong_view_changes_every_image_with_its_own_ops() -> None:
    pixels = images((3, 32, 32), batch=64)
    strong = StrongAugment()
    draw = strong.draw(pixels, generator(3))
    out = strong.apply(pixels, draw)
    assert (out != pixels).flatten(1).any(dim=1).all()
    assert draw.ops.shape == (2, 64)
    assert len(draw.ops.unique()) == len(NAMES)
    pairs = {tuple(pair) for pair in draw.ops.T.tolist()}
    assert len(pairs) > 40  # 64 samples, 196 ordered pairs: not one policy for the batch
    for b in (0, 17, 63):  # each sample alone, with its own draw, gives its batch row
        alone = StrongDraw(
            draw.ops[:, b : b + 1], draw.values[:, b : b + 1], draw.cutout[b : b + 1]
        )
        assert torch.equal(strong.apply(pixels[b : b + 1], alone), out[b : b + 1])


def test_parameters_cover_the_table_ranges() -> None:
    assert tuple(OPERATIONS) == NAMES
    draw = StrongAugment(num_ops=4).draw(torch.zeros(4096, 1, 8, 8), generator(0))
    for index, (name, (low, high)) in enumerate(OPS.items()):
        values = draw.values[draw.ops == index]
        assert len(values) > 900
        if name == "Posterize":
            assert sorted(values.unique().tolist()) == [4, 5, 6, 7, 8]
        elif low < high:
            assert low <= values.min() < low + 0.02 * (high - low)
            assert high - 0.02 * (high - low) < values.max() <= high


def test_cutout_paints_exactly_the_square() -> None:
    pixels = images((3, 8, 8), batch=2) * 0.4  # no pixel is grey before
    out = cutout(pixels, torch.tensor([3, 4]), torch.tensor([2, -1]), torch.tensor([1, 6]))
    expected = pixels.clone()
    expected[0, :, 2:5, 1:4] = GREY
    expected[1, :, 0:3, 6:8] = GREY  # cut at the top and right borders: 3 × 2
    assert torch.equal(out, expected)


@pytest.mark.parametrize("side", ["fixed", "uniform"])
def test_strong_cutout_square_has_the_drawn_area(side: str) -> None:
    """With no operations, sample b differs from its input in exactly its drawn square, cut
    at the border; a fixed side is half the image's."""
    pixels = images((1, 32, 32), batch=256) * 0.4
    strong = StrongAugment(num_ops=0, cutout_side=side)
    draw = strong.draw(pixels, generator(5))
    out = strong.apply(pixels, draw)
    grey = (out == GREY).squeeze(1)
    sides, tops, lefts = draw.cutout.T
    if side == "fixed":
        assert (sides == 16).all()
    else:
        assert sides.min() <= 1 and sides.max() >= 15 and (sides <= 16).all()
    rows, cols = tops[:, None] + torch.arange(33), lefts[:, None] + torch.arange(33)
    height = ((rows >= 0) & (rows < 32) & (torch.arange(33) < sides[:, None])).sum(1)
    width = ((cols >= 0) & (cols < 32) & (torch.arange(33) < sides[:, None])).sum(1)
    assert torch.equal(grey.flatten(1).sum(1), height * width)
    assert torch.equal(out[~grey[:, None]], pixels[~grey[:, None]])


@pytest.mark.parametrize("shape", SHAPES)
def test_weak_flip_alone_and_nothing(shape: tuple[int, int, int]) -> None:
    pixels = images(shape)
    assert torch.equal(weak_augment(pixels, generator(0), translate=0, flip=1), pixels.flip(-1))
    assert torch.equal(weak_augment(pixels, generator(0), translate=0, flip=0), pixels)


@pytest.mark.parametrize(("shape", "pad"), [((1, 8, 8), 1), ((1, 28, 28), 4), ((3, 32, 32), 4)])
def test_weak_shift_moves_a_pixel_by_the_drawn_shift(shape: tuple[int, int, int], pad: int) -> None:
    """A one-hot image comes out one-hot, moved by (dy, dx) ∈ [−p, p]², p = round(H / 8), every
    shift drawn; with the flip, the pixel mirrors first."""
    channels, height, width = shape
    row, col = height // 2, width // 2 - 1
    pixels = torch.zeros(2000, *shape)
    pixels[:, :, row, col] = 1
    for flip, column in ((0.0, col), (1.0, width - 1 - col)):
        out = weak_augment(pixels, generator(2), flip=flip)
        assert torch.equal(out.flatten(1).sum(1), torch.full((2000,), float(channels)))
        where = out[:, 0].flatten(1).argmax(1)
        dy, dx = where // width - row, where % width - column
        assert dy.abs().max() == pad and dx.abs().max() == pad
        assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) == (2 * pad + 1) ** 2
        expected = torch.zeros_like(pixels)
        expected[torch.arange(2000), :, row + dy, column + dx] = 1
        assert torch.equal(out, expected)


def test_weak_shift_reflects_at_the_border() -> None:
    """A column ramp 0 … 7 shifted right by 1 reads 1, 0, 1, …, 6 (reflection without the
    edge, as the reference's reflect padding); left by 1: 1, …, 7, 6."""
    ramp = torch.arange(8.0).expand(8, 8) / 7
    out = weak_augment(ramp.expand(500, 1, 8, 8), generator(4), flip=0.0)
    right = torch.tensor([1, 0, 1, 2, 3, 4, 5, 6]) / 7
    left = torch.tensor([1, 2, 3, 4, 5, 6, 7, 6]) / 7
    profiles = {tuple(p) for p in out[:, 0, 4].tolist()}
    assert profiles == {tuple(right.tolist()), tuple(ramp[0].tolist()), tuple(left.tolist())}
