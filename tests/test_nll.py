"""The importance-sampled negative log-likelihood against a model where ``log p(x)`` is exact."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import rhvae


def test_nll_of_a_linear_gaussian_model_matches_the_closed_form(backend, rng):
    """``p(z) = N(0, 1)``, ``p(x|z) = N(w z + b, σ² I)``: ``p(x) = N(b, w wᵀ + σ² I)`` exactly.
    The encoder is the exact posterior's mean with a 1.5× wider spread: the ELBO is then well below
    ``log p(x)`` while the importance-sampled estimate converges to it."""
    D, sigma = 3, 0.5
    reg = rhvae.get_registry()
    name, device = backend
    model = rhvae.RHVAE(name, device=device, input_dim=D, latent_dim=1, dtype="float64", K=2, eps=1e-2,
                        encoder=reg.create("encoder", "mlp", hidden=()),
                        decoder=reg.create("decoder", "gaussian_mlp", hidden=(), sigma=sigma),
                        metric=reg.create("metric", "mlp", hidden=(4,), activation="tanh"))
    w, b = np.array([[0.8, -1.2, 0.5]]), np.array([0.1, 0.2, -0.3])
    precision = 1.0 + float((w @ w.T)[0, 0]) / sigma**2
    params = {
        "encoder": {"mu.w": w.T / sigma**2 / precision, "mu.b": -(w @ b) / sigma**2 / precision,
                    "log_sigma.w": np.zeros((D, 1)), "log_sigma.b": np.array([-0.5 * np.log(precision) + np.log(1.5)])},
        "decoder": {"out0.w": w, "out0.b": b},
    }
    state = model.init(seed=0)
    state = state.replace(params={**state.params, **{k: {n: model.to_backend(a) for n, a in v.items()}
                                                     for k, v in params.items()}})
    x = rng.normal(size=(6, D)) + b
    state = model.refresh_metric(state, rng.normal(size=(20, D)))
    exact = -multivariate_normal(mean=b, cov=w.T @ w + sigma**2 * np.eye(D)).logpdf(x)
    got = model.nll(state, x, n_samples=2000, batch_size=4000, seed=3, progress=False)
    np.testing.assert_allclose(got, exact, atol=0.03)
    negative_elbo = -model.elbo_terms(state, np.repeat(x, 200, axis=0)).elbo.reshape(6, 200).mean(axis=1)
    assert np.all(negative_elbo - exact > 0.1)                       # the bound is loose here
    assert model.nll(state, x[:2], n_samples=50, progress=False).shape == (2,)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        model.nll(state, x, n_samples=0)
