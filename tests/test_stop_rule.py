"""The stopping rule (conf/stop/) and the callbacks group (conf/callbacks/): config objects the
loop applies to every stage, refused at start-up when the method cannot feed them."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from al.errors import ConfigError
from al.loop import run
from al.stop import MetricNear
from al.store import config_differences

from conftest import M2_SMALL, compose_config, read_results


def test_metric_near_fires_within_its_tolerance_only():
    rule = MetricNear(metric="discriminator/acc", target=0.5, within=0.05)
    assert rule.reason({"discriminator/acc": 0.56}) is None
    assert rule.reason({"discriminator/acc": 0.54}) == (
        "discriminator/acc 0.540 is within 0.05 of 0.5 (stop rule)"
    )
    assert rule.reason({"discriminator/acc": 0.46}) is not None
    assert rule.reason({"discriminator/acc": 0.449}) is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"within": -0.1}, r"stop.within=-0.1 must be ≥ 0"),
        ({"within": "close"}, r"stop.within='close' must be a number"),
        ({"target": True}, r"stop.target=True must be a number"),
    ],
)
def test_bad_rule_values_are_refused(options, message):
    values = {"metric": "discriminator/acc", "target": 0.5, "within": 0.05, **options}
    with pytest.raises(ConfigError, match=message):
        MetricNear(**values)


def test_a_run_stops_at_chance_keeps_its_results_and_can_be_extended(tiny_config, tmp_path):
    """Any discriminator accuracy in (0.01, 0.99) is within 0.49 of chance: the run ends after
    stage 0 with the reason recorded; rerun, it stays stopped; without the rule it goes on."""
    overrides = ["method=m2_vaal", "trainer.max_epochs=1", *M2_SMALL, "budget.stages=3"]
    rule = ["stop=discriminator_chance", "stop.within=0.49"]
    first = run(tiny_config(*overrides, *rule), tmp_path)
    assert len(first) == 1 and "within 0.49 of 0.5" in first[0]["stopped"]
    assert 0.01 < first[0]["discriminator/acc"] < 0.99
    assert {"discriminator/loss", "discriminator/acc_labeled"} <= set(first[0])
    assert run(tiny_config(*overrides, *rule), tmp_path) == first
    extended = run(tiny_config(*overrides), tmp_path)
    assert [r["n_labeled"] for r in extended] == [20, 30, 40]
    assert read_results(tmp_path)[0] == first[0]


def test_the_rule_needs_a_method_that_reports_its_metric(tiny_config, tmp_path):
    cfg = tiny_config("method=entropy", "stop=discriminator_chance")
    with pytest.raises(
        ConfigError,
        match=r"^stop.metric=discriminator/acc is not a metric method=entropy reports "
        r"\(it reports: none\): choose stop=none",
    ):
        run(cfg, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_run_saved_before_stop_callbacks_and_paths_existed_resumes():
    """Its config held the budget's stopping keys and no `stop`, `callbacks` or `paths`; the
    dataset's resolved root is still compared."""
    current = compose_config("dataset=mnist")
    saved = OmegaConf.to_container(current, resolve=True)
    saved["budget"] |= {"stop_when_discriminator_chance": False, "chance_tolerance": 0.05}
    for key in ("stop", "callbacks", "paths"):
        del saved[key]
    assert config_differences(OmegaConf.create(saved), current) == []
    saved["dataset"]["root"] = "elsewhere"
    assert config_differences(OmegaConf.create(saved), current) == [
        "dataset.root: 'elsewhere' → 'data'"
    ]


def test_a_configured_callback_applies_to_every_stage_s_trainer(tiny_config, tmp_path):
    """EarlyStopping that stops at any validation accuracy ends each stage after one epoch."""
    records = run(
        tiny_config(
            "callbacks=early_stopping",
            "+callbacks.early_stopping.stopping_threshold=0.0",
            "eval_model=best_val",
            "budget.stages=2",
        ),
        tmp_path,
    )
    assert [record["epochs"] for record in records] == [1, 1]
