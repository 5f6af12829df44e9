"""Golden test: BADGE's gradient embedding and k-means++ seeding against the authors' code
(JordanAsh/badge `Strategy.get_grad_embedding`, `BadgeSampling.query` / `init_centers`;
fixture made by make_badge.py).

The code samples each pick after the first from D²/ΣD² with NumPy's generator, ours with
torch's: the seeding test replays the code's draws and checks, at every step, that ours would
draw from the same distribution."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import al.methods.badge as badge
from al.methods.badge import gradient_factors, kmeans_pp_seeds
from al.methods.selector import TieBreak

FIXTURE = json.loads(Path(__file__).with_name("badge.json").read_text())
ATOL = 1e-5


class StubBackbone(nn.Module):
    """Returns the fixture's logits and penultimate features for sample ids."""

    def __init__(self, logits: torch.Tensor, features: torch.Tensor) -> None:
        super().__init__()
        self.logits, self.features = logits, features
        self.dropout = nn.Identity()

    def forward(self, ids: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.logits[ids], features=self.features[ids])


def factors() -> tuple[torch.Tensor, torch.Tensor]:
    """(p − onehot(ŷ), h) of every sample, as the selector computes them."""
    inputs = FIXTURE["inputs"]
    logits, features = torch.tensor(inputs["logits"]), torch.tensor(inputs["features"])
    module = SimpleNamespace(backbone=StubBackbone(logits, features))
    with torch.no_grad():
        both = gradient_factors(module, torch.arange(len(logits)))
    classes = logits.shape[1]
    return both[:, :classes], both[:, classes:]


def test_gradient_embedding_is_get_grad_embedding_up_to_sign():
    """(p − onehot(ŷ)) ⊗ h against the code's (onehot(ŷ) − p) ⊗ h, class-major as the code."""
    pminus, hidden = factors()
    ours = (pminus[:, :, None] * hidden[:, None, :]).flatten(1)
    reference = torch.tensor(FIXTURE["gradient_embedding"], dtype=torch.float32)
    torch.testing.assert_close(-ours, reference, atol=ATOL, rtol=0)


def test_seeding_draws_each_pick_from_init_centers_distribution(monkeypatch):
    """First pick: the largest ‖g‖² (deterministic in both). Later picks: at every step our
    D²/ΣD² equals the distribution the code drew from; the code's draw is then replayed."""
    distributions = iter(FIXTURE["pick_distributions"])
    replayed = iter(FIXTURE["picks"][1:])

    def replay(nearest: torch.Tensor, chosen: torch.Tensor, *draw_state) -> int:
        expected = torch.tensor(next(distributions), dtype=torch.float32)
        torch.testing.assert_close(nearest / nearest.sum(), expected, atol=ATOL, rtol=0)
        return next(replayed)

    monkeypatch.setattr(badge, "next_center", replay)
    pminus, hidden = factors()
    picks, scores = kmeans_pp_seeds(
        pminus, hidden, FIXTURE["inputs"]["picks"], torch.Generator().manual_seed(0), TieBreak(0)
    )
    assert picks.tolist() == FIXTURE["picks"]
    reference_scores = torch.tensor(FIXTURE["pick_squared_distances"], dtype=torch.float32)
    torch.testing.assert_close(scores, reference_scores, atol=ATOL, rtol=0)
    with pytest.raises(StopIteration):
        next(distributions)  # every recorded step was checked


def test_first_pick_is_the_codes_without_replay():
    """The deterministic part alone: our first center is the code's."""
    pminus, hidden = factors()
    picks, _ = kmeans_pp_seeds(pminus, hidden, 1, torch.Generator().manual_seed(0), TieBreak(0))
    assert picks.tolist() == FIXTURE["picks"][:1]
