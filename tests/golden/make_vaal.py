"""Make vaal.json: VAAL's VAE and discriminator objectives and its sampler, by the authors' code.

Usage: python tests/golden/make_vaal.py REPO [OUT]
  REPO: sinhasam/vaal checked out (commit in COMMIT below).

Runs, from REPO/solver.py and REPO/sampler.py:
- `Solver.vae_loss` (MSE + β·KL summed) on seeded image-shaped tensors at two β;
- one iteration of `Solver.train` (args: num_vae_steps 2, num_adv_steps 1, β 1, λ 1, the
  code's defaults) on 6 labeled and 6 unlabeled samples in unshuffled batches of 3, so its
  two VAE steps read batches (1, 1) and (2, 2), and its discriminator step the last of them;
  every loss the code calls `.backward()` on is recorded (task model, VAE, VAE, discriminator);
- `AdversarySampler.sample` on 10 candidates (budget 4).
The networks are stubs with seeded weights, stored here: the "VAE" maps a sample x to
μ = x·W_μ, log σ² = ½·tanh(x·W_σ), z = μ (no noise) and the reconstruction z·W_d + b_d; the
discriminator is sigmoid(μ·w + b), returning B values (the code's returns B × 1 against B
targets, which the torch 1.1 it pins compared element by element). The VAE's weights are
buffers and the discriminator's are only stepped after the last recorded loss, so every
recorded loss sees the stored weights. `.cuda()` is never reached (args.cuda = False). Not
run by the tests.
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

REPOSITORY = "sinhasam/vaal"
COMMIT = "67263f32665990a9408430a86df5b6ecd96a812d"
WIDTH, LATENT, LABELED, UNLABELED, BATCH, CANDIDATES, BUDGET = 6, 3, 6, 6, 3, 10, 4


class StubVAE(nn.Module):
    """The code's VAE interface: x → (reconstruction, z, μ, log σ²), with z = μ."""

    def __init__(self, weights: dict) -> None:
        super().__init__()
        for name in ("encoder", "decoder", "decoder_bias"):
            self.register_buffer(name, torch.tensor(weights[name]))
        self.unused = nn.Parameter(torch.zeros(1))  # Adam refuses an empty parameter list

    def forward(self, x: torch.Tensor):
        h = x @ self.encoder
        mu, logvar = h[:, :LATENT], 0.5 * torch.tanh(h[:, LATENT:])
        return mu @ self.decoder + self.decoder_bias, mu, mu, logvar


class StubDiscriminator(nn.Module):
    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weights["discriminator"]))
        self.bias = nn.Parameter(torch.tensor(weights["discriminator_bias"]))

    def forward(self, mu: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(mu @ self.weight + self.bias)


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
    """The value of every tensor `run()` calls .backward() on, in order."""
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


def main(repo: Path, out: Path) -> None:
    sys.path.insert(0, str(repo))
    import sampler
    import solver

    rng = np.random.default_rng(9)
    weights = {
        "encoder": float32(rng.normal(0, 0.3, (WIDTH, 2 * LATENT))).tolist(),
        "decoder": float32(rng.normal(0, 0.6, (LATENT, WIDTH))).tolist(),
        "decoder_bias": float32(rng.normal(0, 0.1, WIDTH)).tolist(),
        "discriminator": float32(rng.normal(0, 1.0, LATENT)).tolist(),
        "discriminator_bias": float32(rng.normal(0, 0.2, ())).tolist(),
    }
    labeled = float32(rng.normal(0, 0.5, (LABELED, WIDTH)))
    unlabeled = float32(rng.normal(0.3, 0.5, (UNLABELED, WIDTH)))
    labels = rng.integers(0, 2, LABELED)
    candidates = float32(rng.normal(0.1, 0.5, (CANDIDATES, WIDTH)))

    args = SimpleNamespace(
        budget=BUDGET,
        num_images=BATCH,  # train_iterations = num_images · train_epochs // batch_size = 1
        train_epochs=1,
        batch_size=BATCH,
        cuda=False,
        num_vae_steps=2,
        num_adv_steps=1,
        beta=1.0,
        adversary_param=1.0,
    )
    labeled_loader = DataLoader(Samples(labeled, labels), batch_size=BATCH, shuffle=False)
    unlabeled_loader = DataLoader(
        Samples(unlabeled, np.zeros(UNLABELED, dtype=np.int64)), batch_size=BATCH, shuffle=False
    )
    test_loader = [(torch.tensor(labeled), torch.tensor(labels))]
    runner = solver.Solver(args, test_loader)
    torch.manual_seed(0)
    task_model = nn.Linear(WIDTH, 2)  # trained first in each iteration; its loss is not kept
    vae, discriminator = StubVAE(weights), StubDiscriminator(weights)
    losses = recorded_backward_losses(
        lambda: runner.train(
            labeled_loader, labeled_loader, task_model, vae, discriminator, unlabeled_loader
        )
    )

    vae_losses = []
    for beta in (1.0, 2.5):
        x = torch.tensor(float32(rng.normal(0, 1, (4, 3, 2, 2))))
        recon = torch.tensor(float32(rng.normal(0, 1, (4, 3, 2, 2))))
        mu = torch.tensor(float32(rng.normal(0, 1, (4, LATENT))))
        logvar = torch.tensor(float32(rng.normal(0, 0.5, (4, LATENT))))
        loss = runner.vae_loss(x, recon, mu, logvar, beta)
        vae_losses.append(
            {
                "x": x.tolist(),
                "recon": recon.tolist(),
                "mu": mu.tolist(),
                "logvar": logvar.tolist(),
                "beta": beta,
                "loss": loss.item(),
            }
        )

    candidate_loader = DataLoader(
        Samples(candidates, np.zeros(CANDIDATES, dtype=np.int64)), batch_size=4, shuffle=False
    )
    picks = sampler.AdversarySampler(BUDGET).sample(
        StubVAE(weights), StubDiscriminator(weights), candidate_loader, False
    )
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "solver.py, sampler.py",
            "function": "Solver.vae_loss; Solver.train (one iteration: VAE objective, "
            "discriminator objective); AdversarySampler.sample",
            "dtype": "float32",
        },
        "made_by": "tests/golden/make_vaal.py",
        "weights": weights,
        "vae_loss": vae_losses,
        "train": {
            "labeled": labeled.tolist(),
            "unlabeled": unlabeled.tolist(),
            "batch_size": BATCH,
            "vae_steps": args.num_vae_steps,
            "beta": args.beta,
            "lambda_adv": args.adversary_param,
            "vae_objectives": losses[1:3],
            "discriminator_objective": losses[3],
        },
        "sampler": {
            "candidates": candidates.tolist(),
            "budget": BUDGET,
            "picks": [int(i) for i in picks],
        },
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("vaal.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
