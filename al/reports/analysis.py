"""`python -m al.reports.analysis RUN_DIR`: the papers' per-stage analyses of one run.

- From the diagnostics a selector saved with its picks (`picks/stage_KKK_diagnostics.npz`):
  TA-VAAL Fig. 8 — the discriminator's "labeled" likelihood of labeled vs candidate samples —
  and Fig. 7(b) — predicted loss against that likelihood, picks marked — as
  `RUN_DIR/analysis/stage_KKK.png`, with the discriminator's accuracy at 0.5 printed per stage.
- `--epmcm-gap` (DAST-AL Table 2): for a run trained with ISDA, the stage's model is retrained
  exactly and, over `--samples` sampled augmentations of each candidate's feature, the EPMCM
  upper bound Ē (Eq. 7) is compared with Monte-Carlo estimates of (a) the expectation it
  closes in form, E[Σ_j exp((w_j − w_ŷ)ᵀã + b_j − b_ŷ)] − 1, and (b) the quantity it bounds,
  E^∞ = E[1 − p_ŷ(ã)] (Eq. 6). The gap to (a) shrinks with the samples; the gap to (b) is the
  bound's own and does not.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from omegaconf import OmegaConf

from al.build import build_data
from al.errors import ConfigError, DataError, report_user_errors
from al.methods.dast_al import log_epmcm_bound
from al.reports.replay import retrain_stage, saved_picks
from al.runtime.notices import quiet_notices

SAMPLE_COUNTS = (100, 1000, 10_000, 100_000)  # DAST-AL Table 2's columns

quiet_notices()


def discriminator_figure(diagnostics: dict[str, np.ndarray], picks: np.ndarray, path: Path):
    """Fig. 8: histograms of D on labeled and candidates; Fig. 7(b): predicted loss vs D."""
    ranked = "candidate_predicted_loss" in diagnostics
    fig, axes = plt.subplots(1, 1 + ranked, figsize=(5 * (1 + ranked), 3.6), squeeze=False)
    bins = np.linspace(0, 1, 31)
    axes[0, 0].hist(
        diagnostics["labeled_discriminator"], bins, alpha=0.6, density=True, label="labeled"
    )
    axes[0, 0].hist(
        diagnostics["candidate_discriminator"], bins, alpha=0.6, density=True, label="candidates"
    )
    axes[0, 0].set(xlabel="D: probability of 'labeled'", ylabel="density")
    axes[0, 0].legend()
    if ranked:
        picked = np.isin(diagnostics["candidate_index"], picks)
        loss, likelihood = (
            diagnostics["candidate_predicted_loss"],
            diagnostics["candidate_discriminator"],
        )
        axes[0, 1].scatter(likelihood[~picked], loss[~picked], s=6, alpha=0.5, label="candidates")
        axes[0, 1].scatter(
            likelihood[picked], loss[picked], s=12, c="k", marker="x", label="picked"
        )
        axes[0, 1].set(xlabel="D: probability of 'labeled'", ylabel="predicted loss (ranker)")
        axes[0, 1].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def discriminator_accuracy(diagnostics: dict[str, np.ndarray]) -> float:
    """The share of labeled samples with D > 0.5 and candidates with D ≤ 0.5."""
    right = np.concatenate(
        [diagnostics["labeled_discriminator"] > 0.5, diagnostics["candidate_discriminator"] <= 0.5]
    )
    return float(right.mean())


def analyse_discriminators(run_dir: Path) -> list[str]:
    """One figure and one line per stage that saved discriminator outputs."""
    lines = []
    for saved in sorted((run_dir / "picks").glob("stage_*_diagnostics.npz")):
        stage = saved.name.split("_")[1]
        diagnostics = dict(np.load(saved))
        if "labeled_discriminator" not in diagnostics:
            continue
        picks = saved_picks(run_dir, int(stage))
        discriminator_figure(diagnostics, picks, run_dir / "analysis" / f"stage_{stage}.png")
        lines.append(
            f"stage {int(stage)}: D on labeled {diagnostics['labeled_discriminator'].mean():.3f}, "
            f"on candidates {diagnostics['candidate_discriminator'].mean():.3f}, accuracy "
            f"{discriminator_accuracy(diagnostics):.3f}"
        )
    return lines


def projection_samples(
    covariance: torch.Tensor, weight: torch.Tensor, count: int, generator: torch.Generator
) -> torch.Tensor:
    """u = (W − w_k) ε with ε ~ N(0, Σ_k), for each class k: (C, count, C), in float64."""
    classes = len(weight)
    samples = []
    for k in range(classes):
        differences = (weight - weight[k]).double()  # (C, A)
        sigma = covariance[k].double()
        if sigma.dim() == 1:
            sigma = torch.diag(sigma)
        q = differences @ sigma @ differences.T
        values, vectors = torch.linalg.eigh((q + q.T) / 2)
        root = vectors * values.clamp(min=0).sqrt()
        noise = torch.randn(count, classes, generator=generator, dtype=torch.float64)
        samples.append(noise @ root.T)
    return torch.stack(samples)


def epmcm_gaps(
    logits: torch.Tensor, quadratic: torch.Tensor, samples: torch.Tensor, chunk: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per candidate: (Ē − MC of the closed-form expectation, Ē − MC of E^∞), with the
    `samples` of `projection_samples` (its count sets the Monte-Carlo size)."""
    logits = logits.double()
    bound = torch.exp(log_epmcm_bound(logits, quadratic.double()))
    predicted = logits.argmax(1)
    relative = logits - logits.gather(1, predicted[:, None])  # z_j − z_ŷ, 0 at ŷ
    closed_sum = torch.zeros(len(logits), dtype=torch.float64)
    true_sum = torch.zeros(len(logits), dtype=torch.float64)
    for start in range(0, samples.shape[1], chunk):
        u = samples[predicted, start : start + chunk]  # (B, S', C), 0 at ŷ
        exponents = relative[:, None, :] + u
        total = torch.exp(exponents).sum(2)  # Σ_j over all j, the j = ŷ term is 1
        closed_sum += (total - 1).sum(1)
        true_sum += (1 - 1 / total).sum(1)
    count = samples.shape[1]
    return bound - closed_sum / count, bound - true_sum / count


def epmcm_table(run_dir: Path, stage: int, counts: tuple[int, ...], candidates: int) -> str:
    """DAST-AL Table 2 for one stage's ISDA model: gap mean ± std per sample count."""
    cfg = OmegaConf.load(run_dir / "state" / "config.yaml")
    data = build_data(cfg.dataset)
    module, _, pool = retrain_stage(cfg, data, run_dir, stage)
    if getattr(module, "covariance", None) is None:
        raise ConfigError(f"{run_dir} did not train with ISDA (isda.enabled=false): no Σ to sample")
    generator = torch.Generator().manual_seed(0)
    chosen = np.sort(np.random.default_rng(0).permutation(pool.unlabeled_indices)[:candidates])
    module.eval()
    with torch.no_grad():
        x = torch.stack([x for x, _ in data.pool.unlabeled(chosen)])
        logits = module(x).double()
        weight = module.backbone.classifier.weight.double()
        quadratic = module.covariance.quadratic_terms(weight)
        rows = [f"{'samples':>8}  {'gap to the closed form':>24}  {'gap to E^inf (Eq. 6)':>22}"]
        for count in counts:
            samples = projection_samples(module.covariance.covariance, weight, count, generator)
            closed, true = epmcm_gaps(logits, quadratic, samples)
            rows.append(
                f"{count:>8}  {closed.abs().mean():>12.4f} ± {closed.abs().std():<9.4f}"
                f"  {true.mean():>10.4f} ± {true.std():<9.4f}"
            )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--epmcm-gap", action="store_true", help="DAST-AL Table 2")
    parser.add_argument("--stage", type=int, default=0, help="the stage of --epmcm-gap")
    parser.add_argument("--samples", type=int, nargs="+", default=list(SAMPLE_COUNTS))
    parser.add_argument("--candidates", type=int, default=1000, help="DAST-AL: 1000")
    args = parser.parse_args(argv)
    with report_user_errors():
        if args.epmcm_gap:
            print(epmcm_table(args.run_dir, args.stage, tuple(args.samples), args.candidates))
            return
        lines = analyse_discriminators(args.run_dir)
        if not lines:
            raise DataError(
                f"{args.run_dir}/picks holds no discriminator outputs: run a VAAL method"
            )
    print("\n".join(lines))
    print(f"figures: {args.run_dir / 'analysis'}")


if __name__ == "__main__":
    main()
