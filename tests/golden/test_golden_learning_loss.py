"""Golden test: Learning Loss's hinge pair loss (Yoo & Kweon Eq. 2) against the authors'
`LossPredLoss` (Mephisto405/Learning-Loss-for-Active-Learning main.py; fixture made by
make_learning_loss.py): values and gradients, with an equal-loss pair among the batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from al.models.loss_prediction import hinge_pair_loss

FIXTURE = json.loads(Path(__file__).with_name("learning_loss.json").read_text())
ATOL = 1e-5


def test_fixture_holds_a_pair_of_equal_true_losses():
    """The batch of 8 pairs samples 1 and 6 (batch flipped against itself) with equal losses."""
    target = next(b["target"] for b in FIXTURE["batches"] if len(b["target"]) == 8)
    assert target[1] == target[-2]


@pytest.mark.parametrize(
    "batch", FIXTURE["batches"], ids=lambda b: f"{len(b['target'])}-margin{b['margin']}"
)
def test_hinge_pair_loss_and_gradient_match_loss_pred_loss(batch):
    predicted = torch.tensor(batch["predicted"], requires_grad=True)
    loss = hinge_pair_loss(predicted, torch.tensor(batch["target"]), margin=batch["margin"])
    loss.backward()
    assert loss.item() == pytest.approx(batch["loss"], abs=ATOL)
    torch.testing.assert_close(predicted.grad, torch.tensor(batch["gradient"]), atol=ATOL, rtol=0)
