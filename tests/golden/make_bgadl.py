"""Make bgadl.json: BGADL's L_E, L_G, L_D and L_C by the authors' code (toantm/BGADL).

Usage: python tests/golden/make_bgadl.py REPO [OUT]
  REPO: toantm/BGADL checked out (commit in COMMIT below).

`demo_mnist.py` loads MNIST and trains at import, so it is not imported: this script parses
it and runs, unchanged, its `reparameterize`, `latent_loss` and the body of the inner loop of
`VAEACGAN.train` (one iteration: the E, G and D/C steps with their losses) in float64 on the
CPU, `gpu_mode` off. The networks E, G, D and the classifier `model` are small seeded
stand-ins (the losses do not depend on the architecture; the code fixes z at 100 values),
each recording what it returns; the optimizers' `zero_grad`/`step` and `backward` do
nothing, so every step sees the same weights. Stored: the seeded batch, the stand-in D's and
classifier's weights, what each network returned in each step, and the four losses
(`train_hist`). Not run by the tests.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from torch.autograd import Variable

REPOSITORY = "toantm/BGADL"
COMMIT = "5d82f500c7da41fb1d3065f3b2217a1f22b69ef6"
BATCH, CLASSES, Z_DIM, SIDE = 4, 10, 100, 4  # z: the code's noise.view(batch_size, 100)
PIXELS = SIDE * SIDE


class Recorder(nn.Module):
    """A stand-in network that appends each output to `log[name]`."""

    def __init__(self, name: str, net: nn.Module, log: dict) -> None:
        super().__init__()
        self.name, self.net, self.log = name, net, log

    def forward(self, *inputs):
        out = self.net(*inputs)
        self.log.setdefault(self.name, []).append(out)
        return out


class EncoderStandIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.mu, self.logvar = nn.Linear(PIXELS, Z_DIM), nn.Linear(PIXELS, Z_DIM)

    def forward(self, x):  # the code's heads end in a sigmoid
        return torch.sigmoid(self.mu(x.flatten(1))), torch.sigmoid(self.logvar(x.flatten(1)))


class GeneratorStandIn(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(Z_DIM + CLASSES, PIXELS)

    def forward(self, z, y):  # the code's output ends in a sigmoid
        return torch.sigmoid(self.fc(torch.cat([z, y], 1))).view(-1, 1, SIDE, SIDE)


def flat_linear(out_features: int, activation: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(PIXELS, out_features), activation)


class NoOp:
    def zero_grad(self) -> None:
        pass

    def step(self) -> None:
        pass


def reference_definitions(repo: Path) -> ast.Module:
    """The code's `reparameterize` and `latent_loss`, and its training iteration as
    `iteration(self, iter)` (the inner loop's body of VAEACGAN.train, unchanged)."""
    tree = ast.parse((repo / "demo_mnist.py").read_text())
    functions = [
        n for n in tree.body if getattr(n, "name", "") in ("reparameterize", "latent_loss")
    ]
    vaeacgan = next(n for n in tree.body if getattr(n, "name", "") == "VAEACGAN")
    train = next(n for n in vaeacgan.body if getattr(n, "name", "") == "train")
    epoch_loop = next(n for n in train.body if isinstance(n, ast.For))
    iter_loop = next(n for n in epoch_loop.body if isinstance(n, ast.For))
    iteration = ast.parse("def iteration(self, iter):\n    pass").body[0]
    iteration.body = iter_loop.body
    module = ast.Module(body=[*functions, iteration], type_ignores=[])
    return ast.fix_missing_locations(module)


def main(repo: Path, out: Path) -> None:
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(22)
    log: dict[str, list[torch.Tensor]] = {}
    discriminator = flat_linear(1, nn.Sigmoid())
    classifier = flat_linear(CLASSES, nn.Identity())
    x = torch.rand(BATCH, 1, SIDE, SIDE)
    labels = torch.randint(0, CLASSES, (BATCH,))
    self = SimpleNamespace(
        batch_size=BATCH,
        z_dim=Z_DIM,
        gpu_mode=False,
        data_X=x,
        data_Y=nn.functional.one_hot(labels, CLASSES).double(),
        E=Recorder("E", EncoderStandIn(), log),
        G=Recorder("G", GeneratorStandIn(), log),
        D=Recorder("D", discriminator, log),
        E_optimizer=NoOp(),
        G_optimizer=NoOp(),
        D_optimizer=NoOp(),
        BCE_loss=nn.BCELoss(),
        CE_loss=nn.CrossEntropyLoss(),
        MSE_loss=nn.MSELoss(),
        train_hist={"E_loss": [], "G_loss": [], "D_loss": [], "C_loss": []},
        y_real_=Variable(torch.ones(BATCH, 1)),
        y_fake_=Variable(torch.zeros(BATCH, 1)),
    )
    namespace = {
        "torch": torch,
        "Variable": Variable,
        "model": Recorder("C", classifier, log),
        "optimizer": NoOp(),
    }
    exec(compile(reference_definitions(repo), "demo_mnist.py", "exec"), namespace)
    torch.Tensor.backward = lambda self, *args, **kwargs: None
    namespace["iteration"](self, 0)

    def values(name: str, call: int) -> list:
        out = log[name][call]
        return [o.tolist() for o in out] if isinstance(out, tuple) else out.tolist()

    # Calls in the code's order. E: E-step, G-step, D/C-step. G: output (E-step); G_, G_dec
    # (G-step); G_, G_dec (D/C-step). D: D_fake (G-step); D_real, D_fake, D_dec (D/C-step).
    # C: C_fake (G-step); C_real, C_fake, C_dec (D/C-step).
    assert [len(log[k]) for k in "EGDC"] == [3, 5, 4, 4]
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "demo_mnist.py",
            "function": "VAEACGAN.train (one iteration of its inner loop), latent_loss, "
            "reparameterize",
            "dtype": "float64",
        },
        "made_by": "tests/golden/make_bgadl.py",
        "inputs": {
            "x": x.tolist(),
            "labels": labels.tolist(),
            "discriminator": {k: v.tolist() for k, v in discriminator[1].state_dict().items()},
            "classifier": {k: v.tolist() for k, v in classifier[1].state_dict().items()},
        },
        "encoder_step": {"mu_logvar": values("E", 0), "reconstruction": values("G", 0)},
        "generator_step": {
            "fake": values("G", 1),
            "reconstruction": values("G", 2),
            "judged_fake": values("D", 0),
            "fake_logits": values("C", 0),
        },
        "discriminator_step": {
            "fake": values("G", 3),
            "reconstruction": values("G", 4),
            "judged_real": values("D", 1),
            "judged_fake": values("D", 2),
            "judged_reconstruction": values("D", 3),
            "real_logits": values("C", 1),
            "fake_logits": values("C", 2),
            "reconstruction_logits": values("C", 3),
        },
        "losses": {name: hist[0] for name, hist in self.train_hist.items()},
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    default = Path(__file__).with_name("bgadl.json")
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default)
