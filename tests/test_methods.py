"""Every method runs two stages end to end on digits (CNN) and moons (MLP); a method that
generates images refuses vectors before anything is written."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from al.build import build_data, build_module
from al.data import datamodule_for
from al.errors import ConfigError, build
from al.loop import run
from al.tasks import Classification

from conftest import FASTER, compose_config, options

IMAGES_ONLY = {"bgadl"}


@pytest.mark.parametrize("method", options("method"))
@pytest.mark.parametrize("setting", [("digits", "cnn"), ("moons", "mlp")])
def test_two_stages_end_to_end(tiny_config, tmp_path, method, setting):
    dataset, model = setting
    cfg = tiny_config(
        f"method={method}",
        f"dataset={dataset}",
        f"model={model}",
        f"budget={dataset}",
        "budget.stages=2",
        *FASTER.get(method, []),
    )
    if dataset == "moons" and method in IMAGES_ONLY:
        with pytest.raises(ConfigError, match="generates images"):
            run(cfg, tmp_path)
        assert list(tmp_path.iterdir()) == []
        return
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert all(sum(r["pick_class_counts"]) == 10 for r in records)


def test_learning_loss_on_resnet18_logs_its_pair_loss(tiny_config, tmp_path):
    cfg = tiny_config(
        "method=learning_loss_v2",
        "model=resnet18",
        "logger=csv",
        "budget.stages=2",
        "trainer.max_epochs=2",
    )
    run(cfg, tmp_path)
    header = (tmp_path / "train_metrics.csv").read_text().splitlines()[0]
    assert "train/pair" in header and "train/ce" in header


@pytest.mark.parametrize("method", ["random", "entropy", "coreset", "bald"])
def test_lpm_on_all_methods_reproduces_the_ta_vaal_code(method):
    plain = compose_config(f"method={method}")
    assert build_module(plain, 10).loss_predictor is None
    buggy = compose_config(
        f"method={method}", "lpm_on_all_methods=true", "loss_prediction.switch_epoch=10"
    )
    module = build_module(buggy, 10)
    assert module.loss_predictor is not None and module.pair_loss == "hinge"
    x, y = next(iter(torch.utils.data.DataLoader(build_data(buggy.dataset).test, batch_size=8)))
    assert set(module.training_losses(module.backbone(x), y, epoch=0, max_epochs=20)) == {
        "ce",
        "pair",
    }


@pytest.mark.slow
@pytest.mark.parametrize("model", ["resnet18", "vgg16"])
@pytest.mark.parametrize("method", ["bald", "coreset", "learning_loss"])
def test_paper_backbones_run_two_stages_on_digits(tiny_config, tmp_path, method, model):
    cfg = tiny_config(
        f"method={method}",
        f"model={model}",
        "budget.stages=2",
        "trainer.max_epochs=1",
        *FASTER.get(method, []),
    )
    records = run(cfg, tmp_path)
    assert [r["n_labeled"] for r in records] == [20, 30]


def test_train_metrics_are_the_epochs_sample_weighted_means():
    """With lr = 0 the model is fixed, so the logged epoch means must equal the loss and
    accuracy over all labeled samples at once; 20 samples in batches of 8, 8 and 4 make a
    plain mean of batch means differ."""
    cfg = compose_config("dataset=moons", "model=mlp", "optimizer.lr=0", "trainer.max_epochs=1")
    cfg.loader.batch_size = 8
    data = build_data(cfg.dataset)
    labeled = list(range(0, 400, 20))
    datamodule = datamodule_for(data, labeled, **cfg.loader)
    module = build_module(cfg, data.num_classes)
    trainer = build(cfg.trainer, callbacks=[])
    trainer.fit(module, datamodule)
    x, y = next(iter(DataLoader(data.pool.labeled(labeled, data.pool_targets[labeled]), 20)))
    module.train()
    with torch.no_grad():
        logits = module(x)
    logged = trainer.callback_metrics
    assert float(logged["train/ce"]) == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)
    assert float(logged["train/loss"]) == pytest.approx(float(logged["train/ce"]))
    assert float(logged["train/acc"]) == float((logits.argmax(1) == y).float().mean())


def test_prediction_hits_count_what_the_train_metric_measures():
    torch.manual_seed(0)
    logits, y = torch.randn(50, 4), torch.randint(0, 4, (50,))
    task = Classification()
    correct, counted = task.prediction_hits(logits, y).tolist()
    assert counted == 50
    assert correct / counted == pytest.approx(float(task.train_metric(4)(logits, y)))


EPOCH_TERMS = {
    "m2_vaal": {"train/loss", "train/acc", "train/discriminator"},
    "qbc": {"train/loss", "train/acc", "train/member_loss/0", "train/member_loss/1"},
    "ads": {"train/loss", "train/acc", "train/agreement", "train/discrepancy"},
    "bgadl": {"train/loss", "train/acc", "train/encoder", "train/generator"},
}


@pytest.mark.parametrize("method", sorted(EPOCH_TERMS))
def test_modules_with_their_own_step_log_one_row_of_means_per_epoch(tiny_config, tmp_path, method):
    # bgadl's stage 0 trains its classifier alone (first_stage: classifier_only, the code's)
    joint = ["method.module.first_stage=joint"] if method == "bgadl" else []
    cfg = tiny_config(f"method={method}", "logger=csv", "budget.stages=1", *FASTER[method], *joint)
    cfg.trainer.max_epochs = 2
    run(cfg, tmp_path)
    rows = (tmp_path / "train_metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert EPOCH_TERMS[method] <= set(header)
    assert len(rows) == 1 + 2, "one row per epoch"
    accuracy = [float(row.split(",")[header.index("train/acc")]) for row in rows[1:]]
    assert all(0 <= value <= 1 for value in accuracy)
