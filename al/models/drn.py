"""DRN-D-22 (Yu, Koltun & Funkhouser, CVPR 2017) as fyu/drn `drn.py` builds it, used as a
per-pixel classifier the way fyu/drn `segment.py`'s DRNSeg does (more-methods.md §7.2)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence

import torch
from torch import nn

from al.errors import ConfigError
from al.models.backbone import SegmentationBackbone, image_shape

CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)  # fyu/drn DRN's default, drn_d_22's widths
LAYERS = (1, 1, 2, 2, 2, 2, 1, 1)  # fyu/drn drn_d_22: convs or BasicBlocks of layer1…layer8


def conv3x3(c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


class BasicBlock(nn.Module):
    """fyu's BasicBlock with both convolutions at `dilation` (its `dilation=(d, d)`, what
    `_make_layer(new_level=False)` gives every block of DRN-D-22) and the residual on; a 1×1
    conv + BN `downsample` when the stride or the width changes."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1, dilation: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(c_in, c_out, stride, dilation)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(c_out, c_out, dilation=dilation)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


def residual_layer(
    c_in: int, c_out: int, blocks: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """fyu's `_make_layer(BasicBlock, …)`: `blocks` BasicBlocks, the first at `stride`."""
    rest = (BasicBlock(c_out, c_out, dilation=dilation) for _ in range(blocks - 1))
    return nn.Sequential(BasicBlock(c_in, c_out, stride, dilation), *rest)


def conv_layers(
    c_in: int, c_out: int, convs: int, stride: int = 1, dilation: int = 1
) -> nn.Sequential:
    """fyu's `_make_conv_layers`: (conv3×3 → BN → ReLU) × `convs`, the first at `stride`, no
    residual."""
    modules: list[nn.Module] = []
    for i in range(convs):
        conv = conv3x3(c_out if i else c_in, c_out, 1 if i else stride, dilation)
        modules += [conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*modules)


class DrnD22Seg(SegmentationBackbone):
    """DRN-D-22's trunk (fyu's `layer0`…`layer8`, so its checkpoints' keys load), output
    stride 8, and DRNSeg's 1×1 conv `seg` as `classifier`; logits are upsampled bilinearly
    (DRNSeg's frozen bilinear ×8 deconvolution, as an interpolation to the input's size).

    `channels`: fyu's 8 widths (layer0 and layer1 share the first, then layer2…layer8); a
    narrower list keeps the structure. stages = the outputs of layer3…layer8
    (`stage_channels` = channels[2:]; strides 4, 8, 8, 8, 8, 8). DRN has no dropout layer of
    its own; `dropout` > 0 puts one before `classifier`. `weights`: None (from scratch) or a
    local fyu/drn checkpoint (see `drn_key`)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = CHANNELS,
        dropout: float = 0.0,
        weights: str | None = None,
    ) -> None:
        super().__init__(dropout)
        c_in = image_shape(input_shape, "drn_d22")[0]
        c = check_channels(channels)
        n = LAYERS
        self.layer0 = nn.Sequential(
            nn.Conv2d(c_in, c[0], 7, padding=3, bias=False),
            nn.BatchNorm2d(c[0]),
            nn.ReLU(inplace=True),
        )
        self.layer1 = conv_layers(c[0], c[0], n[0])
        self.layer2 = conv_layers(c[0], c[1], n[1], stride=2)
        self.layer3 = residual_layer(c[1], c[2], n[2], stride=2)
        self.layer4 = residual_layer(c[2], c[3], n[3], stride=2)
        self.layer5 = residual_layer(c[3], c[4], n[4], dilation=2)
        self.layer6 = residual_layer(c[4], c[5], n[5], dilation=4)
        self.layer7 = conv_layers(c[5], c[6], n[6], dilation=2)
        self.layer8 = conv_layers(c[6], c[7], n[7])
        self.classifier = nn.Linear(c[7], num_classes)
        self.stage_channels = c[2:]
        init_like_fyu(self)
        if weights is not None:
            load_weights(self, weights, drn_key)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.layer2(self.layer1(self.layer0(x)))
        stages = []
        for layer in (self.layer3, self.layer4, self.layer5, self.layer6, self.layer7, self.layer8):
            x = layer(x)
            stages.append(x)
        return x, stages


def check_channels(channels: Sequence[int]) -> list[int]:
    """`channels` as a list of 8 positive widths, or the error."""
    widths = list(channels)
    if len(widths) != 8 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise ConfigError(
            f"model.channels={widths} must be 8 positive widths (layer0/1, layer2…layer8), e.g. "
            f"{list(CHANNELS)} (fyu/drn drn_d_22)"
        )
    return widths


def init_like_fyu(model: DrnD22Seg) -> None:
    """fyu's initialisation: conv weights ~ N(0, 2/(k·k·out)), BN weight 1 and bias 0; the
    classifier as DRNSeg's 1×1 `seg` conv (k = 1), its bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.weight.data.normal_(
                0, math.sqrt(2.0 / (m.kernel_size[0] * m.kernel_size[1] * m.out_channels))
            )
        elif isinstance(m, nn.BatchNorm2d):
            m.weight.data.fill_(1)
            m.bias.data.zero_()
    model.classifier.weight.data.normal_(0, math.sqrt(2.0 / model.classifier.out_features))
    model.classifier.bias.data.zero_()


def drn_key(key: str) -> str | None:
    """Our name for a key of a fyu/drn checkpoint (None: not loaded). ImageNet DRN
    (drn_d_22-4bd2f8ea.pth): `layerN.…` as ours, `fc.*` (the ImageNet classifier) dropped.
    DRNSeg (drn_d_22_cityscapes.pth): `base.N.…` (its base is Sequential(layer0…layer8)) or
    `base.layerN.…`, `seg.*` the classifier, `up.*` (the fixed bilinear deconvolution)
    dropped."""
    head, _, rest = key.partition(".")
    if head in ("fc", "up"):
        return None
    if head == "seg":
        return f"classifier.{rest}"
    if head == "base":
        index, _, inner = rest.partition(".")
        return f"layer{index}.{inner}" if index.isdigit() else rest
    return key


def load_weights(
    model: SegmentationBackbone, path: str, rename: Callable[[str], str | None]
) -> None:
    """Load checkpoint `path` into `model`, each key (less DataParallel's `module.`) named by
    `rename`. A 1×1 conv head becomes `classifier` when its class count is the model's, else
    `classifier` keeps its initialisation; any other key must match the model's by name and
    shape (BN's `num_batches_tracked` may be absent: older checkpoints lack it)."""
    own = model.state_dict()
    classes = model.classifier.out_features
    state = {}
    for key, value in read_state(path).items():
        name = rename(key.removeprefix("module."))
        if name is None or (name.startswith("classifier.") and value.shape[:1] != (classes,)):
            continue
        if name == "classifier.weight" and value.shape[2:] == (1, 1):
            value = value.flatten(1)
        if name not in own:
            raise ConfigError(f"model.weights={path}: unexpected key {key!r} (model: {name!r})")
        if value.shape != own[name].shape:
            raise ConfigError(
                f"model.weights={path}: {key!r} has shape {list(value.shape)}, the model's "
                f"{name!r} {list(own[name].shape)} (another architecture, width or input "
                "channel count)"
            )
        state[name] = value
    missing = [k for k in own if k not in state and not optional_key(k)]
    if missing:
        raise ConfigError(f"model.weights={path}: missing key for the model's {missing[0]!r}")
    model.load_state_dict(state, strict=False)


def optional_key(name: str) -> bool:
    return name.startswith("classifier.") or name.endswith("num_batches_tracked")


def read_state(path: str) -> dict[str, torch.Tensor]:
    """The state dict in checkpoint `path`: the file itself or its `state_dict` entry."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, RuntimeError, pickle.UnpicklingError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"model.weights={path} cannot be read: {reason}") from None
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(
            f"model.weights={path} holds no state dict (a dict of tensors, or one under "
            "'state_dict')"
        )
    return state
