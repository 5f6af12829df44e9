"""Any timm model as a Backbone (`model=timm model.name=…`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
import torch
from timm.models import get_pretrained_cfg_value

from al.errors import ConfigError
from al.models.backbone import image_shape
from al.models.pretrained import (
    Freeze,
    PretrainedBackbone,
    check_name,
    check_source,
    download_error,
)
from al.options import PositiveInt


class TimmBackbone(PretrainedBackbone):
    """`timm.create_model(name, in_chans=channels, num_classes=classes)`, its classifier moved
    to `classifier` (after the `dropout` slot) and reset in `net`.

    `embed`: `forward_intermediates` gives the stage outputs, NCHW, one per entry of timm's
    `feature_info` (ResNet: the stem's `act1` at stride 2, then `layer1`…`layer4`; ViT: every
    block, tokens laid out on the patch grid), and the final map, which `forward_head(…,
    pre_logits=True)` pools to the feature Core-set and BADGE read. timm builds the input conv
    for `in_chans` (pretrained RGB weights summed for one channel, repeated and scaled for
    others: timm's `adapt_input_conv`). Models of a fixed input size (ViTs) are built for the
    dataset's (`img_size`).

    Small images: timm's adaptive global pooling takes any final map, so a ResNet takes 8×8
    digits (stride-4 stem to 2×2, then 1×1 from `layer2` on: stride-2 convs keep a 1×1 map at
    1×1) and its stages' channels are as declared; a network whose downsampling cannot take the
    images (a ConvNeXt's 2×2 patchify below 32 px, a ViT whose patch size does not divide the
    image: set `kwargs={patch_size: 4}`) is one ConfigError when built. With 1×1 maps,
    BatchNorm in training needs batches of at least 2.

    `pretrained`: timm's default weights, downloaded (never in tests; off by default).
    `weights`: a local checkpoint (`load_checkpoint`). `kwargs`: further `create_model`
    arguments (e.g. `drop_rate`, `patch_size`).
    """

    library = "timm"

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: PositiveInt,
        name: str = "resnet18",
        pretrained: bool = False,
        weights: str | None = None,
        freeze: Freeze = "none",
        dropout: float = 0.0,
        kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(dropout, freeze)
        channels, height, width = image_shape(input_shape, "timm")
        check_name("timm", name.partition(".")[0], timm.list_models())
        check_source(pretrained, weights)
        self.name = name
        options = dict(kwargs or {})
        if get_pretrained_cfg_value(name, "fixed_input_size"):
            options.setdefault("img_size", (height, width))
        net = create(name, pretrained, channels, num_classes, options)
        if not hasattr(net, "forward_intermediates"):
            raise ConfigError(
                f"model.name={name}: timm's {type(net).__name__} has no forward_intermediates "
                "(the stage outputs); choose another timm model"
            )
        classifier = net.pretrained_cfg.get("classifier") or "fc"
        self.head_key = classifier if isinstance(classifier, str) else classifier[0]
        first_conv = net.pretrained_cfg.get("first_conv")
        self.first_conv = first_conv if isinstance(first_conv, str) else None
        head = net.get_classifier()
        net.reset_classifier(0)
        self.net = net
        self.finish(input_shape, num_classes, head, weights)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        final, stages = self.net.forward_intermediates(x)
        return self.net.forward_head(final, pre_logits=True), stages


def create(
    name: str, pretrained: bool, channels: int, num_classes: int, options: dict[str, Any]
) -> torch.nn.Module:
    """`timm.create_model`, its errors as ConfigErrors naming the option to change."""
    try:
        return timm.create_model(
            name, pretrained=pretrained, in_chans=channels, num_classes=num_classes, **options
        )
    except TypeError as error:
        raise ConfigError(f"model.kwargs={options}: {error}") from None
    except (OSError, RuntimeError) as error:
        if pretrained:
            raise download_error("timm", name, error) from None
        raise
