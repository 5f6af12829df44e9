"""BGADL: its three losses, which update moves which network, how generated inputs meet the
classifier's BatchNorm, the D/C step's fakes, the ablation that is exactly BALD (and keeps the
weight decay), and synthetic pairs that train the classifier only and survive a resume."""

from __future__ import annotations

import copy
import functools
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fake_data import write_idx

from al.build import build_data
from al.data import PixelStats, datamodule_for
from al.errors import ConfigError
from al.loop import run, run_stage
from al.methods.bgadl import (
    BgadlModule,
    discriminator_loss,
    encoder_loss,
    generator_loss,
    kl_mean,
)
from al.models.cnn import SmallCNN
from al.pool import Pool
from al.progress import stage_progress
from al.reports import samples
from al.reports.samples import stage_pairs
from al.sinks import EpochMetricsCallback, Sink
from al.store import RunStore
from al.synthetic import SyntheticPairs

from conftest import FASTER, experiment_for, killed_run, read_results, without_timings

BGADL = ["method=bgadl", *FASTER["bgadl"]]


def test_the_three_losses_on_hand_computed_values():
    mu, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(2.0)]])
    assert kl_mean(mu, logvar).item() == pytest.approx(0.25 * (2 - math.log(2)))
    reconstruction, real = torch.tensor([[0.5]]), torch.tensor([[1.0]])
    expected_e = 0.25 + 0.25 * (2 - math.log(2))
    assert encoder_loss(reconstruction, real, mu, logvar).item() == pytest.approx(expected_e)
    judged_fake, logits, y = torch.tensor([0.5]), torch.zeros(1, 2), torch.tensor([0])
    expected_g = math.log(2) + math.log(2) + 0.75 * 0.25
    loss_g = generator_loss(judged_fake, logits, y, reconstruction, real, 0.75)
    assert loss_g.item() == pytest.approx(expected_g)
    loss_d = discriminator_loss(torch.tensor([0.8]), torch.tensor([0.3]), torch.tensor([0.5]))
    assert loss_d.item() == pytest.approx(-math.log(0.8) - math.log(0.7) + math.log(2))


def small_module(synthesis: str = "on_the_fly", dropout: float = 0.5, **options) -> BgadlModule:
    torch.manual_seed(0)
    module = BgadlModule(
        SmallCNN([1, 8, 8], 3, dropout=dropout),
        functools.partial(torch.optim.Adadelta, lr=1.0),
        3,
        [1, 8, 8],
        synthesis=synthesis,
        **options,
    )
    module.pixel_stats = PixelStats((0.3,), (0.4,))
    module.manual_backward = lambda loss: loss.backward()  # no trainer: plain autograd
    module.stage = 1  # after the first acquisition: the VAE-ACGAN trains
    return module


def moved(module: BgadlModule, before: dict[str, torch.Tensor]) -> set[str]:
    """The top-level networks whose parameters changed."""
    return {
        name.split(".")[0]
        for name, p in module.named_parameters()
        if not torch.equal(p.detach(), before[name])
    }


def test_each_update_moves_only_its_networks():
    module = small_module()
    encoder_opt, generator_opt, real_fake_opt, classifier_opt = module.configure_optimizers()[0]
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    real, z = module.to_image(x), torch.randn(6, 100)

    def parameters():
        return {name: p.detach().clone() for name, p in module.named_parameters()}

    before = parameters()
    module.update_encoder(real, y, encoder_opt)
    assert moved(module, before) == {"encoder"}
    before = parameters()
    _, fake, made = module.update_generator(x, real, y, z, generator_opt)
    assert moved(module, before) == {"generator"}
    before = parameters()
    module.log = lambda *args, **kwargs: None
    module.update_discriminator_and_classifier(
        x, y, real, fake.detach(), made.detach(), (real_fake_opt, classifier_opt)
    )
    assert moved(module, before) == {"real_fake", "backbone"}


def test_pixels_round_trip_between_the_generator_and_the_classifier():
    module = small_module()
    pixels = torch.rand(2, 1, 28, 28)
    back = module.to_image(module.to_input(pixels))
    assert back.shape == (2, 1, 28, 28) and module.to_input(pixels).shape == (2, 1, 8, 8)
    exact = torch.rand(2, 1, 8, 8)
    assert torch.allclose(module.pixel_stats.to_pixels(module.pixel_stats.to_inputs(exact)), exact)


def test_bad_options_are_refused():
    with pytest.raises(ConfigError, match="synthesis='always'"):
        BgadlModule(SmallCNN([1, 8, 8], 3), torch.optim.Adam, 3, [1, 8, 8], synthesis="always")
    with pytest.raises(ConfigError, match="bgadl generates images"):
        BgadlModule(SmallCNN([1, 8, 8], 3), torch.optim.Adam, 3, [2])
    for option in ("synthetic_batchnorm", "discriminator_fakes"):
        with pytest.raises(ConfigError, match=f"{option}='batch'"):
            BgadlModule(SmallCNN([1, 8, 8], 3), torch.optim.Adam, 3, [1, 8, 8], **{option: "batch"})
    with pytest.raises(ConfigError, match="image_size=30"):
        BgadlModule(SmallCNN([1, 8, 8], 3), torch.optim.Adam, 3, [1, 8, 8], image_size=30)


def one_stage(cfg):
    data = build_data(cfg.dataset)
    pool = Pool.with_initial(len(data.pool_targets), 20, cfg.seed)
    epoch_logger = EpochMetricsCallback(Sink(), stage=0, epochs_before=0)
    return run_stage(experiment_for(cfg, data), pool, 0, None, epoch_logger, stage_progress())


@pytest.mark.parametrize("synthesis", ["none", "on_the_fly", "stored"])
def test_without_synthesis_or_at_stage_0_it_trains_exactly_balds_classifier(tiny_config, synthesis):
    """`synthesis=none`, and before the first acquisition any synthesis (`first_stage:
    classifier_only`, the code's), train BALD's classifier to the same weights and picks: the
    VAE-ACGAN draws its initial weights from a stream of its own."""
    bgadl = one_stage(tiny_config(*BGADL, f"method.module.synthesis={synthesis}"))
    bald = one_stage(tiny_config("method=bald", *FASTER["bald"], "trainer.max_epochs=2"))
    for name, weights in bald.module.state_dict().items():
        assert torch.equal(bgadl.module.state_dict()[name], weights), name
    assert torch.equal(bgadl.selection.indices, bald.selection.indices)


def test_synthetic_pairs_train_the_classifier_and_reach_nothing_else(tiny_config):
    cfg = tiny_config()
    data = build_data(cfg.dataset)
    pool = Pool.with_initial(len(data.pool_targets), 20, seed=0)
    synthetic = SyntheticPairs()
    synthetic.add(torch.full((5, 1, 8, 8), 7.0), torch.arange(5), torch.arange(100, 105), 1)
    datamodule = datamodule_for(
        data, pool.labeled_indices, None, synthetic, batch_size=64, eval_batch_size=64
    )
    x, _ = next(iter(datamodule.train_dataloader()))
    assert len(x) == 25 and (x == 7.0).all(dim=(1, 2, 3)).sum() == 5
    for loader in (datamodule.inputs_loader(pool.labeled_indices), datamodule.test_dataloader()):
        inputs = torch.cat([batch[0] for batch in loader])
        assert not (inputs == 7.0).all(dim=(1, 2, 3)).any()
    assert len(datamodule.inputs_loader(pool.labeled_indices).dataset) == 20


def test_stored_pairs_are_counted_apart_and_resume_exactly(tiny_config, tmp_path, monkeypatch):
    """One synthetic pair per pick, made by the stage that picked it; a run killed after
    stage 1 resumes to the same records and the same stored pairs."""
    cfg = tiny_config(*BGADL, "method.module.synthesis=stored", "budget.stages=3")
    cfg.trainer.max_epochs = 1
    whole = run(cfg, tmp_path / "whole")
    assert [r["n_labeled"] for r in whole] == [20, 30, 40]
    assert [r["n_synthetic"] for r in whole] == [0, 10, 20]
    killed_run(cfg, tmp_path / "split", monkeypatch, stage=1, finished=True)
    resumed = run(cfg, tmp_path / "split")
    assert without_timings(resumed) == without_timings(whole)
    stored = [RunStore(tmp_path / name).latest()["synthetic"] for name in ("whole", "split")]
    for key in ("x", "y", "stage", "source"):
        assert torch.equal(stored[0][key], stored[1][key]), key
    labelled_at = RunStore(tmp_path / "whole").latest()["labelled_at"]
    assert np.array_equal(np.sort(stored[0]["source"].numpy()), np.flatnonzero(labelled_at >= 1))
    assert stored[0]["stage"].tolist() == [1] * 10 + [2] * 10 + [3] * 10


def test_two_stages_on_mnist_format_files(tiny_config, tmp_path):
    write_idx(tmp_path / "MNIST" / "raw", train=60, test=20)
    cfg = tiny_config(
        "dataset=mnist",
        f"dataset.root={tmp_path}",
        "dataset.pool_size=60",
        "budget=mnist",
        "budget.initial=20",
        "budget.query=10",
        "budget.stages=2",
        "budget.subset=null",
        *BGADL,
    )
    records = run(cfg, tmp_path / "run")
    assert [r["n_labeled"] for r in records] == [20, 30]
    assert read_results(tmp_path / "run") == records


def with_running_statistics(module: BgadlModule) -> tuple[torch.Tensor, torch.Tensor]:
    """Train on a shifted real batch so that the running statistics are not their initial 0
    and 1; the first BatchNorm layer's running mean and variance (copies)."""
    module.train()
    module(2 * torch.randn(8, 1, 8, 8) + 1)
    norm = module.backbone.blocks[0][1]
    return norm.running_mean.clone(), norm.running_var.clone()


def unchanged(module: BgadlModule, statistics: tuple[torch.Tensor, torch.Tensor]) -> bool:
    norm = module.backbone.blocks[0][1]
    return torch.equal(norm.running_mean, statistics[0]) and torch.equal(
        norm.running_var, statistics[1]
    )


def test_running_normalises_generated_batches_as_the_classifier_in_eval_mode():
    """`running`: a generated batch gives the eval-mode classifier's logits (no dropout here),
    leaves the running statistics alone and the BatchNorm layers in training mode."""
    module = small_module(dropout=0.0, synthetic_batchnorm="running")
    statistics = with_running_statistics(module)
    x, images = torch.randn(8, 1, 8, 8), torch.rand(8, 1, 28, 28)
    (logits,) = module.classify_synthetic(x, images)
    assert unchanged(module, statistics) and module.backbone.blocks[0][1].training
    evaluated = copy.deepcopy(module).eval()
    assert torch.allclose(logits, evaluated(module.to_input(images)), atol=1e-6)
    own_batch = copy.deepcopy(module)
    own_batch.synthetic_batchnorm = "own_batch"
    assert not torch.allclose(logits, own_batch.classify_synthetic(x, images)[0], atol=1e-3)


def test_running_keeps_the_dropout_sampling():
    module = small_module(dropout=0.5, synthetic_batchnorm="running")
    with_running_statistics(module)
    images = torch.rand(8, 1, 28, 28)
    first, second = (module.classify_synthetic(None, images)[0] for _ in range(2))
    assert not torch.allclose(first, second)


def test_own_batch_normalises_each_generated_batch_by_its_own_statistics():
    module = small_module(dropout=0.0, synthetic_batchnorm="own_batch")
    statistics = with_running_statistics(module)
    images = torch.rand(8, 1, 28, 28)
    expected = copy.deepcopy(module)(module.to_input(images))  # train mode, this batch alone
    (logits,) = module.classify_synthetic(torch.randn(8, 1, 8, 8), images)
    assert torch.allclose(logits, expected, atol=1e-6) and unchanged(module, statistics)
    assert module.backbone.blocks[0][1].momentum == 0.1


def test_joint_normalises_real_and_generated_inputs_in_one_batch():
    """`joint`: the D/C step's logits are one train-mode pass over real and generated inputs,
    whose batch mean the running mean follows (momentum 0.1); G's step reads the same kind of
    batch and leaves the running statistics alone."""
    module = small_module(dropout=0.0, synthetic_batchnorm="joint")
    statistics = with_running_statistics(module)
    x, fake, made = torch.randn(6, 1, 8, 8), torch.rand(6, 1, 28, 28), torch.rand(6, 1, 28, 28)
    together = torch.cat([x, module.to_input(fake), module.to_input(made)])
    expected = copy.deepcopy(module)(together).split(6)
    batch_mean = module.backbone.blocks[0][0](together).mean(dim=(0, 2, 3)).detach()

    (fake_logits,) = module.classify_synthetic(x, fake)
    assert unchanged(module, statistics)
    assert torch.allclose(fake_logits, copy.deepcopy(module)(together[:12])[6:], atol=1e-6)
    logits = module.classify_real_and_synthetic(x, fake, made)
    for got, want in zip(logits, expected, strict=True):
        assert torch.allclose(got, want, atol=1e-6)
    running_mean = module.backbone.blocks[0][1].running_mean
    assert torch.allclose(running_mean, 0.9 * statistics[0] + 0.1 * batch_mean, atol=1e-6)


def test_the_batchnorm_option_changes_only_how_generated_inputs_are_normalised():
    """`running` and `own_batch` give the same real logits and running statistics from the
    same state; only the generated inputs' logits differ."""
    results = {}
    for option in ("running", "own_batch"):
        module = small_module(dropout=0.0, synthetic_batchnorm=option)
        with_running_statistics(module)
        x, fake = torch.randn(6, 1, 8, 8), torch.rand(6, 1, 28, 28)
        logits = module.classify_real_and_synthetic(x, fake)
        results[option] = (*logits, module.backbone.blocks[0][1].running_mean.clone())
    (real, fake, mean), (real_own, fake_own, mean_own) = results.values()
    assert torch.equal(real, real_own) and torch.equal(mean, mean_own)
    assert not torch.allclose(fake, fake_own, atol=1e-3)


@pytest.mark.parametrize("synthesis", ["none", "on_the_fly"])
def test_the_weight_decay_per_sample_applies_with_and_without_synthesis(synthesis):
    module = small_module(synthesis, weight_decay_per_sample=3.5)
    module.trainer = SimpleNamespace(datamodule=SimpleNamespace(labeled_count=50, synthetic=None))
    optimizers = module.configure_optimizers()
    classifier = optimizers if synthesis == "none" else optimizers[0][-1]
    assert [group["weight_decay"] for group in classifier.param_groups] == [3.5 / 50]
    parameters = [p for group in classifier.param_groups for p in group["params"]]
    assert {id(p) for p in parameters} == {id(p) for p in module.backbone.parameters()}


def stepping(module: BgadlModule, stage: int) -> BgadlModule:
    """`module` ready for `training_step` by hand at `stage`: its own optimizers, no logging."""
    module.log = lambda *args, **kwargs: None
    module.stage = stage
    optimizers = module.configure_optimizers()
    optimizers = optimizers[0] if isinstance(optimizers, tuple) else [optimizers]
    module.optimizers = lambda: optimizers
    return module


def test_the_first_stage_trains_the_classifier_alone_unless_joint():
    """Before the first acquisition only the classifier moves (the code builds its VAE-ACGAN
    after it); from stage 1, or with `first_stage=joint`, every network does."""
    everything = {"encoder", "generator", "real_fake", "backbone"}
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    for options, stage, expected in (
        ({}, 0, {"backbone"}),
        ({}, 1, everything),
        ({"first_stage": "joint"}, 0, everything),
    ):
        module = stepping(small_module(**options), stage)
        before = {name: p.detach().clone() for name, p in module.named_parameters()}
        module.training_step((x, y), 0)
        assert moved(module, before) == expected, (options, stage)


def test_the_synthetic_weight_scales_the_classifier_s_losses_on_generated_images():
    """L_C = CE(x) + w·(CE(g(z, y)) + CE(g(e(x), y))): w = 0 leaves the real term alone, and
    L_C is linear in w."""
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = {}
    for weight in (0.0, 0.1, 1.0):
        module = small_module(synthetic_weight=weight)
        real = module.to_image(x)
        fake, made = module.generate(real, y, torch.randn(6, 100))
        optimizers = module.configure_optimizers()[0][2:]
        _, losses[weight], logits = module.update_discriminator_and_classifier(
            x, y, real, fake.detach(), made.detach(), optimizers
        )
        if weight == 0.0:
            assert torch.allclose(losses[weight], F.cross_entropy(logits, y))
    synthetic = losses[1.0] - losses[0.0]
    assert synthetic > 0
    assert torch.allclose(losses[0.1] - losses[0.0], 0.1 * synthetic, atol=1e-5)


@functools.cache
def one_training_step(discriminator_fakes: str):
    """One training step on a fixed batch; the generator's (z, output) per call in order, the
    D/C step's fake and reconstructed inputs, and the module (made once per option: read,
    never changed, by the tests)."""
    module = stepping(small_module(discriminator_fakes=discriminator_fakes), stage=1)
    calls, read = [], {}
    module.generator.register_forward_hook(
        lambda net, inputs, output: calls.append((inputs[0].clone(), output.detach().clone()))
    )
    update = module.update_discriminator_and_classifier

    def spy(x, y, real, fake, made, optimizers):
        read.update(fake=fake.clone(), made=made.clone())
        return update(x, y, real, fake, made, optimizers)

    module.update_discriminator_and_classifier = spy
    torch.manual_seed(1)
    x, y = torch.randn(6, 1, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2])
    module.training_step((x, y), 0)
    return calls, read, module, y


def test_the_discriminator_step_reads_the_fakes_the_updated_generator_makes():
    """The code's order: E's step (1 generator call), G's step (g(z, y), g(e(x), y)), then
    g(z, y) again with the same z and a fresh reconstruction, which D and C read."""
    calls, read, module, y = one_training_step("regenerated")
    assert len(calls) == 5
    (z_before, fake_before), (z_after, fake_after) = calls[1], calls[3]
    assert torch.equal(z_before, z_after) and not torch.allclose(fake_before, fake_after)
    assert torch.equal(read["fake"], fake_after) and torch.equal(read["made"], calls[4][1])
    with torch.no_grad():  # training-mode BatchNorm: the updated G's output depends on z alone
        assert torch.allclose(read["fake"], module.generator(z_after, y), atol=1e-6)


def test_reused_fakes_are_those_of_the_generators_step_and_nothing_else_changes():
    calls, read, reused, _ = one_training_step("reused")
    assert len(calls) == 3
    assert torch.equal(read["fake"], calls[1][1]) and torch.equal(read["made"], calls[2][1])
    _, _, regenerated, _ = one_training_step("regenerated")
    assert moved(regenerated, dict(reused.named_parameters())) == {"real_fake", "backbone"}


def test_the_sample_grid_pairs_each_pick_with_its_stored_synthetic_sample(tiny_config, tmp_path):
    cfg = tiny_config(*BGADL, "method.module.synthesis=stored", "budget.stages=2")
    run(cfg, tmp_path)
    data = build_data(cfg.dataset)
    picked, made, labels = stage_pairs(tmp_path, 0, cfg, data)
    picks = np.loadtxt(tmp_path / "picks" / "stage_000.csv", delimiter=",", skiprows=1)
    assert torch.equal(labels, torch.from_numpy(picks[:, 2].astype(np.int64)))  # best first
    assert picked.shape == made.shape == (10, 1, 8, 8)
    assert torch.equal(picked, torch.stack([x for x, _ in data.pool.unlabeled(picks[:, 0])]))
    samples.main([str(tmp_path), "--stage", "0", "--pairs", "4"])
    assert (tmp_path / "samples" / "stage_000.png").stat().st_size > 0


def test_rgb_images_at_32_pixels_run_every_update():
    """CIFAR-sized inputs: the generator's 32 px RGB pixels map to the classifier's inputs."""
    torch.manual_seed(0)
    module = BgadlModule(
        SmallCNN([3, 32, 32], 4, dropout=0.5),
        functools.partial(torch.optim.Adadelta, lr=1.0),
        4,
        [3, 32, 32],
        image_size=32,
    )
    module.pixel_stats = PixelStats((0.49, 0.48, 0.45), (0.2, 0.2, 0.2))
    module.manual_backward = lambda loss: loss.backward()
    module.log = lambda *args, **kwargs: None
    module.stage = 1
    encoder_opt, generator_opt, real_fake_opt, classifier_opt = module.configure_optimizers()[0]
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    real = module.to_image(x)
    module.update_encoder(real, y, encoder_opt)
    _, fake, made = module.update_generator(x, real, y, torch.randn(4, 100), generator_opt)
    assert fake.shape == made.shape == (4, 3, 32, 32) and 0 <= fake.min() <= fake.max() <= 1
    module.update_discriminator_and_classifier(
        x, y, real, fake.detach(), made.detach(), (real_fake_opt, classifier_opt)
    )
    module.eval()
    assert module.synthesize(x, y).shape == (4, 3, 32, 32)
