"""torchvision's DeepLabV3-ResNet50 and FCN-ResNet50, DRN-D-22's stand-ins (more-methods.md
§7.3): dilated ResNet-50 at output stride 8, never with downloaded weights."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.segmentation import deeplabv3_resnet50, fcn_resnet50

from al.models.backbone import SegmentationBackbone, image_shape
from al.models.drn import load_weights


class TorchvisionSegmentation(SegmentationBackbone):
    """A torchvision segmentation model built with `weights=None, weights_backbone=None,
    aux_loss=False`, split before its head's final 1×1 conv: `embed` runs the ResNet-50
    `backbone` (conv1 replaced for inputs of other than 3 channels) and the first `head_end`
    modules of the head (`head`); `classifier` is that 1×1 conv as a Linear, with its initial
    weights. stages = ResNet layer1…layer4's outputs (256, 512, 1024, 2048 channels; strides
    4, 8, 8, 8). `weights`: None, or the path of a local checkpoint of the same torchvision
    model (see `torchvision_key`)."""

    def __init__(
        self,
        net: nn.Module,
        channels: int,
        head_end: int,
        dropout: float,
        weights: str | None,
    ) -> None:
        super().__init__(dropout)
        if channels != 3:
            conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            # the same initialisation torchvision gives every other ResNet convolution
            nn.init.kaiming_normal_(conv1.weight, mode="fan_out", nonlinearity="relu")
            net.backbone.conv1 = conv1
        self.backbone = net.backbone
        self.head = nn.Sequential(*list(net.classifier)[:head_end])
        self.classifier = linear_like(net.classifier[-1])
        self.stage_channels = [256, 512, 1024, 2048]
        if weights is not None:
            load_weights(self, weights, torchvision_key)

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = []
        for name, module in self.backbone.items():
            x = module(x)
            if name.startswith("layer"):
                stages.append(x)
        return self.head(x), stages


class DeepLabV3ResNet50(TorchvisionSegmentation):
    """torchvision's `deeplabv3_resnet50`; `embed` ends after DeepLabHead's 3×3 conv 256 → BN
    → ReLU (its ASPP keeps torchvision's own Dropout(0.5)), `classifier` = Linear(256, classes).
    ASPP's image pooling has a BatchNorm on a 1×1 map: training needs batches of 2 or more."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        dropout: float = 0.0,
        weights: str | None = None,
    ) -> None:
        channels = image_shape(input_shape, "deeplabv3_resnet50")[0]
        net = deeplabv3_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
        )
        super().__init__(net, channels, 4, dropout, weights)


class FcnResNet50(TorchvisionSegmentation):
    """torchvision's `fcn_resnet50`; `embed` ends after FCNHead's 3×3 conv 512 → BN → ReLU,
    its Dropout(0.1) is the `dropout` slot (torchvision's rate by default), `classifier` =
    Linear(512, classes)."""

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        dropout: float = 0.1,
        weights: str | None = None,
    ) -> None:
        channels = image_shape(input_shape, "fcn_resnet50")[0]
        net = fcn_resnet50(
            weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False
        )
        super().__init__(net, channels, 3, dropout, weights)


def linear_like(conv: nn.Conv2d) -> nn.Linear:
    """A Linear holding the 1×1 `conv`'s weights: the same map on every pixel."""
    linear = nn.Linear(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        linear.weight.copy_(conv.weight.flatten(1))
        linear.bias.copy_(conv.bias)
    return linear


def torchvision_key(key: str) -> str | None:
    """Our name for a key of a torchvision checkpoint (None: not loaded): `backbone.*` as
    ours, the head's final conv `classifier.4.*` our classifier, its other `classifier.i.*`
    our `head.i.*`; `aux_classifier.*` (torchvision's pretrained files have one) dropped."""
    head, _, rest = key.partition(".")
    if head == "aux_classifier":
        return None
    if head == "classifier":
        index, _, inner = rest.partition(".")
        return f"classifier.{inner}" if index == "4" else f"head.{rest}"
    return key
