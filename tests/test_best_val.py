"""eval_model=best_val: a fixed validation split and the best epoch's weights."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from al.best_weights import BestValidationWeights
from al.data.sklearn_data import digits
from al.errors import ConfigError
from al.loop import run


def test_validation_is_a_fixed_stratified_slice_of_the_pool():
    data = digits()
    held = data.hold_out_validation(0.1)
    assert len(held.pool_targets) + len(held.validation) == len(data.pool_targets)
    validation_labels = np.array([y for _, y in held.validation])
    assert np.bincount(validation_labels).min() >= 12  # every class, ~13 each
    assert np.array_equal(held.pool_targets, data.hold_out_validation(0.1).pool_targets)
    pool_images = torch.stack([x for x, _ in held.pool.unlabeled(range(len(held.pool)))])
    validation_images = torch.stack([x for x, _ in held.validation])
    shared = (pool_images.flatten(1)[:, None] == validation_images.flatten(1)[None]).all(-1)
    assert not shared.any()
    with pytest.raises(ConfigError, match=r"validation_fraction=1\.5"):
        data.hold_out_validation(1.5)


def test_the_best_epochs_weights_are_restored():
    module = torch.nn.Linear(1, 1)
    callback = BestValidationWeights()
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={}, current_epoch=0)
    for epoch, accuracy in enumerate([0.5, 0.8, 0.6]):
        torch.nn.init.constant_(module.weight, float(epoch))
        trainer.current_epoch, trainer.callback_metrics = epoch, {"val/acc": torch.tensor(accuracy)}
        callback.on_validation_epoch_end(trainer, module)
    callback.on_train_end(trainer, module)
    assert module.weight.item() == 1.0 and callback.best_epoch == 1


def test_best_val_run_trains_on_the_reduced_pool(tiny_config, tmp_path):
    records = run(tiny_config("eval_model=best_val", "budget.stages=2"), tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    with pytest.raises(ConfigError, match="eval_model='best'"):
        run(tiny_config("eval_model=best"), tmp_path / "bad")
