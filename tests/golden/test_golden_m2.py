"""Golden test: M2's bounds L(x, y) and U(x) (Kingma et al. Eqs. 6, 7) and the per-step
objective J^α/N against a numpy port of dpkingma/nips14-ssl's `f_df` (make_m2.py, m2.json).

The code's q(y|x) is `MLP_Categorical` (softplus hidden layer); the project's MLP backbone is
ReLU, so the objective test uses a softplus stand-in for it. The code also adds Gaussian weight
priors to f, which the project's objective has not: they are compared without (`priors`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from al.methods.m2 import M2Module
from al.models.backbone import Backbone
from al.models.m2 import LOGVAR_RANGE, build_m2

FIXTURE = json.loads(Path(__file__).with_name("m2.json").read_text())
SIZES = FIXTURE["sizes"]
ATOL = 1e-5


def tensor(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def load_generative(model: nn.Module, weights: dict) -> None:
    """The code's v (q(z|x,y)) and w (p(x|y,z)) into `build_m2`'s MLP M2: its encoder reads
    [x, y] and its decoder [z, y]; the head's 2·n_x outputs are the means then the log σ²."""
    v, w = ({k: tensor(a) for k, a in weights[part].items()} for part in ("v", "w"))
    state = {
        "encoder_hidden.0.weight": torch.cat([v["w0x"], v["w0y"]], dim=1),
        "encoder_hidden.0.bias": v["b0"][:, 0],
        "mu.weight": v["mean_w"],
        "mu.bias": v["mean_b"][:, 0],
        "logvar.weight": v["logvar_w"],
        "logvar.bias": v["logvar_b"][:, 0],
        "decoder_hidden.0.weight": torch.cat([w["w0z"], w["w0y"]], dim=1),
        "decoder_hidden.0.bias": w["b0"][:, 0],
        "head.net.weight": torch.cat([w["out_w"], w["out_logvar_w"]]),
        "head.net.bias": torch.cat([w["out_b"], w["out_logvar_b"]])[:, 0],
    }
    model.load_state_dict(state)


def generative_model(weights: dict) -> nn.Module:
    model = build_m2(
        (SIZES["n_x"],),
        SIZES["n_y"],
        latent_dim=SIZES["n_z"],
        mlp_hidden=SIZES["n_hidden"],
        likelihood="gaussian",
    ).double()
    load_generative(model, weights)
    return model


class SoftplusClassifier(Backbone):
    """The code's q(y|x) (`MLP_Categorical`, one softplus hidden layer) as a backbone."""

    def __init__(self, u: dict) -> None:
        super().__init__()
        self.hidden = nn.Linear(*tensor(u["w0"]).T.shape)
        self.classifier = nn.Linear(*tensor(u["w1"]).T.shape)
        for layer, name in ((self.hidden, "0"), (self.classifier, "1")):
            layer.weight.data, layer.bias.data = tensor(u[f"w{name}"]), tensor(u[f"b{name}"])[:, 0]
        self.stage_channels = [layer.out_features]

    def embed(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = nn.functional.softplus(self.hidden(x))
        return features, [features]


def test_labeled_bound_matches_the_code():
    """L(x, y) = −(logpx + logpz − logqz) per sample, with the code's noise draws."""
    case = FIXTURE["stochastic"]
    model = generative_model(case["weights"])
    labels = torch.tensor(case["labels"])
    one_hot = nn.functional.one_hot(labels, SIZES["n_y"]).double()
    bound = model.labeled_bound(tensor(case["x_labeled"]), one_hot, tensor(case["noise_labeled"]))
    expected = -tensor(case["outputs"]["labeled_elbo"])
    torch.testing.assert_close(bound, expected, atol=ATOL, rtol=0)


def test_unlabeled_bound_matches_the_code():
    """U(x) = Σ_y q(y|x)·L(x, y) − H(q) with the code's q(y|x) and one noise draw per class;
    each class's L(x, y) as the code's inner bound."""
    case = FIXTURE["stochastic"]
    model = generative_model(case["weights"])
    x_u, noise = tensor(case["x_unlabeled"]), tensor(case["noise_unlabeled"])
    outputs = case["outputs"]
    for label in range(SIZES["n_y"]):
        one_hot = nn.functional.one_hot(torch.full((len(x_u),), label), SIZES["n_y"]).double()
        inner = model.labeled_bound(x_u, one_hot, noise[:, label])
        expected = -tensor(outputs["unlabeled_inner"])[:, label]
        torch.testing.assert_close(inner, expected, atol=ATOL, rtol=0)
    bound = model.unlabeled_bound(x_u, tensor(outputs["unlabeled_qy"]), noise)
    torch.testing.assert_close(bound, -tensor(outputs["unlabeled_bound"]), atol=ATOL, rtol=0)


def test_objective_matches_the_code_f_without_priors():
    """M2Module's J^α/N terms on one minibatch = the code's f (α = 0.1, β = α·N/N_L), with an
    encoder of σ ≈ 0 so that the module's own noise draws do not matter."""
    case, objective = FIXTURE["deterministic_encoder"], FIXTURE["objective"]
    module = M2Module(
        SoftplusClassifier(case["weights"]["u"]),
        optimizer=torch.optim.SGD,
        num_classes=SIZES["n_y"],
        input_shape=(SIZES["n_x"],),
        latent_dim=SIZES["n_z"],
        mlp_hidden=SIZES["n_hidden"],
        likelihood="gaussian",
        alpha=objective["alpha"],
        discriminator=None,
        adversarial=False,
    ).double()
    load_generative(module.generative, case["weights"])
    total = objective["n_labeled"] + objective["n_unlabeled"]
    module.pool_weights = (objective["n_labeled"] / total, objective["n_unlabeled"] / total)
    x_l, y_l = tensor(case["x_labeled"]), torch.tensor(case["labels"])
    losses, _, _ = module.m2_losses(x_l, y_l, tensor(case["x_unlabeled"]))

    outputs, scale = case["outputs"], objective["n_minibatches"] / total
    expected = {
        "labeled_bound": -scale * sum(outputs["labeled_elbo"]),
        "unlabeled_bound": -scale * sum(outputs["unlabeled_bound"]),
        "ce": -scale * outputs["beta"] * sum(outputs["labeled_logqy"]),
    }
    assert {k: v.item() for k, v in losses.items()} == pytest.approx(expected, abs=ATOL)
    assert sum(losses.values()).item() == pytest.approx(outputs["f_without_priors"], abs=ATOL)


def test_fixture_stays_inside_the_decoder_log_variance_clamp():
    """The project clamps p(x|y,z)'s log σ² to [−7, 7] (the code does not): the fixture's
    values lie inside, so the clamp plays no part in the comparison."""
    for case in (FIXTURE["stochastic"], FIXTURE["deterministic_encoder"]):
        low, high = case["outputs"]["decoder_logvar_range"]
        assert LOGVAR_RANGE[0] < low and high < LOGVAR_RANGE[1]
