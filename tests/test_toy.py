"""TA-VAAL's toy experiment: known-answer statistics and the figure from a short run."""

from __future__ import annotations

import numpy as np
import pytest

from al.toy import boundary_points, grid_over, main, pick_statistics


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
    main(["--out", str(tmp_path), "--stage", "1", "trainer.max_epochs=5"])
    printed = capsys.readouterr().out
    for method in ("learning_loss", "vaal", "ta_vaal"):
        line = next(line for line in printed.splitlines() if f"{method}: distance" in line)
        distance, spread = (float(w) for w in line.split()[2::2])
        assert 0 <= distance < 3 and 0 < spread < 5
        picked_csv = (tmp_path / method / "picks" / "stage_001.csv").read_text().splitlines()
        assert len(picked_csv) == 11  # main() checks the figure's picks equal these
    assert (tmp_path / "fig1.png").stat().st_size > 10_000
