"""Golden test: ISDA's running class covariance and augmented logits against the authors'
`ISDALoss` (blackfeather-wang/ISDA-for-Deep-Networks; fixture made by make_isda.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from al.models.isda import ClassCovariance, augmented_logits

FIXTURE = json.loads(Path(__file__).with_name("isda.json").read_text())
ATOL = 1e-5


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)


def reference_steps():
    inputs = FIXTURE["inputs"]
    batches = zip(inputs["features"], inputs["labels"], inputs["ratios"], strict=True)
    for (features, labels, ratio), expected in zip(batches, FIXTURE["steps"], strict=True):
        yield tensor(features), torch.tensor(labels), ratio, expected


def test_covariance_update_and_augmented_logits_match_isda_loss():
    """Three updates of count, mean and (full) covariance, then z + (λ/2)·q[y] and its CE."""
    weight, bias = tensor(FIXTURE["inputs"]["weight"]), tensor(FIXTURE["inputs"]["bias"])
    classes, dim = weight.shape
    covariance = ClassCovariance(classes, dim)
    for features, labels, ratio, expected in reference_steps():
        covariance.update(features, labels)
        torch.testing.assert_close(covariance.count, tensor(expected["count"]))
        torch.testing.assert_close(covariance.mean, tensor(expected["mean"]), atol=ATOL, rtol=0)
        torch.testing.assert_close(
            covariance.covariance, tensor(expected["covariance"]), atol=ATOL, rtol=0
        )
        logits = features @ weight.T + bias
        torch.testing.assert_close(logits, tensor(expected["logits"]), atol=ATOL, rtol=0)
        augmented = augmented_logits(logits, covariance.quadratic_terms(weight), labels, ratio)
        torch.testing.assert_close(
            augmented, tensor(expected["augmented_logits"]), atol=ATOL, rtol=0
        )
        loss = F.cross_entropy(augmented, labels)
        assert loss.item() == pytest.approx(expected["loss"], abs=ATOL)


def test_diagonal_covariance_is_the_diagonal_of_isda_loss_covariance():
    """`covariance: diagonal` keeps the per-dimension variances of the full update."""
    classes, dim = torch.tensor(FIXTURE["inputs"]["weight"]).shape
    covariance = ClassCovariance(classes, dim, diagonal=True)
    for features, labels, _, expected in reference_steps():
        covariance.update(features, labels)
        full = tensor(expected["covariance"])
        torch.testing.assert_close(
            covariance.covariance, full.diagonal(dim1=1, dim2=2), atol=ATOL, rtol=0
        )


def test_fixture_holds_a_class_absent_from_the_first_batch():
    """The first step's absent class keeps zero statistics (ISDA's NaN weight set to 0)."""
    first = FIXTURE["steps"][0]
    absent = [c for c, n in enumerate(first["count"]) if n == 0]
    assert absent
    assert all(v == 0 for row in first["covariance"][absent[0]] for v in row)
