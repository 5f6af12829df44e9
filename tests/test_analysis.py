"""The papers' analyses from a run: saved discriminator outputs (TA-VAAL Fig. 7b / 8) and the
EPMCM bound against Monte-Carlo estimates (DAST-AL Table 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_vaal import select_two_pools

from al.loop import run
from al.methods.dast_al import log_epmcm_bound
from al.reports.analysis import discriminator_accuracy, epmcm_gaps, main, projection_samples

from conftest import FASTER


def test_saved_discriminator_outputs_are_the_ones_that_picked():
    selector, picks, scores, _ = select_two_pools(epochs_v=5)
    saved = selector.diagnostics
    assert saved["labeled_index"].tolist() == list(range(40))
    assert saved["candidate_index"].tolist() == list(range(500, 530))
    assert saved["labeled_discriminator"].shape == (40,)
    positions = picks.numpy() - 500
    assert np.allclose(1 - saved["candidate_discriminator"][positions], scores.numpy())
    order = np.argsort(saved["candidate_discriminator"], kind="stable")[:10]
    assert sorted(saved["candidate_index"][order].tolist()) == sorted(picks.tolist())


def test_discriminator_accuracy_counts_both_sides():
    diagnostics = {
        "labeled_discriminator": np.array([0.9, 0.8, 0.2]),  # 2 of 3 right
        "candidate_discriminator": np.array([0.1, 0.6]),  # 1 of 2 right
    }
    assert discriminator_accuracy(diagnostics) == 3 / 5


def test_a_ta_vaal_run_saves_its_discriminator_and_ranker_and_is_drawn(
    tiny_config, tmp_path, capsys
):
    cfg = tiny_config(
        "method=ta_vaal", "budget.stages=1", "trainer.max_epochs=2", *FASTER["ta_vaal"]
    )
    run(cfg, tmp_path)
    saved = np.load(tmp_path / "picks" / "stage_000_diagnostics.npz")
    assert len(saved["labeled_index"]) == len(saved["labeled_discriminator"]) == 20
    candidates = len(saved["candidate_index"])
    assert candidates == 1297 - 20 and len(saved["candidate_predicted_loss"]) == candidates
    main([str(tmp_path)])
    assert (tmp_path / "analysis" / "stage_000.png").stat().st_size > 0
    assert "stage 0: D on labeled" in capsys.readouterr().out


def constructed_isda_model(candidates: int = 300, classes: int = 4, features: int = 5):
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(classes, features, generator=generator, dtype=torch.float64)
    covariance = 0.3 * torch.eye(features, dtype=torch.float64).repeat(classes, 1, 1)
    logits = 2 * torch.randn(candidates, classes, generator=generator, dtype=torch.float64)
    differences = weight[None] - weight[:, None]
    quadratic = torch.einsum("kja,kab,kjb->kj", differences, covariance, differences)
    return logits, weight, covariance, quadratic


def test_the_bound_matches_its_closed_form_expectation_as_samples_grow():
    logits, weight, covariance, quadratic = constructed_isda_model()
    generator = torch.Generator().manual_seed(1)
    gaps = {}
    for count in (100, 100_000):
        samples = projection_samples(covariance, weight, count, generator)
        if count == 100_000:  # u_j = (w_j − w_k)ᵀε has variance q[k, j]
            assert torch.allclose(samples[0].var(0), quadratic[0], rtol=0.03)
        closed, true = epmcm_gaps(logits, quadratic, samples)
        gaps[count] = (closed.abs().mean().item(), true)
    assert gaps[100_000][0] < gaps[100][0] / 5  # Table 2's shrinking gap
    assert gaps[100_000][0] < 0.05 * torch.exp(log_epmcm_bound(logits, quadratic)).mean()
    true = gaps[100_000][1]
    assert (true > 0).all()  # Ē bounds E^∞ = E[1 − p_ŷ] from above (Eq. 7's inequality)
    assert true.mean() > 10 * gaps[100_000][0]  # and that gap does not vanish with samples


def test_the_epmcm_gap_of_a_dast_al_run(tiny_config, tmp_path, capsys):
    run(tiny_config("method=dast_al", "budget.stages=1", "trainer.max_epochs=2"), tmp_path)
    main([str(tmp_path), "--epmcm-gap", "--samples", "100", "1000", "--candidates", "50"])
    lines = capsys.readouterr().out.strip().splitlines()
    table = lines[[line.split()[:1] for line in lines].index(["samples"]) :]
    assert [line.split()[0] for line in table[1:]] == ["100", "1000"]
    for row in table[1:]:  # samples, |gap (a)| mean ± std, gap (b) mean ± std
        _, closed, _, _, true, _, _ = row.split()
        assert 0 <= float(closed) < float("inf") and float(true) > 0  # Ē ≥ E^∞ (Eq. 7)


def test_a_run_without_what_an_analysis_needs_is_one_line(tiny_config, tmp_path, capsys):
    run(tiny_config("method=random", "budget.stages=1", "trainer.max_epochs=1"), tmp_path)
    for argv, message in (
        ([], "holds no discriminator outputs"),
        (["--epmcm-gap"], "did not train with ISDA"),
    ):
        with pytest.raises(SystemExit) as exit_status:
            main([str(tmp_path), *argv])
        assert exit_status.value.code == 2 and message in capsys.readouterr().err
