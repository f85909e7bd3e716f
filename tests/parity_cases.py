"""Every quantity of the parity contract (DESIGN §5), computed on one backend from shared numpy
parameters (drawn from one seed) and one shared noise draw."""

from __future__ import annotations

import numpy as np

from further_backend import REGISTRY
from helpers import small_model
from rhvae.math import leapfrog
from rhvae.model import RHVAE
from rhvae.state import Noise
from rhvae.tree import flatten
from rhvae.geometry import hamiltonian_of

INPUT, LATENT, HIDDEN, BATCH, N_CENTROIDS = 10, 2, 12, 6, 8
DECODERS = ("bernoulli_mlp", "gaussian_mlp", "gaussian_logscale_mlp")
GRAD_H = ("autodiff", "finite", "analytic")
FORWARD = ("encoder.mu", "encoder.log_sigma", "decoder", "metric.diag", "metric.lower",
           "G_inv", "G", "logdet_G", "H", "elbo", "elbo_terms", "loss")
GRADIENT = ("grad_z", "grad_rho", "substep1", "substep2", "substep3",
            "trajectory.z", "trajectory.rho", "loss_grad", "params_after_3_adam")


def data(seed: int = 7) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "x": rng.uniform(0.05, 0.95, size=(BATCH, INPUT)),
        "centroids": rng.uniform(0.05, 0.95, size=(N_CENTROIDS, INPUT)),
        "z": 0.3 * rng.standard_normal((BATCH, LATENT)),
        "rho": rng.standard_normal((BATCH, LATENT)),
        "eps": rng.standard_normal((BATCH, LATENT)),
        "xi": rng.standard_normal((BATCH, LATENT)),
        "noise_steps": rng.standard_normal((3, 2, BATCH, LATENT)),
    }


def build(backend: str, device: str, dtype: str, grad_h: str, decoder: str, **hyper) -> RHVAE:
    return small_model(backend, device, input_dim=INPUT, latent_dim=LATENT, hidden=HIDDEN, decoder=decoder,
                       dtype=dtype, grad_h=grad_h, T=0.9, lam=0.05, eps=0.05, K=2, steps=3, beta0=0.4,
                       learning_rate=1e-2, registry=REGISTRY, **hyper)


def compute(backend: str, device: str, dtype: str, grad_h: str, decoder: str) -> dict[str, np.ndarray]:
    """All parity quantities as numpy arrays, keyed by name."""
    d = data()
    model = build(backend, device, dtype, grad_h, decoder)
    B = model.backend
    state = model.init(seed=3, centroids=d["centroids"])
    x, z, rho = d["x"], d["z"], d["rho"]
    noise = Noise(d["eps"], d["xi"])
    out: dict[str, np.ndarray] = {}

    out["encoder.mu"], out["encoder.log_sigma"] = model.encode(state, x)
    out["decoder"] = np.stack(model.decoder_outputs(state, z))
    diag, lower = model.components.metric(B, state.params["metric"], B.asarray(x, dtype))
    out["metric.diag"], out["metric.lower"] = B.to_numpy(diag), B.to_numpy(lower)
    out["G_inv"] = model.G_inv(state, z)
    out["G"] = model.metric_tensor(state, z)
    out["logdet_G"] = model.log_det_metric(state, z)
    out["H"] = model.hamiltonian(state, x, z, rho)
    out["grad_z"], out["grad_rho"] = model.grad_hamiltonian(state, x, z, rho)

    H = hamiltonian_of(model, state.params, state.metric, B.asarray(x, dtype))
    gh, c = model.components.grad_h, model.config
    zb, rb = B.asarray(z, dtype), B.asarray(rho, dtype)

    def substeps(zz, rr):
        r1 = leapfrog.momentum_half_step(B, H, gh, zz, rr, c.eps, c.steps)
        z1 = leapfrog.position_step(B, H, gh, zz, r1, c.eps, c.steps)
        return r1, z1, leapfrog.momentum_final_step(B, H, gh, z1, r1, c.eps)

    out["substep1"], out["substep2"], out["substep3"] = (B.to_numpy(a) for a in B.jit(substeps)(zb, rb))

    terms = model.elbo_terms(state, x, noise=noise)
    out["trajectory.z"], out["trajectory.rho"] = terms.zK, terms.rhoK
    out["elbo_terms"] = np.stack([terms.log_px, terms.log_p_rho, terms.log_pz, terms.log_qz, terms.log_q_rho])
    out["elbo"] = np.asarray(model.elbo(state, x, noise=noise))
    loss, grads = model.loss_and_grad(state, x, noise=noise)
    out["loss"] = np.asarray(loss)
    out["loss_grad"] = _concat(grads)
    for eps, xi in d["noise_steps"]:
        state, _ = model.step(state, x, noise=Noise(eps, xi))
    out["params_after_3_adam"] = _concat(state.params, B.to_numpy)
    return out


def _concat(tree, convert=np.asarray) -> np.ndarray:
    """All leaves, ordered by path (jax returns dicts with sorted keys, torch in insertion order)."""
    return np.concatenate([convert(v).ravel() for _, v in sorted(flatten(tree))])
