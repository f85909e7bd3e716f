"""The JAX backend's loop-based Cholesky and triangular solves (used on CPU instead of LAPACK)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import small_model
from rhvae.model import Noise
from rhvae_jax import linalg


def _spd(rng: np.random.Generator, batch: int, d: int) -> np.ndarray:
    a = rng.normal(size=(batch, d, d))
    return a @ a.transpose(0, 2, 1) + 0.5 * np.eye(d)


@pytest.mark.parametrize("d", [1, 3, 16])
def test_cholesky_and_solves_match_numpy(rng, d):
    a = _spd(rng, 7, d)
    L = np.asarray(linalg.cholesky(jnp.asarray(a)))
    np.testing.assert_allclose(L, np.linalg.cholesky(a), rtol=1e-12, atol=1e-12)
    b = rng.normal(size=(7, d, 3))
    np.testing.assert_allclose(np.asarray(linalg.solve_triangular(jnp.asarray(L), jnp.asarray(b), lower=True)),
                               np.linalg.solve(L, b), rtol=1e-10, atol=1e-12)
    U = L.transpose(0, 2, 1)
    np.testing.assert_allclose(np.asarray(linalg.solve_triangular(jnp.asarray(U), jnp.asarray(b), lower=False)),
                               np.linalg.solve(U, b), rtol=1e-10, atol=1e-12)


def test_not_positive_definite_gives_nan_like_lapack():
    a = jnp.asarray([[[1.0, 2.0], [2.0, 1.0]]])
    assert np.isnan(np.asarray(linalg.cholesky(a))).any()
    assert np.isnan(np.asarray(jnp.linalg.cholesky(a))).any()


def test_first_and_second_derivatives_match_lapack_versions(rng):
    """Along symmetric directions (all the model uses) the loops differentiate like jax's LAPACK ops."""
    d = 5
    s = jnp.asarray(_spd(rng, 3, d) / 2)
    rhs = jnp.asarray(rng.normal(size=(3, d, 2)))

    def objective(chol, solve):
        def f(s):
            a = s + s.mT
            L = chol(a)
            x = solve(L, rhs, True)
            y = solve(L.mT, x, False)
            return jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)) ** 2) + jnp.sum(jnp.sin(y))
        return f

    ours = objective(linalg.cholesky, lambda t, b, lo: linalg.solve_triangular(t, b, lower=lo))
    lapack = objective(jnp.linalg.cholesky,
                       lambda t, b, lo: jax.lax.linalg.triangular_solve(t, b, left_side=True, lower=lo))
    g1, g2 = jax.grad(ours)(s), jax.grad(lapack)(s)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-9, atol=1e-11)
    h1 = jax.grad(lambda s: jnp.sum(jax.grad(ours)(s) ** 2))(s)
    h2 = jax.grad(lambda s: jnp.sum(jax.grad(lapack)(s) ** 2))(s)
    np.testing.assert_allclose(np.asarray(h1), np.asarray(h2), rtol=1e-8, atol=1e-10)


def test_cpu_training_step_has_no_lapack_kernels(rng):
    """The compiled CPU step must not contain LAPACK custom calls: two of them running at once
    deadlock XLA's intra-op pool on a 2-core machine (batch 100, latent 16 hung indefinitely)."""
    m = small_model("jax", input_dim=6, latent_dim=4, hidden=5, K=2, steps=2)
    x = rng.uniform(size=(8, 6))
    state = m.init(0, centroids="batch")
    noise = Noise(rng.normal(size=(8, 4)), rng.normal(size=(8, 4)))
    args = (state.params, state.opt_state) + m._batch_arrays(state, x, x, noise)
    hlo = jax.jit(m._step_fn()).lower(*args).as_text()
    assert "lapack" not in hlo.lower()
