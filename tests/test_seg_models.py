"""Segmentation task learners: DRN-D-22 as fyu/drn builds it, torchvision's stand-ins."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
import torchvision.models._api
from torch import nn
from torch.testing import assert_close
from torchvision.models.segmentation import deeplabv3_resnet50, fcn_resnet50

from al.errors import ConfigError, build
from al.models.backbone import dropout_layers
from al.models.drn import DrnD22Seg
from al.models.torchvision_seg import DeepLabV3ResNet50, FcnResNet50

from conftest import compose_config

DRN_D_22 = (16, 32, 64, 128, 256, 512, 512, 512)  # fyu/drn drn_d_22's channels
NARROW = (4, 4, 8, 8, 16, 16, 16, 16)  # the same structure, narrow: fast tests
DRN_D_22_TRUNK = 15_880_752  # layer0…layer8 of drn_d_22, summed by hand from §7.2
IMAGENET_FC = 512 * 1000 + 1000  # the ImageNet model's fc, a 1×1 conv 512 → 1000


def fyu_shapes(c: tuple[int, ...], c_in: int = 3) -> dict[str, tuple[int, ...]]:
    """fyu/drn drn_d_22's layer0…layer8 parameters (name → shape), from the architecture:
    conv7×7; one conv in layers 1, 2, 7, 8; two BasicBlocks in each of layers 3–6, the first
    with a 1×1 downsample where the stride (layers 3, 4) or the width changes."""
    shapes: dict[str, tuple[int, ...]] = {}

    def conv_bn(conv: str, bn: str, i: int, o: int, k: int) -> None:
        shapes.update({f"{conv}.weight": (o, i, k, k), f"{bn}.weight": (o,), f"{bn}.bias": (o,)})

    conv_bn("layer0.0", "layer0.1", c_in, c[0], 7)
    for layer, i, o in [(1, c[0], c[0]), (2, c[0], c[1]), (7, c[5], c[6]), (8, c[6], c[7])]:
        conv_bn(f"layer{layer}.0", f"layer{layer}.1", i, o, 3)
    for layer, i, o in [(3, c[1], c[2]), (4, c[2], c[3]), (5, c[3], c[4]), (6, c[4], c[5])]:
        for block, block_in in enumerate((i, o)):
            name = f"layer{layer}.{block}"
            conv_bn(f"{name}.conv1", f"{name}.bn1", block_in, o, 3)
            conv_bn(f"{name}.conv2", f"{name}.bn2", o, o, 3)
        if layer in (3, 4) or i != o:
            conv_bn(f"layer{layer}.0.downsample.0", f"layer{layer}.0.downsample.1", i, o, 1)
    return shapes


def trunk_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {
        name: tuple(p.shape)
        for name, p in model.named_parameters()
        if not name.startswith("classifier.")
    }


def randomize_batch_norm(model: nn.Module) -> nn.Module:
    """Running statistics away from (0, 1), so a buffer left unloaded shows in eval mode."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    return model


def drn(c_in: int = 3, classes: int = 5, channels=NARROW, **kwargs) -> DrnD22Seg:
    return DrnD22Seg([c_in, 32, 32], classes, channels=channels, **kwargs)


# DRN-D-22


@pytest.mark.parametrize(("channels", "c_in"), [(DRN_D_22, 3), (NARROW, 1)])
def test_drn_d22_has_fyus_parameter_names_and_shapes(channels, c_in):
    model = drn(c_in, channels=channels)
    assert trunk_shapes(model) == fyu_shapes(channels, c_in)
    assert tuple(model.classifier.weight.shape) == (5, channels[-1])
    bns = [name for name, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)]
    stats = ("running_mean", "running_var", "num_batches_tracked")
    assert {name for name, _ in model.named_buffers()} == {f"{n}.{s}" for n in bns for s in stats}


def test_drn_d22_trunk_has_the_published_parameter_count():
    trunk = sum(p.numel() for p in drn(channels=DRN_D_22).parameters()) - (512 * 5 + 5)
    assert trunk == sum(math.prod(shape) for shape in fyu_shapes(DRN_D_22).values())
    assert trunk == DRN_D_22_TRUNK
    assert abs(trunk + IMAGENET_FC - 16.4e6) < 0.01 * 16.4e6  # fyu/drn README: 16.4M


def test_drn_d22_dilations_strides_and_init_are_fyus():
    torch.manual_seed(0)
    model = drn(channels=DRN_D_22)
    strided = {"layer2.0", "layer3.0.conv1", "layer3.0.downsample.0", "layer4.0.conv1"}
    strided |= {"layer4.0.downsample.0"}
    dilation = {"layer5": 2, "layer6": 4, "layer7": 2}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            d = 1 if m.kernel_size == (1, 1) else dilation.get(name.split(".")[0], 1)
            assert m.dilation == (d, d) and m.padding == ((m.kernel_size[0] // 2) * d,) * 2
            assert m.stride == ((2, 2) if name in strided else (1, 1)), name
            assert m.bias is None
    n = 3 * 3 * 512
    assert model.layer6[1].conv2.weight.std().item() == pytest.approx(math.sqrt(2 / n), rel=0.01)
    assert torch.equal(model.layer3[0].bn1.weight, torch.ones(64))
    assert model.stage_channels == [64, 128, 256, 512, 512, 512]


def test_drn_d22_output_stride_is_8_and_logits_are_at_the_input_size():
    torch.manual_seed(0)
    model = drn(channels=DRN_D_22)
    out = model(torch.randn(2, 3, 64, 64))
    assert tuple(out.pixel_features.shape) == (2, 512, 8, 8)
    assert tuple(out.logits.shape) == (2, 5, 64, 64)
    assert_close(out.features, out.pixel_features.mean(dim=(2, 3)))
    strides = [64 // s.shape[-1] for s in out.stages]
    assert strides == [4, 8, 8, 8, 8, 8]
    assert [s.shape[1] for s in out.stages] == model.stage_channels


def reference_trunk(model: DrnD22Seg, x: torch.Tensor) -> torch.Tensor:
    """fyu's DRN-D forward (eval mode) written out in functional ops on `model`'s state."""
    s = model.state_dict()

    def conv_bn(x, conv, bn, stride=1, dilation=1, relu=True):
        w = s[f"{conv}.weight"]
        x = F.conv2d(x, w, stride=stride, padding=dilation * (w.shape[-1] // 2), dilation=dilation)
        stats = s[f"{bn}.running_mean"], s[f"{bn}.running_var"], s[f"{bn}.weight"], s[f"{bn}.bias"]
        x = F.batch_norm(x, *stats)
        return F.relu(x) if relu else x

    x = conv_bn(x, "layer0.0", "layer0.1")
    x = conv_bn(x, "layer1.0", "layer1.1")
    x = conv_bn(x, "layer2.0", "layer2.1", stride=2)
    for layer, stride, dilation in [(3, 2, 1), (4, 2, 1), (5, 1, 2), (6, 1, 4)]:
        for block, block_stride in enumerate((stride, 1)):
            name = f"layer{layer}.{block}"
            out = conv_bn(x, f"{name}.conv1", f"{name}.bn1", block_stride, dilation)
            out = conv_bn(out, f"{name}.conv2", f"{name}.bn2", 1, dilation, relu=False)
            if f"{name}.downsample.0.weight" in s:
                down = (f"{name}.downsample.0", f"{name}.downsample.1")
                x = conv_bn(x, *down, block_stride, relu=False)
            x = F.relu(out + x)
    x = conv_bn(x, "layer7.0", "layer7.1", dilation=2)
    return conv_bn(x, "layer8.0", "layer8.1")


def test_drn_d22_computes_fyus_forward_and_odd_sizes_give_logits_at_the_input_size():
    torch.manual_seed(0)
    model = randomize_batch_norm(drn()).eval()
    x = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        out = model(x)
        assert_close(out.pixel_features, reference_trunk(model, x))
    assert tuple(out.logits.shape) == (2, 5, 50, 70)
    assert tuple(out.pixel_features.shape) == (2, 16, 7, 9)


def drnseg_state(model: DrnD22Seg, seg: torch.Tensor) -> dict[str, torch.Tensor]:
    """`model`'s trunk as fyu's DRNSeg saves it: base = Sequential(layer0…layer8), saved
    through DataParallel (`module.`), with its 1×1 `seg` conv and fixed deconvolution `up`."""
    state = {
        "module." + re.sub(r"^layer(\d)\.", r"base.\1.", key): value
        for key, value in model.state_dict().items()
        if not key.startswith("classifier.")
    }
    classes = seg.shape[0]
    up = torch.randn(classes, 1, 16, 16)
    return state | {
        "module.seg.weight": seg,
        "module.seg.bias": torch.randn(classes),
        "module.up.weight": up,
    }


def test_a_drnseg_checkpoint_loads_the_trunk_and_seg_into_the_classifier(tmp_path):
    torch.manual_seed(0)
    source = randomize_batch_norm(drn(channels=DRN_D_22)).eval()
    state = drnseg_state(source, torch.randn(5, 512, 1, 1))
    path = tmp_path / "drn_d_22_cityscapes.pth"
    torch.save({"epoch": 1, "arch": "drn_d_22", "state_dict": state}, path)
    model = drn(channels=DRN_D_22, weights=str(path)).eval()
    x = torch.randn(2, 3, 32, 32)
    trunk = source.embed(x)[0]
    seg = F.conv2d(trunk, state["module.seg.weight"], state["module.seg.bias"])
    expected = F.interpolate(seg, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        assert_close(model(x).logits, expected)


def test_an_imagenet_checkpoint_loads_the_trunk_and_keeps_the_classifier(tmp_path):
    torch.manual_seed(0)
    source = randomize_batch_norm(drn()).eval()
    state = {k: v for k, v in source.state_dict().items() if "num_batches" not in k}
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    state |= {"fc.weight": torch.randn(1000, 16, 1, 1), "fc.bias": torch.randn(1000)}
    torch.save(state, tmp_path / "drn_d_22.pth")
    torch.manual_seed(1)
    fresh = drn()
    torch.manual_seed(1)
    model = drn(weights=str(tmp_path / "drn_d_22.pth")).eval()
    assert torch.equal(model.classifier.weight, fresh.classifier.weight)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert_close(model.embed(x)[0], source.embed(x)[0])


def test_a_seg_conv_of_another_class_count_is_skipped(tmp_path):
    torch.manual_seed(0)
    source = drn()
    torch.save(drnseg_state(source, torch.randn(19, 16, 1, 1)), tmp_path / "seg19.pth")
    torch.manual_seed(1)
    fresh = drn()
    torch.manual_seed(1)
    model = drn(weights=str(tmp_path / "seg19.pth"))
    assert torch.equal(model.classifier.weight, fresh.classifier.weight)
    assert torch.equal(model.layer8[0].weight, source.layer8[0].weight)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s | {"module.seg.weight": torch.randn(5, 8, 1, 1)},
            r"'module\.seg\.weight' has shape \[5, 8\]",
        ),
        (
            lambda s: s | {"module.base.9.0.weight": torch.randn(1)},
            r"unexpected key 'module\.base\.9\.0\.weight'",
        ),
        (
            lambda s: {k: v for k, v in s.items() if "base.8.1.running_var" not in k},
            r"missing .*'layer8\.1\.running_var'",
        ),
    ],
)
def test_a_mismatched_checkpoint_is_refused_naming_the_file_and_the_key(tmp_path, edit, message):
    torch.manual_seed(0)
    path = tmp_path / "bad.pth"
    torch.save(edit(drnseg_state(drn(), torch.randn(5, 16, 1, 1))), path)
    with pytest.raises(
        ConfigError, match=rf"^model\.weights={re.escape(str(path))}: {message}"
    ) as error:
        drn(weights=str(path))
    assert "\n" not in str(error.value)


def test_a_checkpoint_for_other_input_channels_or_an_unreadable_file_is_refused(tmp_path):
    torch.save(drn(c_in=3).state_dict(), tmp_path / "rgb.pth")
    with pytest.raises(ConfigError, match=r"'layer0\.0\.weight' has shape \[4, 3, 7, 7\]"):
        drn(c_in=1, weights=str(tmp_path / "rgb.pth"))
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match=r"junk\.pth cannot be read: "):
        drn(weights=str(tmp_path / "junk.pth"))
    with pytest.raises(ConfigError, match=r"missing\.pth cannot be read: .*No such file"):
        drn(weights=str(tmp_path / "missing.pth"))
    with pytest.raises(ConfigError, match=r"model\.channels=\[4, 4\] must be 8 positive widths"):
        drn(channels=(4, 4))


# torchvision stand-ins


def refuse(*args, **kwargs):
    raise AssertionError("a download was attempted")


@pytest.fixture
def no_download(monkeypatch):
    """torch.hub's download functions, and torchvision's own handle on them, refuse."""
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)


def test_the_refusal_catches_torchvisions_default_backbone_download(no_download):
    with pytest.raises(AssertionError, match="a download was attempted"):
        fcn_resnet50(num_classes=3)  # weights_backbone defaults to ImageNet's


@pytest.mark.parametrize(("cls", "width"), [(DeepLabV3ResNet50, 256), (FcnResNet50, 512)])
def test_torchvision_wrappers_build_without_download_at_output_stride_8(no_download, cls, width):
    torch.manual_seed(0)
    model = cls([3, 32, 32], num_classes=4).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 32))
    assert tuple(out.logits.shape) == (1, 4, 32, 32)
    assert tuple(out.pixel_features.shape) == (1, width, 4, 4)
    assert tuple(out.features.shape) == (1, width)
    assert [tuple(s.shape[1:]) for s in out.stages] == [
        (256, 8, 8),
        (512, 4, 4),
        (1024, 4, 4),
        (2048, 4, 4),
    ]
    assert [s.shape[1] for s in out.stages] == model.stage_channels
    assert tuple(model.classifier.weight.shape) == (4, width)


def test_the_fcn_heads_dropout_is_the_slot_and_deeplab_keeps_aspps_own():
    fcn = FcnResNet50([3, 32, 32], num_classes=4)
    assert dropout_layers(fcn) == [fcn.dropout] and fcn.dropout.p == 0.1
    deeplab = DeepLabV3ResNet50([3, 32, 32], num_classes=4)
    assert [m.p for m in dropout_layers(deeplab)] == [0.5]  # ASPP's, torchvision's
    assert isinstance(deeplab.dropout, nn.Identity)


@pytest.mark.parametrize(
    ("builder", "cls"), [(deeplabv3_resnet50, DeepLabV3ResNet50), (fcn_resnet50, FcnResNet50)]
)
def test_decode_reproduces_torchvisions_model_with_its_weights(no_download, tmp_path, builder, cls):
    torch.manual_seed(0)
    net = builder(weights=None, weights_backbone=None, num_classes=3, aux_loss=True)
    randomize_batch_norm(net).eval()
    torch.save(net.state_dict(), tmp_path / "net.pth")  # with aux_classifier, dropped
    model = cls([3, 32, 32], num_classes=3, weights=str(tmp_path / "net.pth")).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert_close(model(x).logits, net(x)["out"])


def test_torchvision_wrappers_take_other_input_channels(tmp_path):
    torch.manual_seed(0)
    model = FcnResNet50([1, 32, 32], num_classes=2).eval()
    assert model.backbone.conv1.in_channels == 1
    with torch.no_grad():
        assert tuple(model(torch.randn(1, 1, 32, 32)).logits.shape) == (1, 2, 32, 32)
    torch.save({"backbone.conv1.weight": torch.randn(64, 3, 7, 7)}, tmp_path / "rgb.pth")
    with pytest.raises(ConfigError, match=r"'backbone\.conv1\.weight' has shape \[64, 3, 7, 7\]"):
        FcnResNet50([1, 32, 32], num_classes=2, weights=str(tmp_path / "rgb.pth"))


@pytest.mark.parametrize(
    ("model", "cls", "dropout"),
    [
        ("drn_d22", DrnD22Seg, 0.0),
        ("deeplabv3_resnet50", DeepLabV3ResNet50, 0.0),
        ("fcn_resnet50", FcnResNet50, 0.1),
    ],
)
def test_the_model_configs_build_their_class(no_download, model, cls, dropout):
    backbone = build(compose_config("dataset=digits", f"model={model}").model).eval()
    assert isinstance(backbone, cls)
    assert getattr(backbone.dropout, "p", 0.0) == dropout
    with torch.no_grad():
        assert tuple(backbone(torch.randn(1, 1, 8, 8)).logits.shape) == (1, 10, 8, 8)
