"""`trainer.precision`: bf16 mixed precision reaches the task learner's training and the
networks a selector fits for itself, and every method runs two stages under it on the CPU."""

from __future__ import annotations

import pytest
import torch

from al.build import build_experiment
from al.loop import run
from al.methods.classifier import ClassifierModule
from al.methods.fitting import network_trainer

from conftest import FASTER, TINY, compose_config, options


def test_the_stage_trainer_and_a_selectors_own_trainer_share_the_precision():
    experiment = build_experiment(compose_config(*TINY, "trainer.precision=bf16-mixed"))
    trainer = experiment.make_trainer([])
    assert trainer.precision == "bf16-mixed"
    assert network_trainer(trainer).precision == "bf16-mixed"
    assert network_trainer(experiment.make_trainer([]), distributed=False).precision == "bf16-mixed"


def test_bf16_mixed_autocasts_the_training_step(tmp_path, monkeypatch):
    """The module's forward inside training runs under CPU autocast in bf16: the logits
    the loss sees are bf16."""
    seen = []
    forward = ClassifierModule.training_losses

    def spy(self, out, y, epoch, max_epochs):
        seen.append(out.logits.dtype)
        return forward(self, out, y, epoch, max_epochs)

    monkeypatch.setattr(ClassifierModule, "training_losses", spy)
    overrides = [*TINY, "budget.stages=1", "trainer.max_epochs=1", "trainer.precision=bf16-mixed"]
    run(compose_config(*overrides), tmp_path)
    assert seen and set(seen) == {torch.bfloat16}


@pytest.mark.slow
@pytest.mark.parametrize("method", options("method"))
def test_every_method_runs_two_stages_in_bf16_mixed_precision(method, tmp_path):
    overrides = [*TINY, "budget.stages=2", "trainer.max_epochs=2", "trainer.precision=bf16-mixed"]
    records = run(compose_config(*overrides, f"method={method}", *FASTER.get(method, [])), tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert all(0.0 <= r["test/acc"] <= 1.0 for r in records)
