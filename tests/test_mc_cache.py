"""MC-dropout caching: when the slot before the classifier is the only dropout, the features are
computed once per batch and the head is resampled T times, with the scores of T full passes
under the same masks (BALD and BatchBALD, classification and segmentation, a timm ViT whose
dropout layers have rate 0); dropout anywhere else (a torchvision model's own, a trunk's) falls
back to full passes, said once in the log; the bench's rows compare both on ResNet-18."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from al.bench.mc_cache import mc_cache_figures
from al.bench.settings import Settings
from al.build import build_module
from al.errors import ConfigError
from al.methods.bald import BaldSelector
from al.methods.batchbald import BatchBaldSelector
from al.methods.classifier import ClassifierModule
from al.methods.mc_dropout import full_pass_reason, mc_dropout_layers
from al.methods.selector import SelectionRequest
from al.models.backbone import Backbone
from al.models.cnn import SmallCNN
from al.models.seg_cnn import SmallSegNet
from al.models.timm_backbone import TimmBackbone
from al.models.torchvision_backbone import TorchvisionBackbone
from al.tasks.segmentation import Segmentation

from conftest import compose_config

PASSES = 6
BATCHES = 2


def bald_selector(cache_features: bool) -> BaldSelector:
    return BaldSelector(PASSES, cache_features=cache_features)


class TrunkDropoutNet(Backbone):
    """Linear → ReLU → Dropout(0.3) → [slot] → Linear: a dropout before the penultimate
    feature, so every pass must run the trunk."""

    def __init__(self, trunk_rate: float = 0.3) -> None:
        super().__init__(dropout=0.5)
        self.trunk = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Dropout(trunk_rate))
        self.classifier = nn.Linear(16, 4)
        self.stage_channels = [16]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.trunk(x)
        return features, [features]


def module_of(backbone: Backbone, classes: int, **task) -> ClassifierModule:
    return ClassifierModule(backbone, torch.optim.Adam, num_classes=classes, **task).eval()


def request_for(x: torch.Tensor, query: int, seed: int = 0) -> SelectionRequest:
    """Candidates 100… served in `BATCHES` batches."""
    indices = torch.arange(100, 100 + len(x))
    loader = list(zip(x.chunk(BATCHES), indices.chunk(BATCHES), strict=True))
    return SelectionRequest(loader, loader, indices, query, seed=seed)


class Calls:
    """How many times each of `layers` ran forward."""

    def __init__(self, **layers: nn.Module) -> None:
        self.counts = dict.fromkeys(layers, 0)
        for name, layer in layers.items():
            layer.register_forward_hook(lambda *_, name=name: self.tally(name))

    def tally(self, name: str) -> None:
        self.counts[name] += 1


def selections(make_selector, module, x, query, calls: Calls | None = None) -> list[tuple]:
    """The picks and scores of `make_selector(cache_features)` with the cache on, then off, the
    global generator seeded alike (BALD's masks come from it); `calls`' counts of each."""
    results = []
    for cache in (True, False):
        if calls is not None:
            calls.counts = dict.fromkeys(calls.counts, 0)
        torch.manual_seed(7)
        selector, request = make_selector(cache), request_for(x, query, seed=3)
        selector.request(request)
        with torch.no_grad():
            indices, scores = selector.select(module, request)
        results.append((indices, scores, dict(calls.counts) if calls else None))
    return results


def test_bald_with_cached_features_scores_as_full_passes_with_a_trunk_run_per_batch():
    torch.manual_seed(0)
    module = module_of(SmallCNN([1, 8, 8], 10, dropout=0.5), 10)
    calls = Calls(trunk=module.backbone.blocks[0], head=module.backbone.classifier)
    x = torch.randn(12, 1, 8, 8)
    cached, full = selections(bald_selector, module, x, 12, calls)
    assert full_pass_reason(module) is None
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])
    assert cached[1].min() > 0  # the passes differ
    assert cached[2] == {"trunk": BATCHES, "head": PASSES * BATCHES}
    assert full[2] == {"trunk": PASSES * BATCHES, "head": PASSES * BATCHES}


def test_batchbald_with_cached_features_has_the_same_probabilities_picks_and_gains():
    torch.manual_seed(0)
    module = module_of(SmallCNN([1, 8, 8], 5, dropout=0.5), 5)
    x = torch.randn(10, 1, 8, 8)
    calls = Calls(trunk=module.backbone.blocks[0])

    def make(cache_features: bool) -> BatchBaldSelector:
        return BatchBaldSelector(PASSES, cache_features=cache_features)

    cached, full = selections(make, module, x, 4, calls)
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])
    assert cached[2] == {"trunk": BATCHES} and full[2] == {"trunk": PASSES * BATCHES}
    loader = request_for(x, 4).candidates
    with torch.no_grad():
        _, cached_probs = make(True).mc_probabilities(module, loader, seed=3)
        _, full_probs = make(False).mc_probabilities(module, loader, seed=3)
    assert torch.equal(cached_probs, full_probs)
    assert not torch.allclose(cached_probs[:, 0], cached_probs[:, 1])


def test_segmentation_bald_with_cached_features_scores_as_full_passes():
    torch.manual_seed(0)
    backbone = SmallSegNet([3, 12, 12], 4, channels=(8, 8, 16), dropout=0.5)
    module = module_of(backbone, 4, task=Segmentation(ignore_index=255))
    calls = Calls(trunk=backbone.blocks[0])
    x = torch.randn(6, 3, 12, 12)
    cached, full = selections(bald_selector, module, x, 6, calls)
    assert full_pass_reason(module) is None
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])
    assert cached[1].min() > 0 and cached[1].shape == (6,)  # one score per image
    assert cached[2] == {"trunk": BATCHES} and full[2] == {"trunk": PASSES * BATCHES}


def test_a_timm_vit_whose_own_dropout_has_rate_zero_is_cached_with_the_same_scores():
    torch.manual_seed(0)
    backbone = TimmBackbone(
        [3, 16, 16], 5, "vit_tiny_patch16_224", dropout=0.5, kwargs={"patch_size": 8, "depth": 2}
    )
    module = module_of(backbone, 5)
    assert len(backbone.net.blocks) == 2 and full_pass_reason(module) is None
    assert mc_dropout_layers(module) == [backbone.dropout]
    x = torch.randn(4, 3, 16, 16)
    cached, full = selections(bald_selector, module, x, 4)
    assert torch.equal(cached[0], full[0]) and torch.equal(cached[1], full[1])


def test_dropout_in_the_trunk_falls_back_to_full_passes_and_says_so_once(caplog):
    torch.manual_seed(0)
    module = module_of(TrunkDropoutNet(), 4)
    calls = Calls(trunk=module.backbone.trunk)
    reason = "dropout besides the slot before the classifier: backbone.trunk.2"
    assert full_pass_reason(module) == reason
    x = torch.randn(8, 3)
    with caplog.at_level(logging.INFO, logger="al.methods.mc_dropout"):
        selector = BaldSelector(PASSES)
        for _ in range(2):  # two stages
            torch.manual_seed(7)
            request = request_for(x, 8, seed=3)
            selector.request(request)
            with torch.no_grad():
                indices, scores = selector.select(module, request)
    assert calls.counts == {"trunk": 2 * PASSES * BATCHES}
    assert [r.getMessage() for r in caplog.records] == [
        f"MC dropout: {PASSES} full forward passes per batch ({reason})"
    ]
    cached, full = selections(bald_selector, module, x, 8)
    assert torch.equal(cached[1], full[1]) and torch.equal(scores, full[1])
    assert torch.equal(indices, full[0])


def test_batchbald_falls_back_with_the_trunks_masks_fixed_too():
    module = module_of(TrunkDropoutNet(), 4)
    x = torch.randn(5, 3).repeat(2, 1)  # the same inputs in both batches
    loader = request_for(x, 2).candidates
    with torch.no_grad():
        _, probs = BatchBaldSelector(PASSES).mc_probabilities(module, loader, seed=1)
    assert torch.equal(probs[:5], probs[5:])  # pass t is one model ω_t for every sample
    assert not torch.allclose(probs[:, 0], probs[:, 1])


def test_a_torchvision_models_own_dropout_is_found_and_falls_back():
    backbone = TorchvisionBackbone([3, 32, 32], 5, "mobilenet_v2", dropout=0.5)
    module = module_of(backbone, 5)
    assert full_pass_reason(module) == (
        "dropout besides the slot before the classifier: backbone.net.classifier.0"
    )


def test_modules_whose_logits_are_not_the_backbones_fall_back():
    class Doubled(ClassifierModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    class OwnForward(TrunkDropoutNet):
        def forward(self, x: torch.Tensor):
            return super().forward(x)

    doubled = Doubled(TrunkDropoutNet(0.0), torch.optim.Adam, num_classes=4)
    assert full_pass_reason(doubled) == "the logits of Doubled are not its backbone's"
    own = module_of(OwnForward(0.0), 4)
    assert full_pass_reason(own) == "OwnForward.forward is not embed, then decode"


def test_rate_zero_dropout_is_not_sampled_and_alone_is_refused():
    module = module_of(TrunkDropoutNet(trunk_rate=0.0), 4)
    assert full_pass_reason(module) is None
    assert mc_dropout_layers(module) == [module.backbone.dropout]
    module.backbone.dropout = nn.Dropout(0.0)
    with pytest.raises(ConfigError, match=r"MC dropout needs a dropout layer.*model\.dropout=0\.5"):
        mc_dropout_layers(module)


@pytest.mark.parametrize(
    "overrides",
    [
        ("method=bald",),
        ("method=batchbald",),
        ("method=bgadl",),
        ("method=bald", "model=resnet18", "dataset=cifar10"),
        ("method=bald", "dataset=shapes_seg"),
    ],
)
def test_every_mc_dropout_method_caches_on_the_projects_models(overrides):
    cfg = compose_config(*overrides, "model.dropout=0.5")
    module = build_module(cfg, cfg.dataset.num_classes)
    assert full_pass_reason(module) is None


def test_the_bench_times_full_passes_against_the_cached_trunk_with_identical_picks():
    figures = mc_cache_figures(Settings(True, 1, torch.device("cpu"), torch.get_num_threads()))
    assert [figure.name for figure in figures] == [
        f"method={method}, ResNet-18, T = 20: 8 candidates, 2 picks: full passes / cached trunk"
        for method in ("bald", "batchbald")
    ]
    assert all(figure.note == "picks and scores identical, 32×32 inputs" for figure in figures)
    assert all(set(figure.values) >= {"seconds", "baseline_seconds"} for figure in figures)
