"""Segmentation as a task: its metrics and losses against hand computations, per-pixel scores
against the classification formulas, the shapes_seg data, and end-to-end runs of every method
that supports it, blind to the masks of unlabeled images."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra.utils import get_class, instantiate

from al.budget import Budget
from al.build import build_data
from al.checks import check_task
from al.data import ALData
from al.data.base import PixelStats
from al.data.segmentation import MaskArray, MaskTargets, SegmentationTransforms
from al.data.shapes import shapes_seg
from al.errors import ConfigError, build
from al.loop import run, run_stage
from al.methods.bald import bald, max_entropy, variation_ratios
from al.methods.dast_al import log_epmcm_bound, pixel_log_bounds
from al.methods.entropy import EntropySelector, entropy
from al.methods.least_confidence import least_confidence
from al.methods.margin import margin
from al.models.backbone import BackboneOutput
from al.pool import Pool
from al.progress import stage_progress
from al.sinks import EpochMetricsCallback, Sink
from al.tasks import supported_tasks
from al.tasks.segmentation import Segmentation

from conftest import FASTER, compose_config, experiment_for, options, read_results

SEG_TINY = [
    "dataset=shapes_seg",
    "logger=none",
    "dataset.build.pool_size=60",
    "dataset.pool_size=60",
    "dataset.build.test_size=20",
    "dataset.build.image_size=16",
    "dataset.input_shape=[3,16,16]",
    "+model.channels=[8,8,16,16]",
    "budget.initial=10",
    "budget.query=5",
    "budget.stages=2",
    "trainer.max_epochs=1",
]
SEG_METHODS = [
    "coreset",
    "dast_al",
    "entropy",
    "learning_loss",
    "learning_loss_v2",
    "least_confidence",
    "margin",
    "maxp",
    "maxp_isda",
    "bald",
    "random",
    "random_isda",
    "sraal",
    "ta_vaal",
    "vaal",
]
TASK = Segmentation(ignore_index=255)


def supports_segmentation(method: str) -> bool:
    cfg = compose_config(f"method={method}")
    parts = (cfg.method.module._target_, cfg.method.selector._target_)
    return all("segmentation" in supported_tasks(get_class(target)) for target in parts)


def test_the_methods_that_support_segmentation():
    assert sorted(m for m in options("method") if supports_segmentation(m)) == sorted(SEG_METHODS)


def test_miou_and_pixel_accuracy_against_a_hand_computed_confusion_matrix():
    """3 classes + one never seen; ignored pixels count nowhere, even where predicted."""
    target = torch.tensor([[[0, 0, 1, 255], [1, 2, 2, 2]]])
    predicted = torch.tensor([[[0, 1, 1, 3], [1, 2, 0, 2]]])
    logits = F.one_hot(predicted, 4).movedim(-1, 1).float() * 5
    metrics = TASK.test_metrics(4)
    values = {key: float(value) for key, value in metrics(logits, target).items()}
    # confusion (rows truth, cols prediction) over the 7 labeled pixels:
    # class 0: tp 1, fn 1 (→1), fp 1 (2→0): IoU 1/3; class 1: tp 2, fp 1 (0→1): 2/3;
    # class 2: tp 2, fn 1: 2/3; class 3: predicted only on an ignored pixel: absent, left out.
    assert values["miou"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3) / 3)
    assert values["pixel_acc"] == pytest.approx(5 / 7)


def test_prediction_hits_count_labeled_pixels_only():
    """The same pixels as the confusion-matrix test: 5 of the 7 labeled ones are right."""
    target = torch.tensor([[[0, 0, 1, 255], [1, 2, 2, 2]]])
    predicted = torch.tensor([[[0, 1, 1, 3], [1, 2, 0, 2]]])
    logits = F.one_hot(predicted, 4).movedim(-1, 1).float()
    assert TASK.prediction_hits(logits, target).tolist() == [5, 7]
    assert float(TASK.train_metric(4)(logits, target)) == pytest.approx(5 / 7)


def test_losses_skip_ignored_pixels():
    logits = torch.tensor([[[[2.0, 0.0]], [[0.0, 1.0]]], [[[0.0, 0.0]], [[0.0, 0.0]]]])
    target = torch.tensor([[[0, 255]], [[1, 0]]])  # (B=2, H=1, W=2)
    first = -math.log(math.exp(2) / (math.exp(2) + 1))
    second = math.log(2)
    assert TASK.sample_losses(logits, target).tolist() == pytest.approx([first, second])
    assert float(TASK.loss(logits, target)) == pytest.approx((first + 2 * second) / 3)
    nothing = torch.full_like(target, 255)
    assert float(TASK.loss(logits, nothing)) == 0.0


def pixel_rows(tensor: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B·H·W, C), pixels as classification samples."""
    return tensor.movedim(1, -1).reshape(-1, tensor.shape[1])


@pytest.mark.parametrize("formula", [entropy, least_confidence, margin])
def test_per_pixel_scores_are_the_mean_of_the_classification_formula(formula):
    torch.manual_seed(0)
    probs = F.softmax(torch.randn(3, 5, 4, 6), dim=1)
    per_image = TASK.reduce_scores(formula(probs))
    expected = formula(pixel_rows(probs)).reshape(3, 24).mean(1)
    torch.testing.assert_close(per_image, expected)


@pytest.mark.parametrize("formula", [bald, max_entropy, variation_ratios])
def test_per_pixel_mc_dropout_scores_match_the_classification_formula(formula):
    torch.manual_seed(1)
    mc = F.softmax(torch.randn(7, 2, 3, 4, 5), dim=2)  # (T, B, C, H, W)
    rows = mc.movedim(2, -1).reshape(7, -1, 3)  # (T, B·H·W, C)
    torch.testing.assert_close(formula(mc).reshape(-1), formula(rows))


def test_epmcm_averages_the_bound_of_every_pixel():
    """DAST-AL §4.2: an image's score is its pixels' mean Ē (here log of it)."""
    torch.manual_seed(2)
    logits, quadratic = torch.randn(2, 3, 2, 2), torch.rand(3, 3)
    log_bounds = pixel_log_bounds(logits, quadratic)
    torch.testing.assert_close(
        log_bounds.reshape(-1), log_epmcm_bound(pixel_rows(logits), quadratic)
    )
    expected = log_bounds.double().exp().reshape(2, 4).mean(1).log().float()
    torch.testing.assert_close(TASK.reduce_log_scores(log_bounds), expected)


def test_isda_reads_every_labeled_pixel_at_the_output_stride():
    features = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    target = torch.tensor([[[0, 0, 1, 1]] * 2 + [[2, 2, 255, 255]] * 2] * 2)  # (2, 4, 4)
    out = BackboneOutput(torch.zeros(2, 3, 4, 4), features.mean((2, 3)), [], features)
    rows, labels = TASK.feature_pairs(out, target)
    assert labels.tolist() == [0, 1, 2, 0, 1, 2]  # nearest pixels (0,0) (0,2) (2,0) (2,2)
    torch.testing.assert_close(rows[0], features[0, :, 0, 0])
    torch.testing.assert_close(rows[4], features[1, :, 0, 1])


def test_augmented_logits_add_each_pixels_own_class_term():
    logits, quadratic = torch.zeros(1, 2, 1, 2), torch.tensor([[0.0, 4.0], [2.0, 0.0]])
    target = torch.tensor([[[1, 255]]])
    augmented = TASK.augmented_logits(logits, quadratic, target, strength=0.5)
    assert augmented[0, :, 0, 0].tolist() == [0.5, 0.0]  # ½·λ·q[1]
    assert augmented[0, :, 0, 1].tolist() == [0.0, 1.0]  # ignored: any class's term


class FixedLogits(torch.nn.Module):
    """A 'module' whose logits are the inputs themselves."""

    task = TASK
    device = torch.device("cpu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_the_selector_keeps_one_score_per_image():
    confident = torch.zeros(1, 2, 3, 3)
    confident[:, 0] = 30.0
    one_unsure = confident.clone()
    one_unsure[0, :, 1, 1] = 0.0  # one pixel at p = (½, ½)
    loader = [(torch.cat([confident, one_unsure, confident]), torch.tensor([7, 8, 9]))]
    indices, scores = EntropySelector().score_loader(FixedLogits(), loader)
    assert indices.tolist() == [7, 8, 9] and scores.shape == (3,)
    assert scores.argmax() == 1
    assert float(scores[1] - scores[0]) == pytest.approx(math.log(2) / 9, abs=1e-6)


def test_shapes_seg_is_seeded_and_holds_every_class():
    first, again = shapes_seg(40, 10, seed=3), shapes_seg(40, 10, seed=3)
    assert torch.equal(first.pool.inputs[5], again.pool.inputs[5])
    counts = first.pool_targets.pixel_counts(range(40), 4)
    assert (counts > 0).all() and counts.sum() == 40 * 32 * 32
    x, mask = first.test[0]
    assert x.shape == (3, 32, 32) and mask.shape == (32, 32) and mask.dtype == torch.int64


def test_a_view_of_some_masks_reaches_no_other():
    masks = MaskTargets(MaskArray(np.arange(5)[:, None, None].repeat(2, 1).repeat(2, 2)))
    view = masks[[3, 1]]
    assert len(view) == 2 and len(view.masks.array) == 2
    assert view.mask(0).unique().tolist() == [3] and view.mask(1).unique().tolist() == [1]
    assert masks.pixel_counts([1, 3, 3], 5).tolist() == [0, 4, 0, 8, 0]


def test_training_transforms_crop_and_flip_image_and_mask_together():
    stats = PixelStats((0.0,), (1.0,))
    image = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)
    mask = torch.arange(12).reshape(3, 4)
    transforms = SegmentationTransforms(stats, crop=5, flip=True)
    torch.manual_seed(0)
    for _ in range(10):
        x, y = transforms.train(image, mask)
        assert x.shape == (1, 5, 5) and y.shape == (5, 5)
        padded = y == 255
        assert torch.equal(x[0][padded], torch.zeros(int(padded.sum())))
        assert torch.equal((x[0][~padded] * 255).round().long(), y[~padded])


def seg_config(method: str, *overrides: str):
    faster = FASTER.get(method, [])
    return compose_config(*SEG_TINY, f"method={method}", *faster, *overrides)


@pytest.mark.parametrize("method", SEG_METHODS)
def test_every_segmentation_method_runs_two_stages_on_shapes_seg(tmp_path, method):
    records = run(seg_config(method), tmp_path)
    assert [r["n_labeled"] for r in records] == [10, 15]
    assert all(0 <= r["test/miou"] <= 1 and 0 <= r["test/pixel_acc"] <= 1 for r in records)
    assert sum(records[0]["class_counts"]) == 10 * 16 * 16
    assert read_results(tmp_path) == records
    assert (tmp_path / "curve.png").exists()


def poisoned_masks(data: ALData, pool: Pool) -> ALData:
    """The same data with the masks of the images unlabeled now replaced by noise."""
    masks = np.array([data.pool_targets.mask(i).numpy() for i in range(len(data.pool_targets))])
    unlabeled = pool.unlabeled_indices
    rng = np.random.default_rng(0)
    masks[unlabeled] = rng.integers(0, data.num_classes, masks[unlabeled].shape)
    return dataclasses.replace(data, pool_targets=MaskTargets(MaskArray(masks)))


@pytest.mark.parametrize("method", SEG_METHODS)
def test_picks_are_blind_to_the_masks_of_unlabeled_images(method):
    cfg = seg_config(method)
    data = build_data(cfg.dataset)
    budget = Budget(initial=10, query=5, stages=1)
    picks = []
    for stage_data in (data, None):
        pool = Pool.with_initial(len(data.pool_targets), budget.initial, cfg.seed)
        stage_data = stage_data or poisoned_masks(data, pool)
        logger = EpochMetricsCallback(Sink(), stage=0, epochs_before=0)
        experiment = experiment_for(cfg, stage_data, budget)
        outcome = run_stage(experiment, pool, 0, None, logger, stage_progress())
        picks.append((outcome.selection.indices, outcome.selection.scores))
    assert torch.equal(picks[0][0], picks[1][0])
    assert torch.equal(picks[0][1], picks[1][1])


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["method=badge"], "badge"),
        (["method=m2_entropy"], "M2Module"),
        (["model=cnn"], "SmallCNN"),
        (["budget.initial_classes=[1,2]"], "initial_classes"),
    ],
)
def test_what_does_not_support_segmentation_is_refused_before_anything_is_written(
    tmp_path, overrides, named
):
    with pytest.raises(ConfigError, match="segmentation") as error:
        run(compose_config(*SEG_TINY, *overrides), tmp_path / "run")
    assert named in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("method", SEG_METHODS)
def test_every_segmentation_method_composes_with_cityscapes(method):
    """Cityscapes' task, model (DRN-D-22) and the method agree before anything is built."""
    cfg = compose_config("dataset=cityscapes", f"method={method}")
    task = build(cfg.dataset.task)
    check_task(cfg, task, Budget(**cfg.budget))
    assert task.name == "segmentation" and cfg.model._target_ == "al.models.drn.DrnD22Seg"
    instantiate(cfg.method.selector)
