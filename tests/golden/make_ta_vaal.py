"""Make ta_vaal.json: TA-VAAL's ranking loss, rank-conditioned VAE and discriminator objectives
and its sampler, by the authors' code.

Usage: python tests/golden/make_ta_vaal.py REPO [OUT]
  REPO: cubeyoung/TA-VAAL (Kwanyoung Kim's TA-VAAL code) checked out (commit in COMMIT).

Runs, from REPO:
- `LossPredLoss` of train_test.py (the ranking loss, Eq. 1; read with `ast`, its module
  imports the training setup) on seeded even batches, with gradients;
- `vae_loss` of selection_methods.py (MSE + β·KL averaged) at two β;
- two iterations of `train_vaal` (1 VAE and 1 discriminator step each, β = λ = 1, the code's)
  on 4 labeled and 4 unlabeled samples, each loader one unshuffled batch: iteration 0 feeds
  U(0, 1) draws (NumPy's generator, seeded) to decoder and discriminator, iteration 1 the
  ranker's σ(r) to the decoder and r to the discriminator; every loss the code calls
  `.backward()` on is recorded, with the rank values each network received;
- the TA-VAAL branch of `query_samples` on 10 candidates, its picks taken as main.py takes
  them (`subset[arg][-ADDENDUM:]`).
Stubs with seeded weights, stored here, stand for the networks: the task model returns its
input as features, the ranker r = x·w_r + b_r; the VAE and discriminator are those of
vaal_stubs.py in the code's interface (`vae(r, x)`, `discriminator(r, z)`, B × 1 outputs).
The optimizers given to `train_vaal` have learning rate 0, so both iterations see the stored
weights; `query_samples` gets the stubs for its `VAE()` / `Discriminator(32)` and skips
`train_vaal`. `.cuda()` is the identity and `torch.cuda.device` a no-op (CPU run); the
config globals are set so `train_vaal` runs 2 iterations. Not run by the tests.
"""

from __future__ import annotations

import ast
import contextlib
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

REPOSITORY = "cubeyoung/TA-VAAL"
COMMIT = "11610718c431f848d19aa6a94b781dfc0dcfd81d"
WIDTH, LATENT, LABELED, UNLABELED, CANDIDATES, ADDENDUM = 6, 3, 4, 4, 10, 4
BATCH_SIZES = [2, 8]


class StubVAE(nn.Module):
    """The code's VAE interface: (r, x) → (reconstruction, [z | r], μ, log σ²), z = μ."""

    def __init__(self, weights: dict, seen: list) -> None:
        super().__init__()
        for name in ("encoder", "decoder", "decoder_bias"):
            self.register_buffer(name, torch.tensor(weights[name]))
        self.unused = nn.Parameter(torch.zeros(1))
        self.seen = seen

    def forward(self, r: torch.Tensor, x: torch.Tensor):
        self.seen.append(r[:, 0].tolist())
        h = x @ self.encoder
        mu, logvar = h[:, :LATENT], 0.5 * torch.tanh(h[:, LATENT:])
        z = torch.cat([mu, r], 1)
        return z @ self.decoder + self.decoder_bias, z, mu, logvar


class StubDiscriminator(nn.Module):
    def __init__(self, weights: dict, seen: list) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor(weights["discriminator"]))
        self.bias = nn.Parameter(torch.tensor(weights["discriminator_bias"]))
        self.seen = seen

    def forward(self, r: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.seen.append(r[:, 0].tolist())
        return torch.sigmoid(torch.cat([z, r], 1) @ self.weight + self.bias)[:, None]


class StubTaskModel(nn.Module):
    def forward(self, x: torch.Tensor):
        return None, None, x


class StubRanker(nn.Module):
    def __init__(self, weights: dict) -> None:
        super().__init__()
        self.weight = torch.tensor(weights["ranker"])
        self.bias = torch.tensor(weights["ranker_bias"])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features @ self.weight + self.bias)[:, None]


class Samples(Dataset):
    def __init__(self, x: np.ndarray) -> None:
        self.x = torch.tensor(x)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], 0, i


def float32(array: np.ndarray) -> np.ndarray:
    return array.astype(np.float32)


def reference_function(path: Path, name: str, namespace: dict):
    tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module([node], []), str(path), "exec"), namespace)
    return namespace[name]


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


def ranking_loss_cases(repo: Path, rng: np.random.Generator) -> list[dict]:
    loss_pred_loss = reference_function(
        repo / "train_test.py", "LossPredLoss", {"torch": torch, "nn": nn}
    )
    cases = []
    for size in BATCH_SIZES:
        predicted = float32(rng.normal(0, 1, size))
        target = float32(rng.exponential(1.0, size))
        if size == 8:
            target[1] = target[-2]  # pair (1, 6): equal true losses, target 0 in the code
        x = torch.tensor(predicted, requires_grad=True)
        loss = loss_pred_loss(x, torch.tensor(target))
        loss.backward()
        cases.append(
            {
                "predicted": predicted.tolist(),
                "target": target.tolist(),
                "loss": loss.item(),
                "gradient": x.grad.tolist(),
            }
        )
    return cases


def vae_loss_cases(methods, rng: np.random.Generator) -> list[dict]:
    cases = []
    for beta in (1.0, 2.5):
        x, recon = (torch.tensor(float32(rng.normal(0, 1, (4, 3, 2, 2)))) for _ in range(2))
        mu = torch.tensor(float32(rng.normal(0, 1, (4, LATENT))))
        logvar = torch.tensor(float32(rng.normal(0, 0.5, (4, LATENT))))
        loss = methods.vae_loss(x, recon, mu, logvar, beta)
        cases.append(
            {
                "x": x.tolist(),
                "recon": recon.tolist(),
                "mu": mu.tolist(),
                "logvar": logvar.tolist(),
                "beta": beta,
                "loss": loss.item(),
            }
        )
    return cases


def main(repo: Path, out: Path) -> None:
    torch.Tensor.cuda = lambda self, *args, **kwargs: self  # CPU run
    nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.cuda.device = lambda *args, **kwargs: contextlib.nullcontext()
    sys.path.insert(0, str(repo))
    import selection_methods as methods

    rng = np.random.default_rng(13)
    weights = {
        "encoder": float32(rng.normal(0, 0.3, (WIDTH, 2 * LATENT))).tolist(),
        "decoder": float32(rng.normal(0, 0.6, (LATENT + 1, WIDTH))).tolist(),
        "decoder_bias": float32(rng.normal(0, 0.1, WIDTH)).tolist(),
        "discriminator": float32(rng.normal(0, 1.0, LATENT + 1)).tolist(),
        "discriminator_bias": float32(rng.normal(0, 0.2, ())).tolist(),
        "ranker": float32(rng.normal(0, 0.8, WIDTH)).tolist(),
        "ranker_bias": float32(rng.normal(0, 0.2, ())).tolist(),
    }
    labeled = float32(rng.normal(0, 0.5, (LABELED, WIDTH)))
    unlabeled = float32(rng.normal(0.3, 0.5, (UNLABELED, WIDTH)))
    candidates = float32(rng.normal(0.1, 0.5, (CANDIDATES, WIDTH)))
    ranking_losses = ranking_loss_cases(repo, rng)
    vae_losses = vae_loss_cases(methods, rng)

    # train_iterations = int((ADDENDUM·cycle + SUBSET) · EPOCHV / BATCH) = 2
    methods.ADDENDUM, methods.SUBSET, methods.EPOCHV, methods.BATCH = 0, 2, 1, 1
    decoder_ranks, discriminator_ranks = [], []
    vae = StubVAE(weights, decoder_ranks)
    discriminator = StubDiscriminator(weights, discriminator_ranks)
    models = {
        "vae": vae,
        "discriminator": discriminator,
        "backbone": StubTaskModel(),
        "module": StubRanker(weights),
    }
    optimizers = {
        "vae": torch.optim.SGD(vae.parameters(), lr=0.0),
        "discriminator": torch.optim.SGD(discriminator.parameters(), lr=0.0),
    }
    np.random.seed(0)
    losses = recorded_backward_losses(
        lambda: methods.train_vaal(
            models,
            optimizers,
            torch.utils.data.DataLoader(Samples(labeled), batch_size=LABELED),
            torch.utils.data.DataLoader(Samples(unlabeled), batch_size=UNLABELED),
            1,
        )
    )

    methods.BATCH = 4
    methods.VAE = lambda *args: StubVAE(weights, [])
    methods.Discriminator = lambda *args: StubDiscriminator(weights, [])
    methods.train_vaal = lambda *args: None
    subset = list(range(CANDIDATES))
    arg = methods.query_samples(
        {"backbone": StubTaskModel(), "module": StubRanker(weights)},
        "TA-VAAL",
        Samples(candidates),
        subset,
        [],
        0,
        SimpleNamespace(dataset="cifar10"),
    )
    picks = torch.tensor(subset)[arg][-ADDENDUM:]  # as main.py adds them to the labeled set

    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "train_test.py, selection_methods.py, main.py",
            "function": "LossPredLoss; vae_loss; train_vaal (two iterations); "
            "query_samples('TA-VAAL') with main.py's subset[arg][-ADDENDUM:]",
            "dtype": "float32",
        },
        "made_by": "tests/golden/make_ta_vaal.py",
        "ranking_loss": ranking_losses,
        "vae_loss": vae_losses,
        "weights": weights,
        "train": {
            "labeled": labeled.tolist(),
            "unlabeled": unlabeled.tolist(),
            "beta": 1.0,
            "lambda_adv": 1.0,
            # per network call: labeled then unlabeled; VAE step, discriminator step
            "decoder_ranks": decoder_ranks,
            "discriminator_ranks": discriminator_ranks,
            "vae_objectives": losses[0::2],
            "discriminator_objectives": losses[1::2],
        },
        "sampler": {
            "candidates": candidates.tolist(),
            "budget": ADDENDUM,
            "ranking": [int(i) for i in arg],
            "picks": picks.tolist(),
        },
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("ta_vaal.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
