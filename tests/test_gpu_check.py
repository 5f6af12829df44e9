"""`make gpu-check`: which parts run where, the one-line summaries, and the CPU dry run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from al.gpu_check import FIT_TOLERANCE, PARTS, PICK_METHODS, Plan, agrees, main, summary


def test_a_machine_without_cuda_is_a_dry_run_on_two_cpu_ranks():
    plan = Plan(0)
    assert plan.dry and plan.ranks == 2 and plan.ddp_skip() is None
    bench = PARTS[0].command(plan, Path("b.json"))
    assert bench[-9:] == [
        "--quick",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--repeats",
        "1",
        "--out",
        "b.json",
    ]


def test_one_gpu_skips_ddp_and_sharding_with_the_reason_and_two_run_them():
    one, two = Plan(1), Plan(2)
    assert one.ddp_skip() == "1 visible GPU: DDP and sharding need 2 or more"
    assert two.ddp_skip() is None and two.ranks == 2
    ddp = PARTS[1].command(two, Path("x/ddp_run.json"))
    assert "trainer.accelerator=gpu" in ddp and "trainer.devices=2" in ddp
    assert "--device" in PARTS[0].command(one, Path("b.json"))


def test_summaries_name_what_each_part_found():
    picks = {"entropy": {"equal": True}, "bald": {"equal": False}}
    assert summary(PARTS[2], {"output": picks}) == "entropy: equal, bald: DIFFERENT"
    ddp = {"output": {"stages": 2, "last": {"test/acc": 0.5}}}
    assert summary(PARTS[1], ddp) == "2 stages, test acc 0.500"
    assert summary(PARTS[1], {"reason": "over its 90 s"}) == "over its 90 s"


def test_a_fitted_method_agrees_to_the_tolerance_and_the_others_by_equal_picks():
    assert agrees("vaal", {"equal": False, "max_score_difference": FIT_TOLERANCE})
    assert not agrees("vaal", {"equal": True, "max_score_difference": 2 * FIT_TOLERANCE})
    assert not agrees("entropy", {"equal": False, "max_score_difference": 0.0})


@pytest.mark.slow
def test_the_dry_run_checks_every_part_and_writes_its_report(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    report = main(["--out", str(tmp_path / "gpu_check.json")])
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written == report and report["dry"]
    assert {name: part["status"] for name, part in report["parts"].items()} == {
        "bench": "ok",
        "ddp_run": "ok",
        "sharded_picks": "ok",
    }
    rows = report["parts"]["sharded_picks"]["output"]
    assert set(rows) == set(PICK_METHODS) and all(agrees(m, row) for m, row in rows.items())
    suites = {figure["suite"] for figure in report["parts"]["bench"]["output"]["figures"]}
    assert suites == {"overhead", "loader", "selection", "stage"}
    assert report["parts"]["ddp_run"]["output"]["stages"] == 2
