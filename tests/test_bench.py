"""`python -m al.bench`: every suite runs at toy size and writes a well-formed bench.json; the
k-center baselines Core-set is measured against pick what Core-set picks."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from al.bench import selection
from al.bench.__main__ import SUITES, main
from al.bench.kcenter import exact_nearest, floor_k_center, reference_k_center
from al.bench.pools import in_memory_inputs
from al.bench.settings import Settings
from al.methods.coreset import k_center_greedy
from al.methods.selector import TieBreak

STATS = {"min", "median", "max"}
MACHINE = {"platform", "cpu_count", "torch", "torch_threads", "device"}


@pytest.mark.slow
def test_every_suite_runs_quick_and_writes_ratios_with_spreads(tmp_path, monkeypatch):
    out = tmp_path / "bench.json"
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", ""))
    threads = torch.get_num_threads()
    try:  # one thread: quickest on a shared 2-core machine
        main(["--quick", "--threads", "1", "--device", "cpu", "--out", str(out)])
    finally:
        torch.set_num_threads(threads)
    document = json.loads(out.read_text())
    assert set(document["machine"]) >= MACHINE and document["machine"]["torch_threads"] == 1
    figures = document["figures"]
    assert {figure["suite"] for figure in figures} == set(SUITES)
    for figure in figures:
        assert set(figure["ratio"]) == STATS, figure["name"]
        assert 0 < figure["ratio"]["min"] <= figure["ratio"]["median"] <= figure["ratio"]["max"]
        assert figure["values"] and figure["baseline"] and figure["runs"] >= 1
        for values in figure["values"].values():
            assert set(values) == STATS and values["min"] <= values["median"] <= values["max"]
    names = " ".join(figure["name"] for figure in figures)
    assert "Core-set / floor" in names and "reference / Core-set" in names
    assert all("picks identical" in f["note"] for f in figures if "Core-set / floor" in f["name"])


def test_batchbald_is_benched_at_10_and_100_classes(monkeypatch):
    """Its 100-class row runs a 100-class module (the class count is the model's config, not
    only build_module's argument), named and noted as such."""
    modules = []
    figure_of = selection.selector_figure

    def spy(settings, module, *args, **kwargs):
        modules.append(module)
        return figure_of(settings, module, *args, **kwargs)

    monkeypatch.setattr(selection, "selector_figure", spy)
    settings = Settings(quick=True, repeats=1, device=torch.device("cpu"), threads=1)
    figures = [
        selection.method_figure(settings, "batchbald", in_memory_inputs(40), 20, 3, classes)
        for classes in selection.METHOD_CLASSES["batchbald"]
    ]
    assert [module.backbone.classifier.out_features for module in modules] == [10, 100]
    assert [figure.name for figure in figures] == [
        "method=batchbald: 20 candidates, 3 picks",
        "method=batchbald (100 classes): 20 candidates, 3 picks",
    ]
    assert figures[1].note == "model.num_classes=100 model.dropout=0.5"


def constructed_case() -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Distances 5, 1, 10, 5 to the one center: 10 first; then 5 and 5 tie (the first wins),
    the far one next; the near one last."""
    centers = torch.tensor([[0.0, 0.0]])
    candidates = torch.tensor([[3.0, 4.0], [0.0, 1.0], [6.0, 8.0], [-3.0, -4.0]])
    return candidates, centers, [2, 0, 3, 1]


def test_the_baselines_and_coreset_pick_the_known_answer():
    candidates, centers, expected = constructed_case()
    picks, _ = k_center_greedy(candidates, centers, 4, TieBreak(0))
    assert picks.tolist() == expected
    assert floor_k_center(candidates, exact_nearest(candidates, centers), 4) == expected
    assert reference_k_center(candidates.numpy(), centers.numpy(), 4) == expected


def test_the_baselines_pick_what_coreset_picks_on_a_line():
    centers = torch.tensor([[0.0]])
    candidates = torch.tensor([[1.0], [2.0], [10.0], [11.0]])
    expected = k_center_greedy(candidates, centers, 3, TieBreak(0))[0].tolist()
    assert expected == [3, 1, 0]
    assert floor_k_center(candidates, exact_nearest(candidates, centers), 3) == expected
    assert reference_k_center(candidates.numpy(), centers.numpy(), 3) == expected


def test_the_baselines_agree_with_coreset_on_random_features():
    generator = torch.Generator().manual_seed(0)
    candidates, centers = torch.randn(200, 16, generator=generator), torch.randn(10, 16)
    expected = k_center_greedy(candidates, centers, 20, TieBreak(0), 32)[0].tolist()
    assert floor_k_center(candidates, exact_nearest(candidates, centers), 20) == expected
    host = candidates.numpy().astype(np.float64), centers.numpy().astype(np.float64)
    assert reference_k_center(*host, 20) == expected
