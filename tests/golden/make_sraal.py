"""Make sraal.json: SRAAL's online uncertainty indicator (OUI), its VAE loss and one training
iteration's generator and state-discriminator objectives, by the authors' code.

Usage: python tests/golden/make_sraal.py REPO [OUT]
  REPO: Beichen1996/SRAAL checked out (commit in COMMIT below).

Runs, from REPO:
- `uncertainty_score` of resnet.py (OUI, with torch.var's unbiased variance) on seeded
  logits of 5 classes, one row nearly one-hot (no row uniform: the code divides 0 by 0);
- `Solver.vae_loss` of solver.py (5·MSE + β·KL summed over dimensions, averaged over the
  batch) at two β;
- one iteration of `Solver.train` (num_vae_steps 2, num_adv_steps 1, β 1, λ 1, the code's) on
  6 labeled and 6 unlabeled samples in unshuffled batches of 3; every loss the code calls
  `.backward()` on is recorded (generator, generator, state discriminator), with the OUI it
  computed for the unlabeled samples. Labels repeat from batch to batch: the code's second
  generator step reuses the first batch's labels (`labeled_imgs, _ = next(...)`), which then
  changes nothing.
Stubs with seeded weights, stored here, stand for the networks: the VAE maps x to
μ = x·W_μ, log σ² = ½·tanh(x·W_σ), z = μ (no noise), reconstruction z₁·W_d + b_d and class
logits z₂·W_c + b_c from the halves z₁, z₂ of z; the state discriminator is sigmoid(μ·w + b)
(B values; the code's returns B × 1 against B targets, compared element by element by the
torch 1.x it ran on); the task model returns x·W_t. Its training (`resnet.train`) is skipped.
`.cuda()` is the identity (CPU run). Not run by the tests.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

REPOSITORY = "Beichen1996/SRAAL"
COMMIT = "274539c6a2006854f9db7d9bbe9f25433d26b1fd"
WIDTH, LATENT, CLASSES, LABELED, UNLABELED, BATCH, OUI_ROWS = 6, 4, 5, 6, 6, 3, 10


class StubVAE(nn.Module):
    """The code's VAE interface: (x, labeled) → (recon, z, μ, log σ²[, class logits])."""

    def __init__(self, weights: dict) -> None:
        super().__init__()
        for name in ("encoder", "decoder", "decoder_bias", "classifier", "classifier_bias"):
            self.register_buffer(name, torch.tensor(weights[name]))
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, labeled: int = 1):
        h = x @ self.encoder
        mu, logvar = h[:, :LATENT], 0.5 * torch.tanh(h[:, LATENT:])
        first, second = torch.split(mu, [LATENT // 2, LATENT // 2], dim=1)
        recon = first @ self.decoder + self.decoder_bias
        if labeled == 1:
            return recon, mu, mu, logvar, second @ self.classifier + self.classifier_bias
        return recon, mu, mu, logvar


class StubDiscriminator(nn.Module):
    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weights["discriminator"]))
        self.bias = nn.Parameter(torch.tensor(weights["discriminator_bias"]))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(mu @ self.weight + self.bias)


class StubTaskModel(nn.Module):
    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.unused = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor):
        return x @ self.weight, None


class Samples(Dataset):
    def __init__(self, x: np.ndarray, labels: np.ndarray) -> None:
        self.x, self.labels = torch.tensor(x), torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.labels[i], i


def float32(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32)


def recorded_backward_losses(run) -> list[float]:
    losses = []
    original = torch.Tensor.backward

    def recording(self, *args, **kwargs):
        losses.append(self.item())
        return original(self, *args, **kwargs)

    torch.Tensor.backward = recording
    try:
        run()
    finally:
        torch.Tensor.backward = original
    return losses


def oui_case(resnet, rng: np.random.Generator) -> dict:
    logits = float32(rng.normal(0, 1.5, (OUI_ROWS, CLASSES)))
    logits[0] = [9.0, 0.0, 0.5, -0.5, 0.2]  # nearly one-hot
    logits[1] = [3.0, 2.9, -1.0, -1.0, -1.0]  # two rival classes
    loader = DataLoader(Samples(logits, np.zeros(OUI_ROWS, dtype=np.int64)), batch_size=4)
    scores = resnet.uncertainty_score(StubTaskModel(torch.eye(CLASSES)), loader, CLASSES)
    return {"logits": logits.tolist(), "oui": [float(scores[i]) for i in range(OUI_ROWS)]}


def vae_loss_cases(runner, rng: np.random.Generator) -> list[dict]:
    cases = []
    for beta in (1.0, 2.5):
        x, recon = (torch.tensor(float32(rng.normal(0, 1, (4, 3, 2, 2)))) for _ in range(2))
        mu = torch.tensor(float32(rng.normal(0, 1, (4, LATENT))))
        logvar = torch.tensor(float32(rng.normal(0, 0.5, (4, LATENT))))
        cases.append(
            {
                "x": x.tolist(),
                "recon": recon.tolist(),
                "mu": mu.tolist(),
                "logvar": logvar.tolist(),
                "beta": beta,
                "loss": runner.vae_loss(x, recon, mu, logvar, beta).item(),
            }
        )
    return cases


def main(repo: Path, out: Path) -> None:
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU run
    sys.path.insert(0, str(repo))
    import resnet
    import solver

    rng = np.random.default_rng(17)
    half = LATENT // 2
    weights = {
        "encoder": float32(rng.normal(0, 0.3, (WIDTH, 2 * LATENT))).tolist(),
        "decoder": float32(rng.normal(0, 0.6, (half, WIDTH))).tolist(),
        "decoder_bias": float32(rng.normal(0, 0.1, WIDTH)).tolist(),
        "classifier": float32(rng.normal(0, 0.8, (half, CLASSES))).tolist(),
        "classifier_bias": float32(rng.normal(0, 0.1, CLASSES)).tolist(),
        "discriminator": float32(rng.normal(0, 1.0, LATENT)).tolist(),
        "discriminator_bias": float32(rng.normal(0, 0.2, ())).tolist(),
        "task_model": float32(rng.normal(0, 0.8, (WIDTH, CLASSES))).tolist(),
    }
    oui = oui_case(resnet, rng)
    labeled = float32(rng.normal(0, 0.5, (LABELED, WIDTH)))
    unlabeled = float32(rng.normal(0.3, 0.5, (UNLABELED, WIDTH)))
    labels = np.tile(rng.integers(0, CLASSES, BATCH), LABELED // BATCH)

    args = SimpleNamespace(
        budget=2,
        train_iterations=1,
        task_epochs=0,
        classes=CLASSES,
        cuda=False,
        num_vae_steps=2,
        num_adv_steps=1,
        beta=1.0,
        adversary_param=1.0,
    )
    runner = solver.Solver(args, None)
    vae_losses = vae_loss_cases(runner, rng)
    solver.resnet.train = lambda *args, **kwargs: None  # the task model is a fixed stub
    scores = {}
    original_uncertainty_score = solver.resnet.uncertainty_score

    def recording_uncertainty_score(*args, **kwargs):
        scores.update(original_uncertainty_score(*args, **kwargs))
        return scores

    solver.resnet.uncertainty_score = recording_uncertainty_score
    loader = DataLoader(Samples(labeled, labels), batch_size=BATCH, shuffle=False)
    unlabeled_loader = DataLoader(
        Samples(unlabeled, np.zeros(UNLABELED, dtype=np.int64)), batch_size=BATCH, shuffle=False
    )
    losses = recorded_backward_losses(
        lambda: runner.train(
            loader,
            StubTaskModel(torch.tensor(weights["task_model"])),
            StubVAE(weights),
            StubDiscriminator(weights),
            unlabeled_loader,
        )
    )
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "resnet.py, solver.py",
            "function": "uncertainty_score (OUI); Solver.vae_loss; Solver.train (one "
            "iteration: generator and state-discriminator objectives)",
            "dtype": "float32",
        },
        "made_by": "tests/golden/make_sraal.py",
        "oui": oui,
        "vae_loss": vae_losses,
        "weights": weights,
        "train": {
            "labeled": labeled.tolist(),
            "labels": labels.tolist(),
            "unlabeled": unlabeled.tolist(),
            "batch_size": BATCH,
            "vae_steps": args.num_vae_steps,
            "unlabeled_oui": [float(scores[i]) for i in range(UNLABELED)],
            "generator_objectives": losses[0:2],
            "discriminator_objective": losses[2],
        },
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("sraal.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
