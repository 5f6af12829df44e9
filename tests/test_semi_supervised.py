"""What the M2 methods added to the loop for every method: the unlabeled training loader, the
class-restricted initial pool, selector stage metrics and the discriminator stopping rule."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rich.console import Console

from al.budget import Budget
from al.build import build_data
from al.data import UnlabeledTraining, datamodule_for
from al.errors import ConfigError
from al.initial import KCenterSettings, initial_indices
from al.pool import Pool
from al.results import print_pick_classes

from conftest import read_results, train_command

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def stage_datamodule(tiny_config, unlabeled: UnlabeledTraining | None):
    cfg = tiny_config()
    data = build_data(cfg.dataset)
    pool = Pool.with_initial(len(data.pool_targets), 40, seed=0)
    wanted = None if unlabeled is None else (pool.unlabeled_indices, unlabeled)
    return datamodule_for(data, pool.labeled_indices, wanted, batch_size=16, eval_batch_size=64)


def test_a_module_that_asks_gets_labeled_and_unlabeled_batches_without_labels(tiny_config):
    datamodule = stage_datamodule(tiny_config, UnlabeledTraining(batch_size=100))
    loader = datamodule.train_dataloader()
    batches = list(iter(loader))
    unlabeled_seen = torch.cat([batch["unlabeled"][1] for batch, _, _ in batches])
    labeled_seen = [batch["labeled"] for batch, _, _ in batches]
    # one epoch (`longest`) is one pass over the 1,257 unlabeled samples, labels cycling
    assert sorted(unlabeled_seen.tolist()) == datamodule.unlabeled_indices.tolist()
    assert len(batches) == 13 and datamodule.unlabeled_count == 1257
    x, indices = batches[0][0]["unlabeled"]
    assert x.shape == (100, 1, 8, 8) and indices.dtype == torch.int64
    assert all(len(pair) == 2 and pair[1].max() < 10 for pair in labeled_seen)


def test_equal_shares_and_the_shortest_epoch(tiny_config):
    """batch_size None: as many unlabeled batches as labeled ones (40/16 → 3 of 419);
    `shortest`: an epoch ends with the shorter loader (3 labeled batches)."""
    equal = stage_datamodule(tiny_config, UnlabeledTraining(batch_size=None))
    batches = [batch for batch, _, _ in iter(equal.train_dataloader())]
    assert [len(b["unlabeled"][1]) for b in batches] == [419, 419, 419]
    short = stage_datamodule(tiny_config, UnlabeledTraining(batch_size=64, epoch="shortest"))
    assert len(list(iter(short.train_dataloader()))) == 3


def test_modules_that_do_not_ask_get_the_labeled_loader_alone(tiny_config):
    datamodule = stage_datamodule(tiny_config, None)
    x, _ = next(iter(datamodule.train_dataloader()))
    assert x.shape == (16, 1, 8, 8) and datamodule.unlabeled_count == 0


def test_a_labeled_view_replaces_the_datasets_augmentation_on_the_device(tiny_config):
    """`labeled_view`: labeled inputs served with test-time transforms, then (here) negated
    on the device: every served image is 1 − the pixels of one of the 40 labeled samples."""
    negate = UnlabeledTraining(batch_size=64, labeled_view=lambda pixels, _: 1 - pixels)
    datamodule = stage_datamodule(tiny_config, negate)
    device = SimpleNamespace(root_device=torch.device("cpu"))
    datamodule.trainer = SimpleNamespace(training=True, strategy=device)
    batch, _, _ = next(iter(datamodule.train_dataloader()))
    served, _ = datamodule.on_after_batch_transfer(batch, 0)["labeled"]
    stats = datamodule.pool.pixel_stats
    labeled = datamodule.pool.labeled(datamodule.labeled_indices, datamodule.labeled_targets)
    test_time = torch.stack([labeled[i][0] for i in range(len(labeled))])
    distances = torch.cdist(
        (1 - stats.to_pixels(served)).flatten(1), stats.to_pixels(test_time).flatten(1)
    )
    assert len(served) == 16 and distances.min(dim=1).values.max() < 1e-5


def test_initial_classes_draw_an_equal_share_of_those_classes_only(tiny_config):
    data = build_data(tiny_config().dataset)
    picks = initial_indices("random", data, 50, 3, KCenterSettings(), classes=(2, 4, 7))
    counts = np.bincount(data.pool_targets[picks], minlength=10)
    assert counts.tolist() == [0, 0, 16, 0, 17, 0, 0, 17, 0, 0]
    assert len(set(picks.tolist())) == 50
    again = initial_indices("random", data, 50, 3, KCenterSettings(), classes=(2, 4, 7))
    assert np.array_equal(picks, again)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"initial_classes": []}, r"budget.initial_classes=\[\] must be a non-empty list"),
        ({"initial_classes": [1, 1]}, "lists a class twice"),
        ({"initial_classes": [1], "initial_strategy": "kcenter"}, "applies to .*=random"),
    ],
)
def test_bad_class_options_are_refused(options, message):
    with pytest.raises(ConfigError, match=message):
        Budget(initial=20, query=10, stages=2, **options)


def test_initial_classes_must_exist_and_hold_their_share():
    targets = np.array([0] * 5 + [1] * 30)
    budget = Budget(initial=20, query=5, stages=1, initial_classes=[0, 1])
    with pytest.raises(ConfigError, match=r"needs 10 labels of class 0.*the pool has 5"):
        budget.check_classes_fit(targets, 2)
    with pytest.raises(ConfigError, match=r"classes 0..1, not \[3\]"):
        Budget(initial=2, query=5, stages=1, initial_classes=[3]).check_classes_fit(targets, 2)


def test_the_pick_table_names_the_classes():
    records = [
        {"stage": 0, "class_counts": [2, 0, 1], "pick_class_counts": [0, 3, 0]},
        {"stage": 1, "class_counts": [2, 3, 1], "pick_class_counts": [1, 1, 1]},
    ]
    console = Console(record=True, width=100)
    print_pick_classes(records, ["Pullover", "Coat", "Sneaker"], console=console)
    text = console.export_text().replace("┃", "│")
    lines = [line.split("│")[1:-1] for line in text.splitlines() if "│" in line]
    rows = [[cell.strip() for cell in line] for line in lines]
    assert rows[0] == ["picks", "Pullover", "Coat", "Sneaker"]
    assert rows[1:] == [
        ["initial", "2", "0", "1"],
        ["stage 0", "0", "3", "0"],
        ["stage 1", "1", "1", "1"],
    ]


@pytest.mark.slow
@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="needs the real Fashion-MNIST: apt-get install dataset-fashion-mnist",
)
def test_the_cold_start_on_fashion_mnist_finds_classes_it_was_not_given(tmp_path):
    """The slides' cold start (classes 2, 4, 7 only), CPU-sized, three stages: the picks reach
    classes outside the initial three, and the end prints their class table."""
    result = train_command(
        tmp_path / "run",
        "+experiment=m2_vaal_fmnist_cold_cpu",
        f"dataset.root={tmp_path / 'data'}",
        "stop=none",
        # back from the test helper's tiny budget to the experiment's
        "budget.initial=500",
        "budget.query=64",
        "budget.stages=3",
        "trainer.max_epochs=2",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = read_results(tmp_path / "run")
    assert [r["n_labeled"] for r in records] == [500, 564, 628]
    initial = np.array(records[0]["class_counts"])
    assert initial.tolist() == [0, 0, 166, 0, 167, 0, 0, 167, 0, 0]
    picks = np.sum([r["pick_class_counts"] for r in records], axis=0)
    assert picks[[0, 1, 3, 5, 6, 8, 9]].sum() > 0
    assert "labels per class" in result.stdout and "Ankle boot" in result.stdout
