"""The task-module base: every method's module derives from it, keeps its backbone, declares
the capabilities the loop reads, and treats `lpm_on_all_methods` one way."""

from __future__ import annotations

import pytest
import torch

from al.build import build_module
from al.errors import ConfigError
from al.methods.module import ManualSteps, TaskModule
from al.methods.qbc import CommitteeModule

from conftest import FASTER, compose_config, options

CAPABILITIES = {
    "tasks": tuple,
    "trains_loss_prediction": bool,
    "labeled_sample_ids": bool,
    "stores_synthetic": bool,
    "single_device": bool,
}


@pytest.mark.parametrize("method", options("method"))
def test_every_module_is_a_task_module_with_its_backbone_and_capabilities(method):
    module = build_module(compose_config(f"method={method}", *FASTER.get(method, [])), 10)
    assert isinstance(module, TaskModule)
    assert isinstance(module.backbone, torch.nn.Module)
    for name, kind in CAPABILITIES.items():
        assert isinstance(getattr(type(module), name), kind), name
    assert module.unlabeled_training is None or module.unlabeled_training.epoch in (
        "longest",
        "shortest",
    )
    assert module(torch.zeros(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("method", options("method"))
def test_lpm_on_all_methods_is_trained_or_refused_never_ignored(method):
    cfg = compose_config(f"method={method}", "lpm_on_all_methods=true", *FASTER.get(method, []))
    try:
        module = build_module(cfg, 10)
    except ConfigError as error:
        assert str(error).endswith("set lpm_on_all_methods=false")
        assert not type(build_module(compose_config(f"method={method}"), 10)).trains_loss_prediction
    else:
        assert module.loss_predictor is not None


def test_the_committee_s_backbone_is_member_zero_and_older_weights_load():
    module = build_module(compose_config("method=qbc", "method.module.members=2"), 10)
    assert module.backbone is module.members[0]
    older = {k: v for k, v in module.state_dict().items() if not k.startswith("backbone.")}
    older = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v for k, v in older.items()}
    module.load_state_dict(older)
    assert all((p == 0.5).all() for p in module.backbone.parameters())


def test_manual_steps_step_every_scheduler_once_per_epoch():
    class Stepped(ManualSteps, TaskModule):
        def __init__(self, automatic: bool) -> None:
            super().__init__(torch.nn.Linear(1, 1), torch.optim.SGD, 2)
            self.automatic_optimization = automatic
            optimizer = torch.optim.SGD(self.parameters(), lr=1.0)
            self.schedulers = [torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.5)]

        def lr_schedulers(self):
            return self.schedulers

    manual, automatic = Stepped(automatic=False), Stepped(automatic=True)
    for module in (manual, automatic):
        for _ in range(2):
            module.schedulers[0].optimizer.step()  # an epoch's updates, then its end
            module.on_train_epoch_end()
    assert manual.schedulers[0].get_last_lr() == [0.25]
    assert automatic.schedulers[0].get_last_lr() == [1.0]


def test_a_module_without_a_loss_prediction_module_refuses_the_switch_in_one_line():
    with pytest.raises(ConfigError, match=r"^CommitteeModule has its own training regime"):
        CommitteeModule(
            torch.nn.Linear(1, 1), torch.optim.SGD, 2, members=1, train_loss_prediction=True
        )
