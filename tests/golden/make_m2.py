"""Make m2.json: M2's bounds L(x, y) and U(x), and the objective of one minibatch, by a numpy
port of Kingma et al.'s code (dpkingma/nips14-ssl, commit in COMMIT below).

Usage: python tests/golden/make_m2.py [OUT]

The released code is Python 2 with Theano, so it is not run: this script is a PORT, line by
line, of the expressions that compute the bounds — `VAE_YZ_X.factors` (q(z|x,y), p(x|y,z),
logpx, logpy, logpz, logqz: "gaussianmarg" q and p, Gaussian p(x|y,z), softplus, one hidden
layer, uniform p(y)), `MLP_Categorical.factors` (q(y|x)) and `optim_vae_ss_adam`'s `f_df`
(β = α·n_tot/n_labeled, L_labeled, the integrated-out L_unlabeled, and f) — in float64, in
the code's column layout (features × batch). The weight priors (logpu, logpv, logpw) enter
f in the code; the project's objective has none, so they are stored apart (`priors`).
Each port line cites its source line. Not run by the tests.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np

REPOSITORY = "dpkingma/nips14-ssl"
COMMIT = "1fc7aec899ca429ff26a1d10f747e5ad6bcd17b2"
N_X, N_Y, N_Z, N_HIDDEN = 6, 3, 2, 5  # run_2layer_ssl.py: n_hidden=(300,) or (500,), n_z=50
N_LABELED, N_UNLABELED, N_MINIBATCHES, ALPHA = 8, 10, 2, 0.1  # alpha as run_2layer_ssl.py
N_BATCH_L, N_BATCH_U = N_LABELED // N_MINIBATCHES, N_UNLABELED // N_MINIBATCHES
DETERMINISTIC_LOGVAR_BIAS = -40.0  # q(z|x,y)'s σ = e^-20: z = μ whatever the noise


def softplus(x):
    return np.log(np.exp(x) + 1)  # VAE_YZ_X.factors: f_softplus = T.log(T.exp(x) + 1)


def normal2(x, mean, logvar):
    # anglepy/logpdfs.py normal2: c - logvar/2 - (x - mean)**2 / (2 * T.exp(logvar))
    return -0.5 * math.log(2 * math.pi) - logvar / 2 - (x - mean) ** 2 / (2 * np.exp(logvar))


def softmax_columns(h):
    e = np.exp(h - h.max(axis=0, keepdims=True))  # T.nnet.softmax(h.T).T
    return e / e.sum(axis=0, keepdims=True)


def vae_factors(v, w, x, y, eps):
    """VAE_YZ_X.factors: logpx (+ logpy), logpz, logqz as row vectors (1 × batch)."""
    A = np.ones((1, x.shape[1]))
    hidden_q = softplus(v["w0x"] @ x + v["w0y"] @ y + v["b0"] @ A)
    q_mean = v["mean_w"] @ hidden_q + v["mean_b"] @ A
    q_logvar = v["logvar_w"] @ hidden_q + v["logvar_b"] @ A
    _z = q_mean + np.exp(0.5 * q_logvar) * eps
    hidden_p = softplus(w["w0y"] @ y + w["w0z"] @ _z + w["b0"] @ A)
    x_mean = w["out_w"] @ hidden_p + w["out_b"] @ A
    x_logvar = w["out_logvar_w"] @ hidden_p + w["out_logvar_b"] @ A
    logpx = np.ones((1, N_X)) @ normal2(x, x_mean, x_logvar)
    py_model = softmax_columns((w["logpy"] * 0) @ A)  # uniform_y: _logpy *= 0
    logpx = logpx + (y * np.log(py_model)).sum(axis=0, keepdims=True)  # -categorical_crossentropy
    logpz = -0.5 * (np.log(2 * np.pi) + (q_mean**2 + np.exp(q_logvar))).sum(axis=0, keepdims=True)
    logqz = -0.5 * (np.log(2 * np.pi) + 1 + q_logvar).sum(axis=0, keepdims=True)
    return logpx, logpz, logqz, x_logvar


def qy_probabilities(u, x):
    """MLP_Categorical.factors with one hidden layer: p = softmax(w1 f(w0 x + b0) + b1)."""
    A = np.ones((1, x.shape[1]))
    hidden = u["w0"] @ x + u["b0"] @ A
    return softmax_columns(u["w1"] @ softplus(hidden) + u["b1"] @ A)


def log_normal_prior(weights):
    # VAE_YZ_X.f_prior / MLP_Categorical: ap.logpdfs.normal(_w, 0, prior_sd=1).sum()
    return sum((-0.5 * math.log(2 * math.pi) - weights_i**2 / 2).sum() for weights_i in weights)


def f_df(u, v, w, x_l, y_l, eps_l, x_u, eps_u):
    """optim_vae_ss_adam.f_df for one minibatch, without the gradients."""
    n_tot = N_LABELED + N_UNLABELED
    logpx, logpz, logqz, logvar_l = vae_factors(v, w, x_l, y_l, eps_l)
    logqy = (y_l * np.log(qy_probabilities(u, x_l))).sum(axis=0, keepdims=True)
    beta = ALPHA * (1.0 * n_tot / N_LABELED)
    logqy_weighted = logqy * beta
    L_labeled = logpx + logpz - logqz + logqy_weighted
    py = qy_probabilities(u, x_u)
    _L = np.zeros((N_Y, x_u.shape[1]))
    logvars = [logvar_l]
    for label in range(N_Y):
        new_y = np.zeros((N_Y, x_u.shape[1]))
        new_y[label, :] = 1
        logpx_u, logpz_u, logqz_u, logvar_u = vae_factors(v, w, x_u, new_y, eps_u[label])
        _L[label : label + 1, :] = logpx_u + logpz_u - logqz_u  # dL_weighted_dw's L_unweighted
        logvars.append(logvar_u)
    L_unlabeled = np.ones((1, N_Y)) @ (py * (_L - np.log(py)))  # f_du
    priors = log_normal_prior(
        [u["w0"], u["w1"], u["b0"], u["b1"]]
        + [v[k] for k in ("w0x", "w0y", "mean_w", "logvar_w")]
        + [w[k] for k in ("w0y", "w0z", "out_w", "out_logvar_w")]
    )
    f_data = ((L_labeled.sum() + L_unlabeled.sum()) * N_MINIBATCHES) / (-n_tot)
    return {
        "labeled_elbo": (logpx + logpz - logqz)[0].tolist(),
        "labeled_logqy": logqy[0].tolist(),
        "beta": beta,
        "unlabeled_inner": _L.T.tolist(),
        "unlabeled_qy": py.T.tolist(),
        "unlabeled_bound": L_unlabeled[0].tolist(),
        "f_without_priors": f_data,
        "priors": priors / (-n_tot),
        "decoder_logvar_range": [
            float(min(a.min() for a in logvars)),
            float(max(a.max() for a in logvars)),
        ],
    }


def draw_weights(rng, deterministic_encoder: bool):
    def rand(*shape, std=0.4):
        return rng.normal(0, std, shape)

    v = {"w0x": rand(N_HIDDEN, N_X), "w0y": rand(N_HIDDEN, N_Y), "b0": rand(N_HIDDEN, 1)}
    v |= {"mean_w": rand(N_Z, N_HIDDEN), "mean_b": rand(N_Z, 1)}
    v |= {"logvar_w": rand(N_Z, N_HIDDEN), "logvar_b": rand(N_Z, 1)}
    if deterministic_encoder:
        v["logvar_w"] = np.zeros((N_Z, N_HIDDEN))
        v["logvar_b"] = np.full((N_Z, 1), DETERMINISTIC_LOGVAR_BIAS)
    w = {"w0y": rand(N_HIDDEN, N_Y), "w0z": rand(N_HIDDEN, N_Z), "b0": rand(N_HIDDEN, 1)}
    w |= {"out_w": rand(N_X, N_HIDDEN), "out_b": rand(N_X, 1)}
    w |= {"out_logvar_w": rand(N_X, N_HIDDEN, std=0.2), "out_logvar_b": rand(N_X, 1, std=0.2)}
    w["logpy"] = np.zeros((N_Y, 1))
    u = {"w0": rand(N_HIDDEN, N_X), "b0": rand(N_HIDDEN, 1)}
    u |= {"w1": rand(N_Y, N_HIDDEN), "b1": rand(N_Y, 1)}
    return u, v, w


def as_lists(arrays: dict) -> dict:
    return {k: a.tolist() for k, a in arrays.items()}


def case(rng, deterministic_encoder: bool) -> dict:
    """Weights, one minibatch (columns are samples) and the port's outputs."""
    u, v, w = draw_weights(rng, deterministic_encoder)
    x_l, x_u = rng.normal(0, 1, (N_X, N_BATCH_L)), rng.normal(0, 1, (N_X, N_BATCH_U))
    labels = rng.integers(0, N_Y, N_BATCH_L)
    y_l = np.eye(N_Y)[:, labels]
    eps_l = rng.standard_normal((N_Z, N_BATCH_L))  # model.gen_eps(n_batch_l)
    eps_u = [rng.standard_normal((N_Z, N_BATCH_U)) for _ in range(N_Y)]
    outputs = f_df(u, v, w, x_l, y_l, eps_l, x_u, eps_u)
    return {
        "weights": {"u": as_lists(u), "v": as_lists(v), "w": as_lists(w)},
        "x_labeled": x_l.T.tolist(),
        "labels": labels.tolist(),
        "noise_labeled": eps_l.T.tolist(),
        "x_unlabeled": x_u.T.tolist(),
        "noise_unlabeled": np.stack(eps_u, axis=1).T.tolist(),  # (batch, class, z)
        "outputs": outputs,
    }


def main(out: Path) -> None:
    rng = np.random.default_rng(22)
    fixture = {
        "reference": {
            "repository": REPOSITORY,
            "commit": COMMIT,
            "file": "learn_yz_x_ss.py, anglepy/models/VAE_YZ_X.py, MLP_Categorical.py",
            "function": "optim_vae_ss_adam.f_df (VAE_YZ_X.factors, MLP_Categorical.factors)",
            "how": "numpy port of the Theano expressions (Python 2 code, not run), float64",
        },
        "made_by": "tests/golden/make_m2.py",
        "sizes": {"n_x": N_X, "n_y": N_Y, "n_z": N_Z, "n_hidden": N_HIDDEN},
        "objective": {
            "n_labeled": N_LABELED,
            "n_unlabeled": N_UNLABELED,
            "n_minibatches": N_MINIBATCHES,
            "alpha": ALPHA,
        },
        "stochastic": case(rng, deterministic_encoder=False),
        "deterministic_encoder": case(rng, deterministic_encoder=True),
    }
    out.write_text(json.dumps(fixture) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("m2.json"))
