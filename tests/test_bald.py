"""MC dropout: known-answer acquisitions, scoring that never moves BatchNorm statistics, and a
model without dropout refused before it trains (never given a layer the other methods lack)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from al.build import build_module
from al.errors import ConfigError
from al.loop import run
from al.methods.bald import BaldSelector, bald, max_entropy, variation_ratios
from al.methods.classifier import ClassifierModule
from al.methods.selector import SelectionRequest
from al.models.backbone import dropout_layers
from al.models.cnn import SmallCNN
from al.models.mlp import MLP

from conftest import compose_config, train_command

REFUSAL = r"MC dropout needs a dropout layer, and the model has none: set model\.dropout=0\.5"

# (T=2 passes, B=3 samples, C=2 classes):
#   sample 0: the passes disagree completely  → BALD = ln 2, max entropy = ln 2
#   sample 1: both passes are uniform          → BALD = 0,    max entropy = ln 2
#   sample 2: both passes are certain, agree   → BALD = 0,    max entropy = 0
MC_PROBS = torch.tensor(
    [
        [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]],
        [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]],
    ]
)


def test_bald_is_the_mutual_information():
    assert torch.allclose(bald(MC_PROBS), torch.tensor([math.log(2), 0.0, 0.0]), atol=1e-6)


def test_max_entropy_is_the_entropy_of_the_mean():
    expected = torch.tensor([math.log(2), math.log(2), 0.0])
    assert torch.allclose(max_entropy(MC_PROBS), expected, atol=1e-6)


def test_variation_ratios_count_votes_against_the_mode():
    votes = torch.tensor([[[0.9, 0.1]], [[0.8, 0.2]], [[0.3, 0.7]], [[0.6, 0.4]]])
    assert torch.allclose(variation_ratios(votes), torch.tensor([0.25]))
    assert torch.allclose(variation_ratios(MC_PROBS[:, 2:]), torch.tensor([0.0]))


def test_bad_acquisition_or_passes_is_refused():
    with pytest.raises(ConfigError, match="acquisition='entropy'"):
        BaldSelector(acquisition="entropy")
    with pytest.raises(ConfigError, match="passes=1"):
        BaldSelector(passes=1)


def module_with_dropout(backbone_class, input_shape):
    backbone = backbone_class(input_shape, 10, dropout=0.5)
    return ClassifierModule(backbone, torch.optim.Adam, num_classes=10)


def request_for(x: torch.Tensor, query: int) -> SelectionRequest:
    indices = torch.arange(100, 100 + len(x))
    loader = [(x, indices)]
    return SelectionRequest(loader, loader, indices, query, seed=0)


def test_scoring_leaves_batchnorm_statistics_alone_and_uses_dropout():
    torch.manual_seed(0)
    module = module_with_dropout(SmallCNN, [1, 8, 8])
    assert isinstance(module.backbone.dropout, torch.nn.Dropout)
    module.train()
    module.backbone(torch.randn(16, 1, 8, 8))  # move BN statistics away from their init
    before = {k: v.clone() for k, v in module.state_dict().items() if "running" in k}
    selector = BaldSelector(passes=5)
    selector.request(request_for(torch.randn(12, 1, 8, 8), query=4))
    trainer = SimpleNamespace(
        world_size=1, global_rank=0, strategy=SimpleNamespace(broadcast=lambda obj, src: obj)
    )
    selector.on_train_end(trainer, module)
    after = {k: v for k, v in module.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert selector.selection.scores.min() > 0  # dropout varied the passes
    assert module.training and module.backbone.dropout.training  # restored to train mode


def test_dropout_is_off_again_after_scoring():
    torch.manual_seed(0)
    module = module_with_dropout(MLP, [2]).eval()
    BaldSelector(passes=3).select(module, request_for(torch.randn(6, 2), query=2))
    x = torch.randn(5, 2)
    assert torch.equal(module(x), module(x))


def test_bald_trains_the_models_dropout_and_adds_none():
    plain = build_module(compose_config("method=bald"), 10)
    assert dropout_layers(plain) == []
    module = build_module(compose_config("method=bald", "model.dropout=0.3"), 10)
    assert dropout_layers(module) == [module.backbone.dropout]
    assert module.backbone.dropout.p == 0.3


def test_head_only_sampling_matches_full_passes_in_distribution():
    torch.manual_seed(0)
    module = module_with_dropout(SmallCNN, [1, 8, 8]).eval()
    selector = BaldSelector(passes=4000)
    x = torch.randn(3, 1, 8, 8)
    module.backbone.dropout.train()
    fast = torch.stack([F.softmax(p, 1) for p in selector.passes_of(module, x)]).mean(0)
    module.backbone.conv_dropout = torch.nn.Dropout(0.1)  # a second dropout layer: full passes
    full = torch.stack([F.softmax(p, 1) for p in selector.passes_of(module, x)]).mean(0)
    assert torch.allclose(fast, full, atol=0.02)


def test_model_without_dropout_is_refused():
    module = ClassifierModule(MLP([2], 10), torch.optim.Adam, num_classes=10).eval()
    with pytest.raises(ConfigError, match=REFUSAL):
        BaldSelector().setup(None, module, "fit")
    with pytest.raises(ConfigError, match=REFUSAL):
        BaldSelector().select(module, request_for(torch.randn(4, 2), query=2))


def test_a_run_without_model_dropout_stops_before_training(tiny_config, tmp_path, monkeypatch):
    def never(*args):
        raise AssertionError("trained a model BALD refuses")

    monkeypatch.setattr(ClassifierModule, "training_step", never)
    with pytest.raises(ConfigError, match=REFUSAL):
        run(tiny_config("method=bald"), tmp_path / "run")
    assert not (tmp_path / "run").exists(), "refused before anything is written"


@pytest.mark.slow
def test_the_refusal_is_one_line_naming_the_fix(tmp_path):
    done = train_command(tmp_path, "method=bald")
    assert done.returncode == 2
    assert done.stderr.startswith("Error: method=bald: MC dropout needs a dropout layer")
    assert "model.dropout=0.5" in done.stderr and len(done.stderr.splitlines()) == 1
