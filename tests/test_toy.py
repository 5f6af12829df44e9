"""TA-VAAL's toy experiment: known-answer statistics and the figure from a short run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

import al.methods.vaal
from al.build import build_module
from al.errors import ConfigError
from al.methods.selector import SelectionRequest
from al.methods.ta_vaal import TaVaalSelector
from al.models.loss_prediction import LossPredictionModule
from al.reports.toy import boundary_points, grid_over, main, pick_statistics

from conftest import compose_config

FAST = ["trainer.max_epochs=5", "method.selector.epochs_v=1"]


def test_distance_to_a_straight_boundary_and_spread():
    points = np.array([[-2.0, -2.0], [2.0, 2.0]])
    xs, ys = grid_over(points)
    labels = (xs > 0).astype(int)  # the boundary is the line x = 0
    boundary = boundary_points(xs, ys, labels)
    assert np.abs(boundary[:, 0]).max() < 0.05
    picks = np.array([[1.0, 0.0], [-1.0, 1.0], [0.5, -1.0]])
    distance, spread = pick_statistics(picks, boundary)
    assert distance == pytest.approx((1.0 + 1.0 + 0.5) / 3, abs=0.03)
    expected_spread = np.mean([np.sqrt(5), np.sqrt(1.25), np.sqrt(6.25)])
    assert spread == pytest.approx(expected_spread)


def test_short_run_draws_the_figure_and_prints_the_numbers(tmp_path, capsys):
    short = ["--out", str(tmp_path), "--stage", "1", "--methods"]
    main([*short, "learning_loss", "--", "trainer.max_epochs=5"])
    printed = capsys.readouterr().out
    main([*short, "vaal", "ta_vaal", "--", "trainer.max_epochs=5", "method.selector.epochs_v=5"])
    printed += capsys.readouterr().out
    for method in ("learning_loss", "vaal", "ta_vaal"):
        line = next(line for line in printed.splitlines() if f"{method}: distance" in line)
        distance, spread = (float(w) for w in line.split()[-3::2])
        assert 0 <= distance < 3 and 0 < spread < 5
        picked_csv = (tmp_path / "seed0" / method / "picks" / "stage_001.csv").read_text()
        assert len(picked_csv.splitlines()) == 11  # main() checks the figure's picks equal these
    assert (tmp_path / "seed0" / "fig1.png").stat().st_size > 10_000
    assert (tmp_path / "toy.csv").read_text().splitlines()[0] == "seed,method,distance,spread"


def test_several_seeds_print_mean_and_std(tmp_path, capsys):
    main(
        [
            "--out",
            str(tmp_path),
            "--stage",
            "0",
            "--seeds",
            "0",
            "1",
            "--methods",
            "vaal",
            "--",
            *FAST,
        ]
    )
    printed = capsys.readouterr().out
    rows = (tmp_path / "toy.csv").read_text().splitlines()[1:]
    distances = np.array([float(row.split(",")[2]) for row in rows])
    summary = next(line for line in printed.splitlines() if "±" in line)
    assert summary.split()[1:4] == [f"{distances.mean():.2f}", "±", f"{distances.std():.2f}"]


def linear_layers(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def test_the_toys_ranker_is_one_linear_layer_on_the_mid_layer():
    """TA-VAAL §4.1: "a single layer perceptron was attached to the mid-layer"."""
    cfg = compose_config("+experiment=ta_vaal_moons")
    module = build_module(cfg, cfg.dataset.num_classes)
    [ranker] = linear_layers(module.loss_predictor)
    assert (ranker.in_features, ranker.out_features) == (64, 1)
    x = torch.randn(4, 2)
    stages = module.backbone(x).stages
    assert torch.allclose(module.predicted_loss(x), ranker(stages[1]).squeeze(1))


def test_the_default_module_still_reads_every_stage_through_its_own_layer():
    module = LossPredictionModule([4, 6], hidden=8)
    assert [layer.in_features for layer in linear_layers(module)] == [4, 6, 16]
    with pytest.raises(ConfigError, match=r"loss_prediction.stages=\[2\].*0 … 1"):
        LossPredictionModule([4, 6], stages=[2])


def toy_request() -> SelectionRequest:
    labeled, candidates = torch.randn(20, 2), torch.randn(30, 2)
    return SelectionRequest(
        candidates=[(candidates, torch.arange(20, 50))],
        labeled=[(labeled, torch.arange(20))],
        candidate_indices=torch.arange(20, 50),
        query=10,
        seed=0,
    )


def test_the_toys_discriminator_has_two_linear_layers():
    """TA-VAAL §4.1: "the discriminator comprised of a 2-layer MLP"."""
    cfg = compose_config("+experiment=ta_vaal_moons")
    selector = instantiate(cfg.method.selector)
    built = {}
    real = al.methods.vaal.Discriminator

    def spy(*args, **kwargs):
        built["discriminator"] = real(*args, **kwargs)
        return built["discriminator"]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(al.methods.vaal, "Discriminator", spy)
        patch.setattr(selector, "epochs_v", 1)
        selector.select(build_module(cfg, cfg.dataset.num_classes), toy_request())
    widths = [(m.in_features, m.out_features) for m in linear_layers(built["discriminator"])]
    assert widths == [(cfg.method.selector.latent_dim + 1, 32), (32, 1)]
    with pytest.raises(ConfigError, match="discriminator_layers=1"):
        TaVaalSelector(input_shape=[2], discriminator_layers=1)
