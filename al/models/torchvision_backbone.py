"""torchvision's classification models as Backbones (`model=torchvision model.name=…`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torchvision
from timm.models import adapt_input_conv
from torch import nn
from torchvision.models import get_model, list_models
from torchvision.models.feature_extraction import create_feature_extractor

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

# Their stages are token sequences or channels-last maps, not the NCHW maps the loss-prediction
# module pools: timm's versions (`model=timm`) lay them out as NCHW.
TRANSFORMERS = ("vit_", "swin_", "maxvit_")
TRUNKS = ("features", "layers", "trunk_output")  # where the stages are, where not at the top
REFERENCE_SIZE = 224  # the image size the stages are chosen at: torchvision's ImageNet size
GLOBAL_POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


class TorchvisionBackbone(PretrainedBackbone):
    """`torchvision.models.get_model(name)` as a Backbone: its final Linear becomes
    `classifier` (after the `dropout` slot; the model's own dropout layers stay), and `net` is
    `create_feature_extractor`'s graph returning that Linear's input (the pooled feature
    Core-set and BADGE read) and the stage outputs.

    Stages (`stage_nodes`): the trunk's children (`features`, `layers` or `trunk_output`
    where the model has one, else its own children) whose output is the last at its spatial
    size for a 224-px image, the size torchvision's models are made for; so ResNet's are
    `relu` (the stem, stride 2), `layer1`…`layer4`, as timm's `feature_info`, whatever the
    dataset's image size.

    Input channels other than 3: the first convolution's RGB weights are summed for one
    channel (repeated and scaled by 3/C for C channels): timm's `adapt_input_conv`, what
    timm does for `in_chans`. The same rule applies to random weights. Small images: the
    adaptive global pool takes any final map (a ResNet takes 8×8 digits, 1×1 from `layer2`
    on); a model whose downsampling cannot (VGG below 32 px, Inception below 75 px) is one
    ConfigError when built. With 1×1 maps, BatchNorm in training needs batches of at least 2.

    `pretrained`: torchvision's DEFAULT weights, downloaded (never in tests; off by default).
    `weights`: a local checkpoint (`load_checkpoint`). `kwargs`: further `get_model`
    arguments. ViT, Swin and MaxViT are refused (use model=timm), and so are models without
    a final Linear (SqueezeNet).
    """

    library = "torchvision"

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
        channels = image_shape(input_shape, "torchvision")[0]
        check_name("torchvision", name, list_models(module=torchvision.models))
        check_source(pretrained, weights)
        if name.startswith(TRANSFORMERS):
            raise ConfigError(
                f"model=torchvision model.name={name}: its stages are not NCHW feature maps; "
                f"use model=timm with timm's {name.split('_')[0]}"
            )
        self.name = name
        net = create(name, pretrained, num_classes, dict(kwargs or {}))
        self.head_key, head = final_linear(net, name)
        net.set_submodule(self.head_key, nn.Identity())
        self.first_conv = adapt_first_conv(net, channels)
        self.stage_names = stage_nodes(net, channels)
        nodes = {**{node: node for node in self.stage_names}, self.head_key: "features"}
        self.net = create_feature_extractor(net, return_nodes=nodes)
        self.finish(input_shape, num_classes, head, weights)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        out = self.net(x)
        return out["features"], [out[node] for node in self.stage_names]


def create(name: str, pretrained: bool, num_classes: int, options: dict[str, Any]) -> nn.Module:
    """`get_model` with torchvision's DEFAULT weights, or random ones for `num_classes`."""
    try:
        if pretrained:
            return get_model(name, weights="DEFAULT", **options)
        return get_model(name, weights=None, num_classes=num_classes, **options)
    except TypeError as error:
        raise ConfigError(f"model.kwargs={options}: {error}") from None
    except OSError as error:
        if pretrained:
            raise download_error("torchvision", name, error) from None
        raise


def final_linear(net: nn.Module, name: str) -> tuple[str, nn.Module]:
    """The path and module of the model's last Linear: its classifier."""
    linears = [(path, m) for path, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError(
            f"model=torchvision model.name={name} has no final Linear classifier; choose "
            "another model (e.g. model.name=resnet18)"
        )
    return linears[-1]


def adapt_first_conv(net: nn.Module, channels: int) -> str:
    """Replace the first convolution by one taking `channels` (timm's `adapt_input_conv` of
    its weights); its path."""
    path, conv = next((p, m) for p, m in net.named_modules() if isinstance(m, nn.Conv2d))
    if channels != conv.in_channels:
        adapted = nn.Conv2d(
            channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
        )
        with torch.no_grad():
            adapted.weight.copy_(adapt_input_conv(channels, conv.weight))
            if conv.bias is not None:
                adapted.bias.copy_(conv.bias)
        net.set_submodule(path, adapted)
    return path


def stage_nodes(net: nn.Module, channels: int) -> list[str]:
    """The paths of the trunk's children whose output is the last NCHW map of its spatial size
    for one zero image of `REFERENCE_SIZE` px (eval mode, no grad); global pools are no
    stage."""
    trunk = next((t for t in TRUNKS if isinstance(getattr(net, t, None), nn.Module)), "")
    parent = net.get_submodule(trunk)
    shapes: dict[str, torch.Size] = {}

    def record(path: str):
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                shapes.setdefault(path, output.shape)

        return hook

    hooks = [
        child.register_forward_hook(record(f"{trunk}.{name}".lstrip(".")))
        for name, child in parent.named_children()
        if not isinstance(child, GLOBAL_POOLS)
    ]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            net(torch.zeros(1, channels, REFERENCE_SIZE, REFERENCE_SIZE))
    finally:
        for hook in hooks:
            hook.remove()
        net.train(was_training)
    nodes, sizes = [], []
    for path, shape in shapes.items():
        if sizes and shape[2:] == sizes[-1]:
            nodes[-1] = path
        else:
            nodes.append(path)
            sizes.append(shape[2:])
    return nodes
