"""Golden test: ADS's losses and acquisition entropy against the authors' code
(fumengying19/AAAI21-ADS, branch `code`; fixture made by make_ads.py), with the options that
match the code: `entropy: code` (MyEntLoss), `weighting: code` (the fixed 1/128), τ = 0.1.

The code's backbone is replaced on both sides by the same stand-in: g(x) = W_g x + b_g and
linear heads f_k (the project's `head: linear`), so the comparison is of the losses alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from al.methods.ads import AdsModule, mean_entropy, prediction_discrepancy
from al.models.backbone import Backbone

FIXTURE = json.loads(Path(__file__).with_name("ads.json").read_text())
WEIGHTS, INPUTS, OUTPUTS = FIXTURE["weights"], FIXTURE["inputs"], FIXTURE["outputs"]
ATOL, RTOL_SMALL = 1e-5, 1e-6  # the weighted unlabeled terms are ~1e-3: relative as well


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


class LinearFeatures(Backbone):
    """g(x) = W_g x + b_g; the classifier slot only sizes ADS's heads."""

    def __init__(self) -> None:
        super().__init__()
        self.g = nn.Linear(*tensor(WEIGHTS["wg"]).T.shape)
        self.g.weight.data, self.g.bias.data = tensor(WEIGHTS["wg"]), tensor(WEIGHTS["bg"])
        self.classifier = nn.Linear(self.g.out_features, len(WEIGHTS["b1"]))
        self.stage_channels = [self.g.out_features]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.g(x)
        return features, [features]


@pytest.fixture
def module() -> AdsModule:
    ads = AdsModule(
        LinearFeatures(),
        optimizer=torch.optim.SGD,
        num_classes=len(WEIGHTS["b1"]),
        head="linear",
        tau=FIXTURE["reference"]["config"]["MIN_CLBR"],
        entropy="code",
        weighting="code",
    ).double()
    for head, k in zip(ads.heads, ("1", "2"), strict=True):
        head.weight.data, head.bias.data = tensor(WEIGHTS[f"w{k}"]), tensor(WEIGHTS[f"b{k}"])
    return ads.eval()


def batches() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        tensor(INPUTS["x_labeled"]),
        torch.tensor(INPUTS["y_labeled"]),
        tensor(INPUTS["x_unlabeled"]),
    )


def test_per_sample_terms_match_myentloss_and_myl1loss(module):
    """ŷ¹, ŷ²; E(u) = mean of the two MyEntLoss (renormalised, bits); La' = Myl1loss."""
    _, _, x_u = batches()
    probabilities = torch.sigmoid(module.head_scores(module.features(x_u)))
    expected = tensor(OUTPUTS["probabilities"])
    torch.testing.assert_close(probabilities, expected, atol=ATOL, rtol=0)
    entropy = mean_entropy(probabilities, "code")
    code_entropy = tensor(OUTPUTS["entropy_per_classifier"]).mean(0)
    torch.testing.assert_close(entropy, code_entropy, atol=ATOL, rtol=0)
    discrepancy = prediction_discrepancy(probabilities)
    torch.testing.assert_close(discrepancy, tensor(OUTPUTS["l1_discrepancy"]), atol=ATOL, rtol=0)


def test_acquisition_score_matches_get_uncertainty(module):
    """The selector's E(u) (float32 sigmoids) = the code's get_uncertainty."""
    _, _, x_u = batches()
    scores = module.unlabeled_entropy(x_u).double()
    torch.testing.assert_close(scores, tensor(OUTPUTS["uncertainty"]), atol=ATOL, rtol=0)


def test_labeled_bce_matches_train_init(module):
    """Eq. 1: each head's BCE summed over classes, /batch, summed over the two heads."""
    x_l, y_l, _ = batches()
    loss, _ = module.labeled_loss(x_l, y_l)
    assert loss.item() == pytest.approx(OUTPUTS["labeled_loss"], abs=ATOL)


def test_agreement_loss_matches_train_conv(module):
    """mean_i[(1 − σ(E_i − τ))/128 · La'_i] of the code's agreement step."""
    _, _, x_u = batches()
    loss, _ = module.agreement_loss(x_u)
    expected = OUTPUTS["agreement_loss"]
    assert loss.item() == pytest.approx(expected, abs=ATOL)
    assert loss.item() == pytest.approx(expected, rel=RTOL_SMALL)


def test_discrepancy_step_matches_train_f(module):
    """The code's f-step loss = labeled BCE + mean_i[σ(E_i − τ)/128 · (1 − La'_i)]."""
    x_l, y_l, x_u = batches()
    discrepancy, bce = module.discrepancy_loss(x_u, x_l, y_l)
    total = OUTPUTS["discrepancy_step_loss"]
    assert (discrepancy + bce).item() == pytest.approx(total, abs=ATOL)
    assert bce.item() == pytest.approx(OUTPUTS["labeled_loss"], abs=ATOL)
    weighted = total - OUTPUTS["labeled_loss"]
    assert discrepancy.item() == pytest.approx(weighted, rel=RTOL_SMALL)
