"""The task contract: a small core every task implements, and the extensions single methods
need, asked for at start-up by the method that needs them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from al.errors import ConfigError
from al.loop import labeled_sample_labels
from al.methods.classifier import ClassifierModule
from al.methods.dast_al import EpmcmSelector
from al.methods.m2_latent_weighted import LatentWeightedSelector
from al.methods.sraal import SraalSelector
from al.models.mlp import MLP
from al.tasks import Classification, Task
from al.tasks.extensions import IsdaTerms, LogScoreReduction, SampleLabels
from al.tasks.segmentation import Segmentation

CORE = {
    "loss",
    "sample_losses",
    "test_metrics",
    "train_metric",
    "prediction_hits",
    "table_columns",
    "class_counts",
    "pick_labels",
    "stratify_labels",
    "reduce_scores",
}
# Classification's core alone: a task that offers no extension.
CoreOnly = type(
    "CoreOnly",
    (Task,),
    {
        name: getattr(Classification, name)
        for name in [*CORE, "name", "primary_metric", "primary_label", "one_label_per_sample"]
    },
)


def public_methods(cls: type) -> set[str]:
    return {name for name, value in vars(cls).items() if callable(value) and name[0] != "_"}


def test_the_core_contract_holds_what_every_task_needs_and_nothing_else():
    assert public_methods(Task) == CORE


@pytest.mark.parametrize("task", [Classification(), Segmentation()])
def test_both_tasks_offer_every_extension(task):
    assert isinstance(task, SampleLabels | IsdaTerms | LogScoreReduction)
    assert all(isinstance(task, kind) for kind in (SampleLabels, IsdaTerms, LogScoreReduction))


def test_a_method_needing_an_extension_refuses_a_task_without_it_in_one_line():
    with pytest.raises(ConfigError, match=r"^isda.enabled=true needs the task's IsdaTerms"):
        ClassifierModule(MLP([2], 3), torch.optim.Adam, 3, isda={"enabled": True}, task=CoreOnly())
    module = ClassifierModule(MLP([2], 3), torch.optim.Adam, 3, task=CoreOnly())
    with pytest.raises(ConfigError, match=r"^EPMCM needs the task's LogScoreReduction"):
        EpmcmSelector().check_module(module)
    with pytest.raises(ConfigError, match=r"^SRAAL's classifier head needs the task's Sample"):
        SraalSelector([2], 3).check_module(module)
    with pytest.raises(ConfigError, match="use the M2 module"):
        LatentWeightedSelector().check_module(module)


def test_the_loop_hands_selectors_sample_labels_only_where_the_task_offers_them():
    class Data:
        pool_targets = np.array([2, 0, 1, 1])
        num_classes = 3
        task = Classification()

    assert labeled_sample_labels(Data(), np.array([0, 3])).tolist() == [2, 1]
    Data.task = CoreOnly()
    assert labeled_sample_labels(Data(), np.array([0, 3])) is None
