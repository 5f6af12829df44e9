"""Every `conf/experiment/*.yaml` composes to the values its comment names, with their source.

A new experiment without an entry in EXPECTED fails: state what it pins, and where from.
"""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from conftest import compose_config, options

ABSENT = object()

RESNET18, VGG16, MLP = "al.models.resnet.ResNet18", "al.models.vgg.VGG16", "al.models.mlp.MLP"


def budget(initial, query, stages, subset) -> dict:
    return {
        "budget.initial": initial,
        "budget.query": query,
        "budget.stages": stages,
        "budget.subset": subset,
    }


# TA-VAAL §4.2 (momentum 0.9, lr 0.1 → 0.01 after epoch 160 of 200, batch 128; weight decay:
# its text says 0.005, its code 5e-4, kept here) = DAST-AL §4.1 (weight decay 0.0005).
CIFAR_PROTOCOL = {
    "optimizer._target_": "torch.optim.SGD",
    "optimizer.lr": 0.1,
    "optimizer.momentum": 0.9,
    "optimizer.weight_decay": 5e-4,
    "scheduler.milestones": [160],
    "scheduler.gamma": 0.1,
    "trainer.max_epochs": 200,
    "loader.batch_size": 128,
}

# TA-VAAL supplement Table 1, rows CIFAR10 and CIFAR100 (identical): d = 64, ζ1 = 0.1,
# ζ2 = ζ3 = 5e-4, η = 1, λ = 1, β = 1, batch 128, 200 epochs; 1 VAE step per D step and the
# KL averaged (its code).
TA_VAAL_CIFAR = {
    **CIFAR_PROTOCOL,
    "method.name": "ta_vaal",
    "model._target_": RESNET18,
    "method.selector.latent_dim": 64,
    "method.selector.lr_vae": 5e-4,
    "method.selector.lr_discriminator": 5e-4,
    "loss_prediction.eta": 1.0,
    "method.selector.lambda_adv": 1.0,
    "method.selector.beta": 1.0,
    "method.selector.batch_size": 128,
    "method.selector.vae_steps": 1,
    "method.selector.kl": "mean",
    "reinit_each_stage": True,
}

BGADL_MNIST = {
    "dataset.name": "mnist",
    "method.name": "bgadl",
    "method.module.synthesis": "on_the_fly",
    "budget.initial_classes": list(range(10)),
    **budget(100, 100, 100, 2000),
    "method.selector.passes": 20,
    "trainer.max_epochs": 50,
    "loader.batch_size": 100,
    "optimizer._target_": "torch.optim.Adadelta",
    "optimizer.lr": 1.0,
    "optimizer.rho": 0.9,
    "scheduler.step_size": 5,
    "scheduler.gamma": 0.5,
    "method.module.weight_decay_per_sample": 3.5,
    "method.module.generative_optimizer.step_size": 8,
    "model.dropout": 0.5,
}
M2_VAAL_FMNIST = {
    "dataset.name": "fashion_mnist",
    "method.name": "m2_vaal",
    "method.module.adversarial": True,
    "eval_model": "best_val",
    "validation_fraction": 1 / 12,
    "optimizer.lr": 3e-4,
    "trainer.max_epochs": 20,
    **budget(1000, 1000, 8, None),
}
M2_VAAL_COLD = {
    **M2_VAAL_FMNIST,
    **budget(500, 64, 15, None),
    "budget.initial_classes": [2, 4, 7],
    "stop.metric": "discriminator/acc",
    "stop.target": 0.5,
    "stop.within": 0.05,
    "print_pick_classes": True,
}
M2_CPU = {
    "budget.stages": 3,
    "budget.subset": 5000,
    "trainer.max_epochs": 2,
    "method.module.epoch": "shortest",
    "method.module.unlabeled_batch_size": 32,
}

# DAST-AL §4.1: the CIFAR protocol, "fine-tune the network from the previous cycle", 10,000
# candidates ("sub-set sampling", R = 10000).
DAST_AL = {**CIFAR_PROTOCOL, "method.name": "dast_al", "reinit_each_stage": False}

DRN = "al.models.drn.DrnD22Seg"
CITYSCAPES = {
    "dataset.name": "cityscapes",
    "dataset.pool_size": 2975,
    "dataset.num_classes": 19,
    "dataset.crop": 412,
    "dataset.flip": True,
    "dataset.task._target_": "al.tasks.segmentation.Segmentation",
    "dataset.task.ignore_index": 255,
    "model._target_": DRN,
    "optimizer._target_": "torch.optim.SGD",
    "optimizer.lr": 1e-3,
    "loader.batch_size": 4,
    "trainer.max_epochs": 100,
    "method.selector.latent_dim": 128,
    "method.selector.lr_vae": 1e-4,
    "method.selector.lr_discriminator": 1e-4,
    "method.selector.lambda_adv": 25.0,
    "method.selector.beta": 1.0,
    "method.selector.batch_size": 4,
    "loss_prediction.eta": 0.1,
    **budget(200, 200, 6, None),
}

EXPECTED = {
    # DAST-AL §4.1: CIFAR-10, 1,000 initial and 1,000 per iteration, ResNet-18.
    "dast_al_cifar10_resnet18": {
        **DAST_AL,
        "dataset.name": "cifar10",
        "model._target_": RESNET18,
        **budget(1000, 1000, 10, 10000),
    },
    # DAST-AL Table 1: 5 %, 10 %, …, 35 % of CIFAR-10's 50,000 labels, ResNet-18.
    "dast_al_cifar10_table1": {
        **DAST_AL,
        "dataset.name": "cifar10",
        "model._target_": RESNET18,
        **budget(2500, 2500, 7, 10000),
    },
    # DAST-AL Fig. 2(a) and §4.1: CIFAR-10 with VGG-16, 1,000 + 1,000.
    "dast_al_cifar10_vgg16": {
        **DAST_AL,
        "dataset.name": "cifar10",
        "model._target_": VGG16,
        **budget(1000, 1000, 10, 10000),
    },
    # DAST-AL Fig. 2(b) and §4.1: CIFAR-100, 2,500 initial and 2,500 per iteration, VGG-16.
    "dast_al_cifar100_vgg16": {
        **DAST_AL,
        "dataset.name": "cifar100",
        "model._target_": VGG16,
        **budget(2500, 2500, 10, 10000),
    },
    # TA-VAAL Fig. 3(a), §4.2 (1,000 + 1,000, subset 10× the query) and Table 1 CIFAR10.
    "ta_vaal_cifar10": {
        **TA_VAAL_CIFAR,
        "dataset.name": "cifar10",
        **budget(1000, 1000, 10, 10000),
    },
    # TA-VAAL Fig. 3(b), Table 1 CIFAR100 (2000 / 2000, as its code; §4.2's text says 1,000).
    "ta_vaal_cifar100": {
        **TA_VAAL_CIFAR,
        "dataset.name": "cifar100",
        **budget(2000, 2000, 10, 10000),
    },
    # TA-VAAL §4.3: "For modified CIFAR10, we used the same implementation for CIFAR10".
    "ta_vaal_cifar10_imb10": {
        **TA_VAAL_CIFAR,
        "dataset.name": "cifar10_imb10",
        "dataset.build.reduced_size": 500,
        **budget(1000, 1000, 10, 10000),
    },
    "ta_vaal_cifar10_imb100": {
        **TA_VAAL_CIFAR,
        "dataset.name": "cifar10_imb100",
        "dataset.build.reduced_size": 50,
        **budget(1000, 1000, 10, 10000),
    },
    # TA-VAAL §4.2 (the CIFAR protocol "for all datasets"; results in its supplement); ours:
    # CIFAR-10's budget and Table 1's CIFAR10 row, as the supplement's values are not in the text.
    "ta_vaal_svhn": {
        **TA_VAAL_CIFAR,
        "dataset.name": "svhn",
        "dataset.crop_padding": 4,
        **budget(1000, 1000, 10, 10000),
    },
    "ta_vaal_fashion_mnist": {
        **TA_VAAL_CIFAR,
        "dataset.name": "fashion_mnist",
        **budget(1000, 1000, 10, 10000),
    },
    # TA-VAAL §4.3 and Table 1 Caltech101: d = 128, ζ1 = 0.01, ζ2 = ζ3 = 1e-4, η = 0.2,
    # λ = 15, β = 1, batch 16, 200 epochs, 1000 / 500, 224 × 224; 8,125 / 1,019 images.
    "ta_vaal_caltech101": {
        "dataset.name": "caltech101",
        "dataset.image_size": 224,
        "dataset.pool_size": 8125,
        "dataset.build.test_size": 1019,
        "model._target_": RESNET18,
        "method.name": "ta_vaal",
        "method.selector.latent_dim": 128,
        "optimizer._target_": "torch.optim.SGD",
        "optimizer.lr": 0.01,
        "method.selector.lr_vae": 1e-4,
        "method.selector.lr_discriminator": 1e-4,
        "loss_prediction.eta": 0.2,
        "method.selector.lambda_adv": 15.0,
        "method.selector.beta": 1.0,
        "method.selector.batch_size": 16,
        "loader.batch_size": 16,
        "trainer.max_epochs": 200,
        **budget(1000, 500, 10, None),
    },
    # TA-VAAL §4.4 and Table 1's Cityscapes row: DRN, SGD 1e-3, batch 4, 100 epochs, 412×412
    # crops and flips, d = 128, VAE/D Adam 1e-4, η = 0.1, λ = 25, β = 1, 200 + 200 per stage.
    "ta_vaal_cityscapes": {**CITYSCAPES, "method.name": "ta_vaal"},
    # DAST-AL §4.2: DRN, 348 initial + 150 per stage, 50 epochs, batch 8, lr 5e-4, flips only.
    "dast_al_cityscapes": {
        "dataset.name": "cityscapes",
        "dataset.crop": None,
        "dataset.flip": True,
        "model._target_": DRN,
        "method.name": "dast_al",
        "method.module.isda.enabled": True,
        "optimizer.lr": 5e-4,
        "trainer.max_epochs": 50,
        "loader.batch_size": 8,
        "dataset.task._target_": "al.tasks.segmentation.Segmentation",
        **budget(348, 150, 6, None),
    },
    # TA-VAAL §4.1: make_moons, noise 0.2, 500 vs 50; a 3-layer MLP, Adam lr 0.1; a single layer
    # ranker on the mid-layer; 2-layer MLP VAE and discriminator, Adam 0.01; all epochs 100;
    # 20 random initial samples, 10 per stage.
    "ta_vaal_moons": {
        "dataset.name": "moons",
        "dataset.build.noise": 0.2,
        "dataset.build.pool_counts": [500, 50],
        "model._target_": MLP,
        "model.hidden": [64, 64],
        "method.name": "ta_vaal",
        "optimizer._target_": "torch.optim.Adam",
        "optimizer.lr": 0.1,
        "loss_prediction.hidden": None,
        "loss_prediction.stages": [1],
        "method.selector.discriminator_layers": 2,
        "method.selector.lr_vae": 0.01,
        "method.selector.lr_discriminator": 0.01,
        "trainer.max_epochs": 100,
        "method.selector.epochs_v": 100,
        **budget(20, 10, 10, None),
    },
    # The M2-VAAL slides: Fashion-MNIST 55k / 5k validation / 10k test, 1,000 + 1,000 per stage,
    # 8 stages, 20 epochs; ours: every unlabeled image a candidate, Adam 3e-4 (Kingma et al.).
    "m2_vaal_fmnist": M2_VAAL_FMNIST,
    # Ours: the M2 methods' α for short schedules (the paper's 0.1·N needs 3,000 passes).
    "m2_short_schedule": {"m2_alpha": 30.0},
    # The slides' cold start: 500 labels of classes 2, 4, 7 (166/167/167), 64 per stage, 15
    # stages (500 → 1,396), stop when the discriminator is at chance (tolerance ours).
    "m2_vaal_fmnist_cold": M2_VAAL_COLD,
    # CPU-sized: 3 stages of 2 epochs, one pass over the labeled pool per epoch, narrower nets.
    "m2_vaal_fmnist_cpu": {**M2_VAAL_FMNIST, **M2_CPU},
    "m2_vaal_fmnist_cold_cpu": {**M2_VAAL_COLD, **M2_CPU},
    # BGADL's public MNIST demo (more-methods.md §4.4): 10 per class, 100 per stage from 2,000
    # candidates, 100 iterations, T = 20, 50 epochs, batch 100, Adadelta, weight decay 3.5/N.
    "bgadl_mnist": BGADL_MNIST,
    "bgadl_mnist_cpu": {
        **BGADL_MNIST,
        **budget(100, 100, 3, 500),
        "trainer.max_epochs": 30,
        "method.selector.passes": 10,
    },
    # Ours (`make sweep`): digits, 30 epochs, 50 initial + 8 stages of 50, CSV logs.
    "sweep_digits": {
        "dataset.name": "digits",
        "logger._target_": "al.sinks.CsvSink",
        "model.dropout": 0.5,  # every method's task learner, so bald's curve pairs with theirs
        "trainer.max_epochs": 30,
        **budget(50, 50, 8, None),
    },
    "cold_start_digits": {
        "dataset.name": "digits",
        "representation.name": "simclr",
        "representation.epochs": 100,
        "embedding.name": "linear",
        "model.dropout": 0.0,
        **budget(10, 10, 5, None),
    },
    "semi_digits": {
        "dataset.name": "digits",
        "model.dropout": 0.5,
        **budget(40, 105, 3, None),
    },
    "semi_fashion": {
        "dataset.name": "fashion_mnist",
        "model.dropout": 0.5,
        **budget(40, 210, 2, 10000),
    },
    "dast_al_imagenet": {
        "dataset.name": "imagenet",
        "dataset.pool_size": 1281167,
        "dataset.num_classes": 1000,
        "model._target_": "al.models.torchvision_backbone.TorchvisionBackbone",
        "model.name": "vgg16_bn",
        "method.name": "dast_al",
        "isda.covariance": "diagonal",
        "optimizer._target_": "torch.optim.SGD",
        "optimizer.lr": 0.01,
        "optimizer.momentum": 0.9,
        "optimizer.weight_decay": 5e-4,
        "scheduler.milestones": [25, 50, 75],
        "scheduler.gamma": 0.1,
        "trainer.max_epochs": 100,
        "loader.batch_size": 128,
        "reinit_each_stage": False,
        "eval_model": "best_val",
        "validation_fraction": 0.1,
        **budget(128120, 64060, 4, None),
    },
    "embedding_sweep_digits": {
        "dataset.name": "digits",
        "representation.name": "simclr",
        "representation.epochs": 100,
        "embedding.name": "linear",
        "embedding.head.dropout": 0.5,  # sweep_digits' rate, before the probe's classifier
        "model.dropout": 0.0,  # the encoder: the same key, so cold_start_digits' cache serves
        "trainer.max_epochs": 30,
        **budget(50, 50, 8, None),
    },
}


def test_every_experiment_states_its_expected_values():
    assert sorted(EXPECTED) == options("experiment")


@pytest.mark.parametrize("experiment", sorted(EXPECTED))
def test_experiment_composes_to_its_papers_values(experiment):
    cfg = compose_config(f"+experiment={experiment}")
    actual = {key: OmegaConf.select(cfg, key, default=ABSENT) for key in EXPECTED[experiment]}
    actual = {k: OmegaConf.to_object(v) if OmegaConf.is_config(v) else v for k, v in actual.items()}
    assert actual == EXPECTED[experiment]


def test_cityscapes_with_ta_vaal_is_table_1_without_flags():
    """`dataset=cityscapes method=ta_vaal` picks up the protocol and Table 1's row itself."""
    cfg = compose_config("dataset=cityscapes", "method=ta_vaal")
    actual = {key: OmegaConf.select(cfg, key, default=ABSENT) for key in CITYSCAPES}
    assert actual == {**CITYSCAPES, "dataset.name": "cityscapes"}


@pytest.mark.parametrize("method", ["learning_loss", "vaal"])
def test_the_toys_baselines_share_its_ranker_discriminator_and_epochs(method):
    """TA-VAAL §4.1 sizes every method of its toy alike: Fig. 1 compares the samplers."""
    cfg = compose_config("+experiment=ta_vaal_moons", f"method={method}")
    assert (cfg.loss_prediction.hidden, list(cfg.loss_prediction.stages)) == (None, [1])
    assert (cfg.trainer.max_epochs, cfg.optimizer.lr) == (100, 0.1)
    if method == "vaal":
        assert (cfg.method.selector.discriminator_layers, cfg.method.selector.epochs_v) == (2, 100)
