"""Make drn.json: DRN-D-22's features and DRNSeg's logits by fyu/drn, on seeded weights.

Usage: python tests/golden/make_drn.py REPO [OUT]
  REPO: fyu/drn checked out (commit in COMMIT below). Its `segment.py` passes `async=True`
  (Python ≤ 3.6 syntax): on a newer Python, give a copy where it reads `non_blocking=True`
  (sed -i 's/async=True/non_blocking=True/' segment.py); nothing else is changed.

Builds the authors' `segment.DRNSeg("drn_d_22", CLASSES, pretrained=False)`, fills every
parameter and BatchNorm statistic of its state dict (`base.N.…`, `seg.*`; not the fixed
bilinear `up.weight`) with seeded values — `draw_state` below, whose rule the fixture stores
(`weights`: seed, and per key its shape, scale and offset, drawn in that order) so the test
draws the same tensors — and runs it in eval mode, in float64, on a seeded input. Stored:
for each of layer3…layer8 (base.3…base.8) the shape, sum, sum of squares, the first 8
channels' means and a 4×2×2 slice; the last features' 512 channel means; `seg`'s stride-8
logits (DRNSeg.forward's second output); and an interior crop of `up`'s ×8 logits. Not run by
the tests.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

REPOSITORY = "fyu/drn"
COMMIT = "d75db2ee7070426db7a9264ee61cf489f8cf178c"
CLASSES, INPUT_SHAPE, SEED = 3, (2, 3, 48, 48), 22
INTERIOR = (slice(None), slice(None), slice(20, 28), slice(20, 28))  # 20 px from the border


def draw_rule(key: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """(scale, offset) of key's values: convs as fyu's init N(0, 2/(k·k·out)); BN weights and
    running variances 1 ± 0.1, biases and running means ±0.1; the seg bias ±0.1."""
    if len(shape) == 4:
        return math.sqrt(2.0 / (shape[2] * shape[3] * shape[0])), 0.0
    if key.endswith(("running_var", ".weight")):
        return 0.1, 1.0
    return 0.1, 0.0


def draw_state(spec: list[dict], seed: int) -> dict[str, torch.Tensor]:
    """The tensors of `spec` (key, shape, scale, offset), drawn in order, float32."""
    rng = np.random.default_rng(seed)
    state = {}
    for entry in spec:
        normal = rng.standard_normal(math.prod(entry["shape"]), dtype=np.float32)
        values = normal * np.float32(entry["scale"]) + np.float32(entry["offset"])
        state[entry["key"]] = torch.from_numpy(values.reshape(entry["shape"]))
    return state


def summary(stage: torch.Tensor) -> dict:
    return {
        "shape": list(stage.shape),
        "sum": stage.sum().item(),
        "sum_of_squares": stage.square().sum().item(),
        "channel_means": stage[:, :8].mean(dim=(0, 2, 3)).tolist(),
        "slice": stage[0, :4, :2, :2].tolist(),
    }


def main(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    import segment  # fyu/drn

    torch.manual_seed(SEED)
    model = segment.DRNSeg("drn_d_22", CLASSES, pretrained_model=None, pretrained=False)
    spec = []
    for key, value in model.state_dict().items():
        if value.is_floating_point() and not key.startswith("up."):
            scale, offset = draw_rule(key, tuple(value.shape))
            spec.append({"key": key, "shape": list(value.shape), "scale": scale, "offset": offset})
    missing, unexpected = model.load_state_dict(draw_state(spec, SEED), strict=False)
    assert not unexpected and all(
        k.endswith("num_batches_tracked") or k == "up.weight" for k in missing
    )
    model = model.double().eval()
    x = torch.from_numpy(np.random.default_rng(SEED + 1).standard_normal(INPUT_SHAPE))

    with torch.no_grad():
        stages, h = [], x
        for index, layer in enumerate(model.base):
            h = layer(h)
            if index >= 3:
                stages.append(h)
        _, coarse = model(x)  # DRNSeg.forward: (log_softmax(up(seg(base(x)))), seg(base(x)))
        upsampled = model.up(coarse)
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "segment.py, drn.py",
            "function": "segment.DRNSeg('drn_d_22').base / .seg / .up (drn.drn_d_22)",
            "dtype": "float64, eval mode",
        },
        "made_by": "tests/golden/make_drn.py",
        "classes": CLASSES,
        "weights": {"seed": SEED, "draws": spec},
        "input": {"seed": SEED + 1, "shape": list(INPUT_SHAPE)},
        "stages": [summary(stage) for stage in stages],
        "feature_channel_means": stages[-1].mean(dim=(0, 2, 3)).tolist(),
        "coarse_logits": coarse.tolist(),
        "upsampled_interior": {
            "rows": [20, 28],
            "cols": [20, 28],
            "values": upsampled[INTERIOR].tolist(),
        },
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("drn.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
