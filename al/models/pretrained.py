"""What the timm and torchvision backbones share: the library's network `net` without its
classifier, this Backbone's own `classifier`, a frozen trunk, a local checkpoint, and a check
that the dataset's images fit through."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from timm.models import adapt_input_conv
from torch import nn

from al.errors import ConfigError
from al.models.backbone import Backbone
from al.models.drn import read_state

Freeze = Literal["none", "backbone"]
FREEZES = typing.get_args(Freeze)
SHOWN = 3  # bad keys named in a checkpoint's error


class PretrainedBackbone(Backbone):
    """A library's network `net` (its head removed) and `classifier` after the `dropout` slot.

    `freeze="backbone"` trains the classifier alone: `net`'s parameters do not require grad
    and `net` stays in eval mode (`train` below), so BatchNorm statistics and the library's
    own dropout do not move either. A subclass sets `net`, `library`, `name`, `head_key` (the
    classifier's name in the library's state dict, e.g. `fc`) and `first_conv` (the input
    convolution's, None if unknown), then calls `finish`.
    """

    net: nn.Module
    library: str
    name: str
    head_key: str
    first_conv: str | None

    def __init__(self, dropout: float, freeze: str) -> None:
        super().__init__(dropout)
        if freeze not in FREEZES:
            raise ConfigError(
                f"model.freeze={freeze!r} must be one of {', '.join(FREEZES)}: "
                "e.g. model.freeze=backbone (train the classifier alone)"
            )
        self.freeze = freeze

    def finish(
        self, input_shape: Sequence[int], num_classes: int, head: nn.Module, weights: str | None
    ) -> None:
        """Probe the input shape (feature width, stage channels); the library's `head` becomes
        `classifier` when it is a Linear of that width and class count (keeping the library's
        initialisation), else a new Linear; then load `weights` and freeze."""
        width, self.stage_channels = self.probe(input_shape)
        fits = isinstance(head, nn.Linear) and head.weight.shape == (num_classes, width)
        self.classifier = head if fits else nn.Linear(width, num_classes)
        if weights is not None:
            load_checkpoint(self, weights, input_shape)
        if self.freeze == "backbone":
            self.net.requires_grad_(False)
            self.net.eval()

    def train(self, mode: bool = True) -> PretrainedBackbone:
        """Train mode for the classifier and dropout slot; a frozen `net` stays in eval mode."""
        super().train(mode)
        if self.freeze == "backbone":
            self.net.eval()
        return self

    def probe(self, input_shape: Sequence[int]) -> tuple[int, list[int]]:
        """The feature width and stage channel counts for one zero image of `input_shape` (eval
        mode, no grad); an image the network's downsampling cannot take is a ConfigError."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                features, stages = self.embed(torch.zeros(1, *input_shape))
        except (RuntimeError, ValueError, AssertionError) as error:
            raise ConfigError(
                f"model={self.library} model.name={self.name} cannot take input_shape="
                f"{list(input_shape)}: {first_line(error)}. Choose a model whose downsampling "
                "fits images this small (e.g. model.name=resnet18) or larger images"
            ) from None
        finally:
            self.train(was_training)
        return features.shape[1], [stage.shape[1] for stage in stages]

    def our_key(self, key: str) -> str:
        """This backbone's name for a key of the library's state dict: the head's under
        `classifier.`, everything else under `net.`."""
        if key.startswith(f"{self.head_key}."):
            return "classifier." + key.removeprefix(f"{self.head_key}.")
        return f"net.{key}"


def load_checkpoint(model: PretrainedBackbone, path: str, input_shape: Sequence[int]) -> None:
    """Load the state dict in file `path` (the file itself or its `state_dict` entry) into
    `model`. Its keys are either this backbone's (`net.*`, `classifier.*`: a state dict of
    this class) or the library model's (`conv1.weight`, `fc.weight`, …, optionally behind
    DataParallel's `module.`). Classifier keys of another class count are ignored (the
    classifier keeps its initialisation); an RGB input convolution is adapted to the dataset's
    channel count as timm does (`adapt_input_conv`); BatchNorm's `num_batches_tracked` may be
    absent. Any other unexpected, missing or mis-shaped key is one ConfigError naming the
    file and the first such keys."""
    if not Path(path).is_file():
        raise ConfigError(
            f"model.weights={path}: no such file; give the path of a local checkpoint of "
            f"{model.library}'s {model.name} (or of this backbone), or model.weights=null"
        )
    state = read_state(path)
    ours = all(key.startswith(("net.", "classifier.")) for key in state)
    own = model.state_dict()
    loaded, unexpected, mismatched = {}, [], []
    for key, value in state.items():
        name = key if ours else model.our_key(key.removeprefix("module."))
        if name not in own:
            unexpected.append(key)
            continue
        if name == f"net.{model.first_conv}.weight":
            value = adapted(value, own[name].shape[1])
        if value.shape == own[name].shape:
            loaded[name] = value
        elif not name.startswith("classifier."):
            mismatched.append(f"{key} {list(value.shape)} (model {list(own[name].shape)})")
    missing = [k for k in own if k not in loaded and not optional_key(k)]
    problems = [
        f"{label} {', '.join(keys[:SHOWN])}{' …' if len(keys) > SHOWN else ''}"
        for label, keys in (
            ("unexpected keys", unexpected),
            ("missing keys", missing),
            ("shape mismatch", mismatched),
        )
        if keys
    ]
    if problems:
        raise ConfigError(
            f"model.weights={path} does not fit {model.library}'s {model.name} on input_shape="
            f"{list(input_shape)}: {'; '.join(problems)}; give a checkpoint of the same "
            f"model.name (a state dict of the {model.library} model, or of this backbone: "
            "net.*, classifier.*), or model.weights=null"
        )
    model.load_state_dict(loaded, strict=False)


def adapted(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """An input conv's `weight` for `channels` input channels, by timm's `adapt_input_conv`
    (one channel: the sum over the checkpoint's; C: its channels repeated, scaled by 3/C);
    unchanged where it already fits or cannot be adapted (then a shape mismatch)."""
    if weight.ndim != 4 or weight.shape[1] == channels:
        return weight
    try:
        return adapt_input_conv(channels, weight)
    except NotImplementedError:
        return weight


def optional_key(name: str) -> bool:
    return name.startswith("classifier.") or name.endswith("num_batches_tracked")


def check_name(library: str, name: str, names: Sequence[str]) -> None:
    """A model `name` the library does not have: one line with the closest names."""
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" (closest: {', '.join(close)})" if close else ""
        raise ConfigError(
            f"model.name={name!r} is not a {library} classification model{hint}: "
            "e.g. model.name=resnet18"
        )


def check_source(pretrained: bool, weights: str | None) -> None:
    """Downloaded and local weights together: refused (the download would be overwritten)."""
    if pretrained and weights is not None:
        raise ConfigError(
            f"model.pretrained=true and model.weights={weights} both give weights: choose one "
            "(model.pretrained=false to load the file)"
        )


def download_error(library: str, name: str, error: Exception) -> ConfigError:
    return ConfigError(
        f"model.pretrained=true: cannot get {library}'s weights for {name}: "
        f"{first_line(error)}. Without "
        "internet, copy a checkpoint here and use model.weights=PATH model.pretrained=false"
    )


def first_line(error: Exception) -> str:
    """An error's message in one line, without a final full stop."""
    text = str(error).strip().splitlines()
    return text[0].rstrip(".") if text else type(error).__name__
