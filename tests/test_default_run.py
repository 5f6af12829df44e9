"""The README's `make train`: the default experiment, end to end (minutes: marked slow)."""

from __future__ import annotations

import pytest

from conftest import read_results
from test_cli import train


@pytest.mark.slow
def test_default_experiment_learns_digits(tmp_path):
    done = train(tmp_path, "logger=csv")
    records = read_results(tmp_path)
    assert len(records) >= 8
    n_labeled = [r["n_labeled"] for r in records]
    assert n_labeled == sorted(set(n_labeled)) and n_labeled[0] == 50
    assert records[-1]["test/acc"] > 0.9  # chance is 0.1
    assert records[-1]["test/acc"] > records[0]["test/acc"]
    assert "entropy on digits, seed 0" in done.stdout
