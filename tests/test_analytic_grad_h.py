"""The closed-form ∇H equals autodiff's, for every likelihood and prior, and so does the loss
gradient through the whole analytic leapfrog."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from helpers import small_model
from rhvae.math import gradients
from rhvae.state import Noise
from rhvae.testing import assert_close_normwise
from rhvae.tree import flatten
from rhvae.geometry import hamiltonian_of

TOL = {"float32": 1e-5, "float64": 1e-10}
DECODERS = ("bernoulli_mlp", "gaussian_mlp", "gaussian_logscale_mlp")


class _ShiftedNormal:
    """A prior without ``grad_log_prob``: the analytic method must fall back to autodiff for it."""

    def log_prob(self, B, z):
        return -0.5 * B.xp.sum((z - 0.3) ** 2, axis=-1)


PRIORS = ("spherical", "student_t", _ShiftedNormal())
PRIOR_IDS = ("spherical", "student_t", "no_grad_log_prob")


def _model(backend, dtype, decoder, prior, grad_h, reduction="sum"):
    name, device = backend
    return small_model(name, device, input_dim=8, latent_dim=3, hidden=10, decoder=decoder, dtype=dtype,
                       grad_h=grad_h, position_prior=prior, reduction=reduction, T=0.9, lam=0.05, eps=0.05,
                       K=2, steps=3)


def _inputs(rng, n=7):
    x = rng.uniform(0.05, 0.95, size=(n, 8))
    return x, 0.5 * rng.standard_normal((n, 3)), rng.standard_normal((n, 3)), rng.uniform(0.05, 0.95, size=(5, 8))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("decoder", "reduction"), [(DECODERS[0], "sum"), (DECODERS[1], "mean"), (DECODERS[2], "sum")])
@pytest.mark.parametrize("prior", PRIORS, ids=PRIOR_IDS)
def test_analytic_grad_h_equals_autodiff(backend, dtype, decoder, prior, reduction, rng):
    x, z, rho, centroids = _inputs(rng)
    out = {}
    for method in ("autodiff", "analytic"):
        model = _model(backend, dtype, decoder, prior, method, reduction)
        state = model.init(seed=3, centroids=centroids)
        out[method] = model.grad_hamiltonian(state, x, z, rho)
    for i, part in enumerate(("grad_z", "grad_rho")):
        assert_close_normwise(out["analytic"][i], out["autodiff"][i], TOL[dtype], part)


@pytest.mark.parametrize("prior", [PRIORS[0], *(pytest.param(p, marks=pytest.mark.slow_on("jax")) for p in PRIORS[1:])],
                         ids=PRIOR_IDS)
def test_loss_gradient_through_the_analytic_leapfrog_equals_autodiff(backend, prior, rng):
    x, _, _, centroids = _inputs(rng)
    noise = Noise(rng.standard_normal((7, 3)), rng.standard_normal((7, 3)))
    out = {}
    for method in ("autodiff", "analytic"):
        model = _model(backend, "float64", "gaussian_logscale_mlp", prior, method)
        state = model.init(seed=3, centroids=centroids)
        out[method] = model.loss_and_grad(state, x, noise=noise)
    assert_close_normwise(out["analytic"][0], out["autodiff"][0], TOL["float64"], "loss")
    for (path, a), (_, b) in zip(flatten(out["analytic"][1]), flatten(out["autodiff"][1])):
        assert_close_normwise(a, b, TOL["float64"], path)


def test_kinetic_gradient_matches_an_explicit_sum_over_centroids(rng):
    """``∇zκ = ½ a Σ_i (ρᵀM_iρ - tr(G M_i)) ∇w_i`` term by term, in numpy."""
    reg = rhvae.get_registry()
    B = reg.create("backend", "torch", device="cpu")
    model = small_model("torch", input_dim=8, latent_dim=3, hidden=10, dtype="float64", T=0.7, lam=0.1)
    x, z, rho, centroids = _inputs(rng)
    state = model.init(seed=1, centroids=centroids)
    H = hamiltonian_of(model, state.params, model.frozen_metric(state), B.asarray(x, "float64"))
    terms = gradients.position_terms(B, H, B.asarray(z, "float64"))
    got = B.to_numpy(gradients.grad_kinetic_z(B, H, terms, B.asarray(rho, "float64")))
    c, M = (B.to_numpy(a) for a in model.frozen_metric(state)[:2])
    expected = np.zeros_like(z)
    for b in range(z.shape[0]):
        w = np.exp(-np.sum((z[b] - c) ** 2, axis=-1) / 0.7**2)
        G = np.linalg.inv(np.einsum("n,nij->ij", w, M) + 0.1 * np.eye(3))
        for i in range(c.shape[0]):
            grad_w = -2.0 * (z[b] - c[i]) * w[i] / 0.7**2
            expected[b] += 0.5 * (rho[b] @ M[i] @ rho[b] - np.trace(G @ M[i])) * grad_w
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)
