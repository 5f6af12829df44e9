"""`stage`: one CIFAR-format ResNet-18 stage through al's Lightning path (the loop's training
step, on CIFAR-10-format files the benchmark writes) in fp32 on the fast data path, against
the same stage on the per-sample torchvision path and in bf16 mixed precision
(`trainer.precision=bf16-mixed`): the two choices a GPU run makes first."""

from __future__ import annotations

from al.bench.figures import Figure
from al.bench.loader import fake_data
from al.bench.overhead import Scale, cifar_scale, lightning_stage, stage_config, stage_data
from al.bench.settings import Settings

VARIANTS = {
    "per-sample loader": ("dataset.fast_path=false",),
    "bf16-mixed": ("trainer.precision=bf16-mixed",),
}


def stage_seconds(settings: Settings, scale: Scale, root: str, extra: tuple[str, ...]) -> float:
    """Seconds of one `scale` stage with the `extra` overrides, after a one-epoch warm-up."""
    cfg = stage_config(settings, scale.epochs, scale, root, extra)
    data, datamodule = stage_data(cfg, scale)
    warm_up = stage_config(settings, 1, scale, root, extra)
    lightning_stage(warm_up, datamodule, data.num_classes)
    return lightning_stage(cfg, datamodule, data.num_classes)


def run(settings: Settings) -> list[Figure]:
    scale = cifar_scale(settings, 2048)
    with fake_data(settings.pick(5_000, 100)) as root:
        baseline, variants = [], {name: [] for name in VARIANTS}
        for _ in range(settings.repeats):
            baseline.append(stage_seconds(settings, scale, str(root), ()))
            for name, extra in VARIANTS.items():
                variants[name].append(stage_seconds(settings, scale, str(root), extra))
    what = f"{scale.name}: {scale.labels} labels, {scale.epochs} epochs"
    return [
        Figure(
            "stage",
            f"{what}, {name}",
            "fp32 on the fast path (seconds)",
            [a / b for a, b in zip(seconds, baseline, strict=True)],
            {"seconds": seconds, "baseline_seconds": baseline},
        )
        for name, seconds in variants.items()
    ]
