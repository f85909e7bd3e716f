"""The JAX backend's inverse Cholesky factor: the CPU loop, the factorisation used on accelerators,
and the closed-form gradient they share."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import small_model
from rhvae.state import Noise
from rhvae.steps import make_train_step
from rhvae_jax import linalg

FORWARDS = {"cpu loop": linalg.inverse_cholesky_cpu, "factor and solve": linalg.inverse_cholesky_accelerator}


def _spd(rng: np.random.Generator, batch: int, d: int) -> np.ndarray:
    a = rng.normal(size=(batch, d, d))
    return a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)


@pytest.mark.parametrize("d", [1, 3, 16])
@pytest.mark.parametrize("name", FORWARDS)
def test_inverse_cholesky_matches_numpy(rng, name, d):
    a = _spd(rng, 7, d)
    X = np.asarray(FORWARDS[name](jnp.asarray(a)))
    np.testing.assert_allclose(X, np.linalg.inv(np.linalg.cholesky(a)), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(X.transpose(0, 2, 1) @ X, np.linalg.inv(a), rtol=1e-10, atol=1e-12)


def test_not_positive_definite_gives_nan_like_lapack():
    a = jnp.asarray([[[1.0, 2.0], [2.0, 1.0]]])
    assert np.isnan(np.asarray(linalg.inverse_cholesky_cpu(a))).any()
    assert np.isnan(np.asarray(jnp.linalg.cholesky(a))).any()


@pytest.mark.parametrize("name", FORWARDS)
def test_first_and_second_derivatives_match_lapack_autodiff(rng, name):
    """Along symmetric directions (all the model uses), the closed-form gradient equals jax's own
    derivatives of LAPACK's Cholesky and triangular solve, to first and second order."""
    d = 5
    s = jnp.asarray(_spd(rng, 3, d) / 2)
    rhs = jnp.asarray(rng.normal(size=(3, d, 2)))

    def objective(inverse_cholesky):
        def f(s):
            X = inverse_cholesky(s + s.mT)
            G = X.mT @ X
            return (jnp.sum(jnp.log(jnp.diagonal(X, axis1=-2, axis2=-1)) ** 2) + jnp.sum(jnp.sin(X.mT @ rhs))
                    + jnp.sum(jnp.cos(G)))
        return f

    ours = objective(FORWARDS[name])
    reference = objective(lambda a: jax.lax.linalg.triangular_solve(
        jnp.linalg.cholesky(a), jnp.broadcast_to(jnp.eye(d), a.shape), left_side=True, lower=True))
    g1, g2 = jax.grad(ours)(s), jax.grad(reference)(s)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-9, atol=1e-11)
    h1 = jax.grad(lambda s: jnp.sum(jax.grad(ours)(s) ** 2))(s)
    h2 = jax.grad(lambda s: jnp.sum(jax.grad(reference)(s) ** 2))(s)
    np.testing.assert_allclose(np.asarray(h1), np.asarray(h2), rtol=1e-8, atol=1e-10)


def test_gradient_matches_central_differences(rng):
    """Independent of any autodiff: ``d/dt f(a + t V)`` at ``t = 0`` for a symmetric direction ``V``."""
    d = 4
    a, V = _spd(rng, 2, d), rng.normal(size=(2, d, d))
    V = V + V.transpose(0, 2, 1)
    W = rng.normal(size=(2, d, d))

    def f(a):
        return jnp.sum(jnp.asarray(W) * linalg.inverse_cholesky_cpu(a))

    h = 1e-6
    numeric = (f(jnp.asarray(a + h * V)) - f(jnp.asarray(a - h * V))) / (2 * h)
    analytic = jnp.sum(jax.grad(f)(jnp.asarray(a)) * V)
    np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-7)


def test_cpu_training_step_has_no_lapack_kernels(rng):
    """The compiled CPU step must not contain LAPACK custom calls: two of them running at once
    deadlock XLA's intra-op pool on a 2-core machine (batch 100, latent 16 hung indefinitely)."""
    m = small_model("jax", input_dim=6, latent_dim=4, hidden=5, K=2, steps=2)
    x = rng.uniform(size=(8, 6))
    state = m.init(0, centroids="batch")
    noise = Noise(rng.normal(size=(8, 4)), rng.normal(size=(8, 4)))
    args = (state.params, state.opt_state) + m.batch_arrays(state, x, x, noise)
    hlo = jax.jit(make_train_step(m.backend, m.components, m.flow, m.optimizer)).lower(*args).as_text()
    assert "lapack" not in hlo.lower()
