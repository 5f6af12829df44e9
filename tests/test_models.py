"""Backbones expose logits, the penultimate feature and stage outputs of the documented shapes."""

from __future__ import annotations

import pytest
import torch

from al.errors import ConfigError, build
from al.models.backbone import dropout_layers
from al.models.cnn import SmallCNN
from al.models.mlp import MLP
from al.models.resnet import ResNet18
from al.models.vgg import VGG16

from conftest import compose_config


def shapes(model, input_shape, batch=2):
    torch.manual_seed(0)
    out = model(torch.randn(batch, *input_shape))
    return (
        tuple(out.logits.shape),
        tuple(out.features.shape),
        [tuple(s.shape[1:]) for s in out.stages],
    )


def test_resnet18_cifar_stem_on_32px_matches_the_paper_shapes():
    model = ResNet18([3, 32, 32], num_classes=10)
    assert isinstance(model.stem[3], torch.nn.Identity)  # no max-pool
    assert model.stem[0].kernel_size == (3, 3) and model.stem[0].stride == (1, 1)
    assert shapes(model, (3, 32, 32)) == (
        (2, 10),
        (2, 512),
        [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)],
    )


def test_resnet18_imagenet_stem_for_large_images():
    model = ResNet18([3, 96, 96], num_classes=101)
    assert model.stem[0].kernel_size == (7, 7) and model.stem[0].stride == (2, 2)
    assert isinstance(model.stem[3], torch.nn.MaxPool2d)
    assert shapes(model, (3, 96, 96))[2] == [(64, 24, 24), (128, 12, 12), (256, 6, 6), (512, 3, 3)]


def test_resnet18_takes_the_dataset_channel_count():
    model = ResNet18([1, 8, 8], num_classes=10)
    assert shapes(model, (1, 8, 8))[:2] == ((2, 10), (2, 512))
    with pytest.raises(ConfigError, match=r"model\.stem='tiny'"):
        ResNet18([3, 32, 32], num_classes=10, stem="tiny")


def test_vgg16_has_batch_norm_and_five_stages():
    model = VGG16([3, 32, 32], num_classes=10)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert shapes(model, (3, 32, 32)) == (
        (2, 10),
        (2, 512),
        [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2), (512, 1, 1)],
    )
    assert shapes(VGG16([1, 8, 8], 10), (1, 8, 8))[2][-1] == (512, 1, 1)


@pytest.mark.parametrize(
    ("model", "input_shape"),
    [
        (MLP([2], 2), (2,)),
        (SmallCNN([1, 8, 8], 10), (1, 8, 8)),
        (ResNet18([3, 32, 32], 10), (3, 32, 32)),
        (VGG16([3, 32, 32], 10), (3, 32, 32)),
    ],
)
def test_stage_channels_describe_the_stage_outputs(model, input_shape):
    stages = shapes(model, input_shape)[2]
    assert [stage[0] for stage in stages] == model.stage_channels


@pytest.mark.parametrize("model", ["cnn", "mlp", "resnet18", "vgg16", "auto"])
def test_model_dropout_is_the_only_dropout_and_sits_before_the_classifier(model):
    plain = build(compose_config("dataset=digits", f"model={model}").model)
    assert dropout_layers(plain) == []  # no backbone has dropout of its own
    backbone = build(compose_config("dataset=digits", f"model={model}", "model.dropout=0.3").model)
    assert dropout_layers(backbone) == [backbone.dropout] and backbone.dropout.p == 0.3
    x = torch.randn(4, 1, 8, 8)
    torch.manual_seed(0)
    out = backbone(x)
    torch.manual_seed(0)
    assert torch.equal(out.logits, backbone.classifier(backbone.dropout(out.features)))
    assert not torch.equal(out.logits, backbone.classifier(out.features))


@pytest.mark.parametrize("rate", [1.0, -0.1, "half", None])
def test_a_bad_dropout_rate_is_refused(rate):
    with pytest.raises(ConfigError, match=rf"model\.dropout={rate!r} must be a rate in \[0, 1\)"):
        MLP([2], 2, dropout=rate)
