"""Golden test: DRN-D-22's trunk features and DRNSeg's logits against fyu/drn
(`segment.DRNSeg('drn_d_22')`; fixture made by make_drn.py) with the same seeded state dict
loaded through the project's fyu-checkpoint loader, in float64 and eval mode."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import al.models.drn
from al.models.drn import DrnD22Seg

FIXTURE = json.loads(Path(__file__).with_name("drn.json").read_text())
ATOL = 1e-5


def draw_state(spec: list[dict], seed: int) -> dict[str, torch.Tensor]:
    """The fixture's weights: each key's standard normals (float32, drawn in the listed order
    from one seeded generator) times its scale plus its offset."""
    rng = np.random.default_rng(seed)
    state = {}
    for entry in spec:
        normal = rng.standard_normal(math.prod(entry["shape"]), dtype=np.float32)
        values = normal * np.float32(entry["scale"]) + np.float32(entry["offset"])
        state[entry["key"]] = torch.from_numpy(values.reshape(entry["shape"]))
    return state


@pytest.fixture(scope="module")
def outputs():
    """Ours on the fixture's input: the stages layer3…layer8, stride-8 and upsampled logits."""
    weights = FIXTURE["weights"]
    state = draw_state(weights["draws"], weights["seed"])
    patch = pytest.MonkeyPatch()
    patch.setattr(al.models.drn, "read_state", lambda path: state)  # no 64 MB file
    try:
        shape = FIXTURE["input"]["shape"]
        model = DrnD22Seg(shape[1:], FIXTURE["classes"], weights="drn_d_22_seg.pth")
    finally:
        patch.undo()
    model = model.double().eval()
    x = torch.from_numpy(np.random.default_rng(FIXTURE["input"]["seed"]).standard_normal(shape))
    with torch.no_grad():
        features, stages = model.embed(x)
        coarse = model.classifier(features.movedim(1, -1)).movedim(-1, 1)
        logits = model(x).logits
    return {"stages": stages, "features": features, "coarse": coarse, "logits": logits}


def close(actual: torch.Tensor, expected) -> None:
    expected = torch.tensor(expected, dtype=torch.float64)
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=0)


def test_stages_match_drn_d_22(outputs):
    """layer3…layer8: shape, sum, sum of squares, channel means and a slice of each."""
    assert len(outputs["stages"]) == len(FIXTURE["stages"])
    for stage, expected in zip(outputs["stages"], FIXTURE["stages"], strict=True):
        assert list(stage.shape) == expected["shape"]
        assert stage.sum().item() == pytest.approx(expected["sum"], abs=ATOL)
        assert stage.square().sum().item() == pytest.approx(expected["sum_of_squares"], abs=ATOL)
        close(stage[:, :8].mean(dim=(0, 2, 3)), expected["channel_means"])
        close(stage[0, :4, :2, :2], expected["slice"])
    close(outputs["features"].mean(dim=(0, 2, 3)), FIXTURE["feature_channel_means"])


def test_segmentation_head_matches_drnseg(outputs):
    """DRNSeg's `seg` at stride 8 exactly; its bilinear ×8 deconvolution in the interior,
    where our interpolation equals it (they differ only near the border, by design)."""
    close(outputs["coarse"], FIXTURE["coarse_logits"])
    interior = FIXTURE["upsampled_interior"]
    rows, cols = slice(*interior["rows"]), slice(*interior["cols"])
    close(outputs["logits"][:, :, rows, cols], interior["values"])
