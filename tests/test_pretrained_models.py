"""timm and torchvision backbones (model=timm, model=torchvision): every dataset shape, local
checkpoints in both accepted formats, a frozen trunk, and pretrained weights asked for by name
(the download itself mocked: nothing downloads here)."""

from __future__ import annotations

import urllib.error

import pytest
import timm
import torch
import torchvision
from torch import nn
from torchvision.models import get_model

from al.checks import check_built_options
from al.errors import ConfigError, build
from al.loop import run
from al.models.timm_backbone import TimmBackbone
from al.models.torchvision_backbone import TorchvisionBackbone

from conftest import TINY, compose_config

DIGITS, FASHION, CIFAR, IMAGENET = (1, 8, 8), (1, 28, 28), (3, 32, 32), (3, 224, 224)
# Stage output shapes (C, H, W) per input shape, and the pooled feature width. timm's tiny
# test_resnet: stages act1 (stride 2), layer1…layer4; an 8×8 image is 1×1 from layer2 on.
TIMM_STAGES = {
    DIGITS: [(32, 4, 4), (32, 2, 2), (48, 1, 1), (192, 1, 1), (96, 1, 1)],
    FASHION: [(32, 14, 14), (32, 7, 7), (48, 4, 4), (192, 2, 2), (96, 1, 1)],
    CIFAR: [(32, 16, 16), (32, 8, 8), (48, 4, 4), (192, 2, 2), (96, 1, 1)],
    IMAGENET: [(32, 112, 112), (32, 56, 56), (48, 28, 28), (192, 14, 14), (96, 7, 7)],
}
# torchvision's resnet18: relu (the stem, stride 2), layer1…layer4.
TORCHVISION_STAGES = {
    DIGITS: [(64, 4, 4), (64, 2, 2), (128, 1, 1), (256, 1, 1), (512, 1, 1)],
    FASHION: [(64, 14, 14), (64, 7, 7), (128, 4, 4), (256, 2, 2), (512, 1, 1)],
    CIFAR: [(64, 16, 16), (64, 8, 8), (128, 4, 4), (256, 2, 2), (512, 1, 1)],
    IMAGENET: [(64, 112, 112), (64, 56, 56), (128, 28, 28), (256, 14, 14), (512, 7, 7)],
}


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch):
    """Any attempt to fetch pretrained weights fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("a test tried to download weights")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", refuse)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", refuse)


def timm_model(shape, seed=0, **options):
    torch.manual_seed(seed)
    return TimmBackbone(list(shape), 10, name="test_resnet", **options)


def torchvision_model(shape, seed=0, name="resnet18", **options):
    torch.manual_seed(seed)
    return TorchvisionBackbone(list(shape), 10, name=name, **options)


def outputs(model, shape, seed=1, batch=3):
    model.eval()
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(torch.randn(batch, *shape))


@pytest.mark.parametrize("shape", [DIGITS, FASHION, CIFAR, IMAGENET])
@pytest.mark.parametrize(
    ("make", "stages", "width"),
    [(timm_model, TIMM_STAGES, 96), (torchvision_model, TORCHVISION_STAGES, 512)],
)
def test_builds_for_every_dataset_shape(make, stages, width, shape):
    model = make(shape)
    out = outputs(model, shape, batch=2)
    assert out.logits.shape == (2, 10) and out.features.shape == (2, width)
    assert [tuple(s.shape[1:]) for s in out.stages] == stages[shape]
    assert model.stage_channels == [c for c, _, _ in stages[shape]]
    torch.testing.assert_close(out.logits, model.classifier(out.features))


def test_timm_features_are_timms_pooled_features():
    for model, shape in [
        (timm_model(FASHION), FASHION),
        (TimmBackbone(list(FASHION), 10, name="test_vit", kwargs={"patch_size": 4}), FASHION),
    ]:
        x = torch.randn(2, *shape)
        model.eval()
        with torch.no_grad():
            expected = model.net.forward_head(model.net.forward_features(x), pre_logits=True)
            torch.testing.assert_close(model(x).features, expected)


def test_torchvision_features_are_the_pooled_last_stage():
    model = torchvision_model(CIFAR)
    out = outputs(model, CIFAR)
    torch.testing.assert_close(out.features, out.stages[-1].mean(dim=(2, 3)))


def test_one_channel_input_conv_sums_the_rgb_weights_as_timm_does():
    rgb, gray = torchvision_model(CIFAR), torchvision_model(FASHION)
    assert gray.net.conv1.in_channels == 1
    torch.testing.assert_close(gray.net.conv1.weight, rgb.net.conv1.weight.sum(1, keepdim=True))


@pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")  # googlenet's
def test_images_too_small_for_the_downsampling_are_one_line():
    too_small = r"model.name={} cannot take input_shape=\[1, 8, 8\]: .* or larger images"
    with pytest.raises(ConfigError, match=too_small.format("test_convnext")) as error:
        TimmBackbone([1, 8, 8], 10, name="test_convnext")
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=too_small.format("googlenet")):
        TorchvisionBackbone([1, 8, 8], 10, name="googlenet")


@pytest.mark.parametrize("make", [timm_model, torchvision_model])
def test_a_checkpoint_of_this_backbone_loads(make, tmp_path):
    source = make(FASHION, seed=1)
    torch.save(source.state_dict(), tmp_path / "ours.pt")
    loaded = make(FASHION, seed=2, weights=str(tmp_path / "ours.pt"))
    assert torch.equal(outputs(loaded, FASHION).logits, outputs(source, FASHION).logits)


def test_a_timm_checkpoint_loads_wrapped_or_behind_dataparallel(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", in_chans=1, num_classes=10).eval()
    state = {f"module.{key}": value for key, value in source.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "timm.pt")
    loaded = timm_model(FASHION, seed=2, weights=str(tmp_path / "timm.pt"))
    x = torch.randn(3, *FASHION)
    with torch.no_grad():
        assert torch.equal(loaded.eval()(x).logits, source(x))


def test_an_rgb_torchvision_checkpoint_loads_into_one_channel_images(tmp_path):
    """The adapted conv on one channel = the RGB conv on that channel repeated three times."""
    torch.manual_seed(1)
    source = get_model("resnet18", num_classes=10).eval()
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    loaded = torchvision_model(FASHION, seed=2, weights=str(tmp_path / "resnet18.pth"))
    x = torch.randn(3, *FASHION)
    with torch.no_grad():
        expected = source(x.expand(-1, 3, -1, -1))
        torch.testing.assert_close(loaded.eval()(x).logits, expected, rtol=1e-4, atol=1e-5)


def test_a_head_of_another_class_count_is_ignored(tmp_path):
    torch.manual_seed(1)
    source = timm.create_model("test_resnet", in_chans=1, num_classes=1000).eval()
    torch.save(source.state_dict(), tmp_path / "imagenet_head.pt")
    loaded = timm_model(FASHION, seed=2, weights=str(tmp_path / "imagenet_head.pt"))
    fresh = timm_model(FASHION, seed=2)
    x = torch.randn(3, *FASHION)
    with torch.no_grad():
        pooled = source.forward_head(source.forward_features(x), pre_logits=True)
        assert torch.equal(loaded.eval()(x).features, pooled)
    assert torch.equal(loaded.classifier.weight, fresh.classifier.weight)


def one_line_error(make, path, match):
    with pytest.raises(ConfigError, match=match) as error:
        make(FASHION, weights=str(path))
    assert "\n" not in str(error.value) and f"model.weights={path}" in str(error.value)


def test_a_checkpoint_of_another_architecture_is_one_line_naming_keys(tmp_path):
    other = timm.create_model("test_efficientnet", in_chans=1, num_classes=10)
    torch.save(other.state_dict(), tmp_path / "effnet.pt")
    one_line_error(
        timm_model,
        tmp_path / "effnet.pt",
        r"does not fit timm's test_resnet on input_shape=\[1, 28, 28\]: unexpected keys "
        r"conv_stem.weight, blocks.0.0.conv.weight, blocks.0.0.bn1.weight …; missing keys "
        r"net.conv1.0.weight, .*; shape mismatch bn1.weight \[24\] \(model \[32\]\), .*"
        r"model.weights=null",
    )
    torch.save(get_model("mobilenet_v3_small").state_dict(), tmp_path / "mobilenet.pth")
    one_line_error(
        torchvision_model,
        tmp_path / "mobilenet.pth",
        r"does not fit torchvision's resnet18 .*unexpected keys features.0.0.weight",
    )


def test_a_mis_shaped_key_and_a_missing_file_are_one_line(tmp_path):
    state = timm_model(FASHION).state_dict()
    state["net.layer1.0.conv1.weight"] = torch.zeros(8, 32, 3, 3)
    torch.save(state, tmp_path / "narrow.pt")
    one_line_error(
        timm_model,
        tmp_path / "narrow.pt",
        r"shape mismatch net.layer1.0.conv1.weight \[8, 32, 3, 3\] \(model \[32, 32, 3, 3\]\)",
    )
    one_line_error(timm_model, tmp_path / "absent.pt", r"no such file; .*model.weights=null")


@pytest.mark.parametrize("make", [timm_model, torchvision_model])
def test_freeze_backbone_trains_the_head_alone(make):
    frozen = make(FASHION, freeze="backbone")
    trunk = {k: v.clone() for k, v in frozen.net.state_dict().items()}
    head = frozen.classifier.weight.detach().clone()
    optimizer = torch.optim.SGD(frozen.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    torch.manual_seed(3)
    frozen.train()
    assert frozen.training and frozen.classifier.training and not frozen.net.training
    for _ in range(3):
        loss = nn.functional.cross_entropy(
            frozen(torch.randn(4, *FASHION)).logits, torch.tensor([0, 1, 2, 3])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert not any(p.requires_grad for p in frozen.net.parameters())
    assert all(torch.equal(v, trunk[k]) for k, v in frozen.net.state_dict().items())
    assert not torch.equal(frozen.classifier.weight, head)
    tuned = make(FASHION).train()  # freeze=none: the same steps move the BN statistics
    tuned(torch.randn(4, *FASHION))
    assert any(
        not torch.equal(v, trunk[k]) for k, v in tuned.net.state_dict().items() if "running" in k
    )


def test_bad_values_are_one_line():
    with pytest.raises(ConfigError, match=r"model.freeze='all' must be one of none, backbone"):
        timm_model(FASHION, freeze="all")
    for model in ("timm", "torchvision"):
        with pytest.raises(ConfigError, match=r"model.freeze='head' must be one of 'none'"):
            check_built_options(compose_config(f"model={model}", "model.freeze=head"))
    with pytest.raises(ConfigError, match=r"model.name='resnet_18' .*closest: resnet18"):
        TimmBackbone(list(FASHION), 10, name="resnet_18")
    with pytest.raises(ConfigError, match=r"vit_b_16: .*use model=timm"):
        TorchvisionBackbone(list(CIFAR), 10, name="vit_b_16")
    with pytest.raises(ConfigError, match=r"model.pretrained=true and model.weights=w.pt"):
        timm_model(FASHION, pretrained=True, weights="w.pt")


def test_pretrained_true_asks_the_library_for_the_named_weights(monkeypatch):
    asked = []
    monkeypatch.setattr(
        timm.models._builder,
        "load_pretrained",
        lambda model, pretrained_cfg, in_chans, num_classes, **kwargs: asked.append(
            (pretrained_cfg["hf_hub_id"], in_chans, num_classes)
        ),
    )
    timm_model(FASHION, pretrained=True)

    def state_dict(weights, *args, **kwargs):
        asked.append(str(weights))
        return get_model("resnet18").state_dict()

    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", state_dict)
    torchvision_model(FASHION, pretrained=True)
    assert asked == [("timm/test_resnet.r160_in1k", 1, 10), "ResNet18_Weights.IMAGENET1K_V1"]


def test_a_failed_download_is_one_line(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(timm.models._builder, "load_pretrained", offline)
    monkeypatch.setattr(torchvision.models._api.WeightsEnum, "get_state_dict", offline)
    for make in (timm_model, torchvision_model):
        with pytest.raises(ConfigError, match=r"cannot get .* use model.weights=PATH") as error:
            make(FASHION, pretrained=True)
        assert "\n" not in str(error.value)


@pytest.mark.parametrize("model", ["timm", "torchvision"])
def test_the_configs_download_nothing_by_default(model):
    cfg = compose_config(f"model={model}", "dataset=digits")
    assert cfg.model.pretrained is False and cfg.model.weights is None
    assert cfg.model.freeze == "none"
    assert build(cfg.model).stage_channels == [64, 64, 128, 256, 512]  # resnet18


@pytest.mark.parametrize("method", ["margin", "learning_loss"])
def test_a_two_stage_run_on_digits_with_timm(method, tmp_path):
    cfg = compose_config(
        *TINY,
        "budget.initial=50",
        "budget.query=50",
        "budget.stages=2",
        "trainer.max_epochs=20",
        "dataset=digits",
        f"method={method}",
        "model=timm",
        "model.name=test_resnet",
    )
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [50, 100]
    # chance is 0.1; measured 0.39 → 0.62 (margin), 0.40 → 0.60 (learning_loss)
    assert records[1]["test/acc"] > max(0.5, records[0]["test/acc"])
