"""`python -m al.reports.lpm_check RUN_DIR [--stage K]`: how well a run's loss prediction
module ranked one stage's candidates by their true loss, known after the fact
from the pool's labels.

For a run of a method that trains the module (`learning_loss`, `learning_loss_v2`, `ta_vaal`), the
stage's task module is retrained exactly (`al.reports.replay.retrain_stage`: its picks are checked
against the saved ones). On that stage's candidates it prints Spearman's ρ between predicted and
true loss (cross-entropy with the label), over all candidates and the mean within a class; the
picks by class; the picks' mean true loss against all candidates'; the same for the entropy of the
same model's softmax (a reference score); and ρ of a fresh module of the same shape trained by the
hinge pair loss on the frozen stage outputs of other candidates with their true losses, from as
many samples as the stage had labels and from half the candidates: the ranking the module's inputs
allow at each training-set size.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from al.budget import Budget
from al.build import build_data
from al.data import datamodule_for
from al.errors import ConfigError, report_user_errors
from al.models.loss_prediction import LossPredictionModule, hinge_pair_loss
from al.reports.replay import retrain_stage
from al.runtime.notices import quiet_notices

quiet_notices()


def rank_correlation(score: np.ndarray, true_loss: np.ndarray) -> float:
    """Spearman's ρ of `score` against `true_loss`."""
    return float(spearmanr(score, true_loss).statistic)


def ranking_summary(
    score: np.ndarray, true_loss: np.ndarray, labels: np.ndarray, query: int, classes: int
) -> dict:
    """ρ over all samples and its mean within the classes that have two samples or more; the
    top-`query` picks by class; their mean true loss and that of all samples."""
    within = [
        rank_correlation(score[labels == c], true_loss[labels == c])
        for c in range(classes)
        if (labels == c).sum() > 1
    ]
    picks = np.argsort(-score, kind="stable")[:query]
    return {
        "rho": rank_correlation(score, true_loss),
        "rho_within_class": float(np.mean(within)),
        "picks_by_class": np.bincount(labels[picks], minlength=classes).tolist(),
        "picks_true_loss": float(true_loss[picks].mean()),
        "all_true_loss": float(true_loss.mean()),
    }


def fresh_module_rho(
    stages: Sequence[torch.Tensor],
    true_loss: torch.Tensor,
    train: torch.Tensor,
    held_out: torch.Tensor,
    steps: int = 600,
) -> float:
    """ρ on `held_out` of a fresh module (width 128) trained by the hinge pair loss (Adam,
    lr 1e-3, batches of 32) on the `train` samples' pooled stage outputs and true losses."""
    torch.manual_seed(0)
    module = LossPredictionModule([s.shape[1] for s in stages], hidden=128)
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    for _ in range(steps):
        batch = train[torch.randperm(len(train))[:32]]
        optimizer.zero_grad()
        hinge_pair_loss(module([s[batch] for s in stages]), true_loss[batch]).backward()
        optimizer.step()
    with torch.no_grad():
        predicted = module([s[held_out] for s in stages])
    return rank_correlation(predicted.numpy(), true_loss[held_out].numpy())


@torch.no_grad()
def candidate_outputs(module, loader, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per candidate, in eval mode: predicted loss, true loss, softmax entropy, label and the
    pooled stage outputs the module reads."""
    module.eval()
    parts: dict[str, list] = {"predicted": [], "true": [], "entropy": [], "label": [], "stages": []}
    for x, indices in loader:
        out = module.backbone(x.to(module.device))
        labels = targets[indices].to(module.device)
        probabilities = out.logits.softmax(1)
        parts["predicted"].append(module.loss_predictor(out.stages))
        parts["true"].append(F.cross_entropy(out.logits, labels, reduction="none"))
        parts["entropy"].append(-(probabilities * probabilities.clamp_min(1e-12).log()).sum(1))
        parts["label"].append(labels)
        parts["stages"].append([s.flatten(2).mean(2) if s.dim() > 2 else s for s in out.stages])
    stages = [torch.cat(level).cpu() for level in zip(*parts.pop("stages"), strict=True)]
    return {**{key: torch.cat(value).cpu() for key, value in parts.items()}, "stages": stages}


def check(run_dir: Path, stage: int) -> list[str]:
    """The report's lines for `stage` of the run in `run_dir`."""
    cfg = OmegaConf.load(run_dir / "state" / "config.yaml")
    if not cfg.method.module.get("train_loss_prediction"):
        raise ConfigError(
            f"{run_dir} ran {cfg.method.name}, which trains no loss prediction module: check "
            "a run of learning_loss, learning_loss_v2, ta_vaal or one with lpm_on_all_methods=true"
        )
    data = build_data(cfg.dataset)
    module, _, pool = retrain_stage(cfg, data, run_dir, stage)
    budget = Budget(**cfg.budget).resolve(len(data.pool_targets))
    candidates = pool.candidates(budget.subset, cfg.seed, stage)
    loader = datamodule_for(data, pool.labeled_indices, **cfg.loader).inputs_loader(candidates)
    outputs = candidate_outputs(module, loader, torch.as_tensor(np.asarray(data.pool_targets)))
    true, labels = outputs["true"].numpy(), outputs["label"].numpy()
    lines = [f"{run_dir}, stage {stage}: {len(candidates)} candidates, query {budget.query}"]
    for name in ("predicted", "entropy"):
        summary = ranking_summary(
            outputs[name].numpy(), true, labels, budget.query, data.num_classes
        )
        lines.append(
            f"{name:>9} loss ranking: rho {summary['rho']:.3f}, within a class "
            f"{summary['rho_within_class']:.3f}; picks by class {summary['picks_by_class']}; "
            f"picks' mean true loss {summary['picks_true_loss']:.3f} "
            f"(all candidates {summary['all_true_loss']:.3f})"
        )
    order = torch.randperm(len(candidates), generator=torch.Generator().manual_seed(stage))
    half, held_out = order[: len(order) // 2], order[len(order) // 2 :]
    for count in (len(pool.labeled_indices), len(half)):
        rho = fresh_module_rho(outputs["stages"], outputs["true"], half[:count], held_out)
        lines.append(f"fresh module on {count} candidates' true losses: rho {rho:.3f} on the rest")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--stage", type=int, default=0)
    args = parser.parse_args(argv)
    with report_user_errors():
        print("\n".join(check(args.run_dir, args.stage)))


if __name__ == "__main__":
    main()
