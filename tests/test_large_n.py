"""Sums over many centroids in blocks (``centroid_chunk``) and the weight truncation (``weight_tol``):
same numbers as the dense sums, memory bounded by the block, and the stated error bound."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import avals, small_model
from rhvae.state import Noise
from rhvae.testing import normwise_error
from rhvae.tree import flatten


def _pair(backend, rng, reduction="sum", **hyper):
    """The same model and state, dense and in blocks of 5 over 23 centroids (4 blocks and a rest of 3)."""
    x = rng.uniform(0.05, 0.95, size=(23, 8))
    models = [small_model(*backend, input_dim=8, latent_dim=3, dtype="float64", T=0.9, reduction=reduction,
                          centroid_chunk=chunk, **hyper) for chunk in (None, 5)]
    states = [m.init(seed=1, centroids=x) for m in models]
    return models, states, x


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_blocks_give_the_dense_metric_gradients_and_elbo(backend, rng, reduction):
    (dense, chunked), (s_d, s_c), x = _pair(backend, rng, reduction)
    z, rho = rng.standard_normal((6, 3)), rng.standard_normal((6, 3))
    np.testing.assert_allclose(chunked.G_inv(s_c, z), dense.G_inv(s_d, z), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(chunked.log_det_metric(s_c, z), dense.log_det_metric(s_d, z), rtol=1e-12)
    for a, b in zip(chunked.grad_hamiltonian(s_c, x[:6], z, rho), dense.grad_hamiltonian(s_d, x[:6], z, rho)):
        assert normwise_error(a, b) < 1e-12
    noise = Noise(rng.standard_normal((7, 3)), rng.standard_normal((7, 3)))
    np.testing.assert_allclose(chunked.elbo_terms(s_c, x[:7], noise=noise).elbo,
                               dense.elbo_terms(s_d, x[:7], noise=noise).elbo, rtol=1e-11)


def test_training_gradients_flow_through_the_blocks(rng):
    for name in ("torch", "jax"):
        (dense, chunked), (s_d, s_c), x = _pair((name, "cpu"), rng)
        noise = Noise(rng.standard_normal((9, 3)), rng.standard_normal((9, 3)))
        (l_d, g_d), (l_c, g_c) = (m.loss_and_grad(s, x[:9], noise=noise) for m, s in ((dense, s_d), (chunked, s_c)))
        assert l_c == pytest.approx(l_d, rel=1e-12)
        g_d, g_c = dict(flatten(g_d)), dict(flatten(g_c))
        for k in g_d:
            assert normwise_error(np.asarray(g_c[k]), np.asarray(g_d[k])) < 1e-10, (name, k)


def test_the_sampler_and_geodesics_use_the_blocks(rng):
    (dense, chunked), (s_d, s_c), x = _pair(("torch", "cpu"), rng)
    a = chunked.sample(s_c, 6, transitions=3, seed=2, progress=False)
    b = dense.sample(s_d, 6, transitions=3, seed=2, progress=False)
    np.testing.assert_allclose(a.z, b.z, rtol=1e-10, atol=1e-12)
    mu = dense.encode(s_d, x[:2])[0]
    ga = chunked.geodesic(s_c, mu[0], mu[1], n_segments=6, iterations=20, progress=False)
    gb = dense.geodesic(s_d, mu[0], mu[1], n_segments=6, iterations=20, progress=False)
    assert ga.length == pytest.approx(gb.length, rel=1e-10)


def test_evaluation_in_blocks_never_holds_a_batch_by_all_centroids_array(rng):
    import jax

    batch, n_centroids, chunk = 6, 29, 4
    model = small_model("jax", input_dim=8, latent_dim=3, centroid_chunk=chunk, dtype="float64")
    state = model.init(seed=0, centroids=rng.uniform(size=(n_centroids, 8)))
    x = rng.uniform(size=(batch, 8))
    noise = model.draw_noise(batch, None, 0)
    B, parts, flow = model.backend, model.components, model.flow
    from rhvae.math import elbo as elbo_math

    jaxpr = jax.make_jaxpr(lambda p, m, xi, e, g: elbo_math.elbo_terms(B, parts, flow, p, m, xi, xi, e, g))(
        state.params, state.metric, *(model.to_backend(a) for a in (x, noise.eps, noise.xi)))
    shapes = [tuple(a.shape) for a in avals(jaxpr.jaxpr) if hasattr(a, "shape")]
    assert any(s[-2:] == (batch, chunk) for s in shapes)  # the per-block weights
    assert not [s for s in shapes if batch in s and n_centroids in s], "a (B, N) array exists"


def test_truncation_stays_within_its_stated_bound(backend, rng):
    """``‖G⁻¹ - G̃⁻¹‖₂ ≤ a tol Σ_i tr M_i`` and ``‖G - G̃‖₂ ≤ ‖G⁻¹ - G̃⁻¹‖₂ / λ²``."""
    tol, lam = 0.05, 0.01
    (exact, _), (state, _), _ = _pair(backend, rng, lam=lam)
    truncated = small_model(*backend, input_dim=8, latent_dim=3, dtype="float64", T=0.9, lam=lam, weight_tol=tol)
    z = 1.5 * rng.standard_normal((40, 3))
    M = exact.backend.to_numpy(state.metric.M)
    bound = tol * np.trace(M, axis1=1, axis2=2).sum()
    diff = np.linalg.norm(exact.G_inv(state, z) - truncated.G_inv(state, z), ord=2, axis=(1, 2))
    assert diff.max() > 0  # some weights were dropped
    assert np.all(diff <= bound)
    g_diff = np.linalg.norm(exact.metric_tensor(state, z) - truncated.metric_tensor(state, z), ord=2, axis=(1, 2))
    assert np.all(g_diff <= diff / lam**2 * (1 + 1e-6))  # tight where G⁻¹ ≈ λI: round-off of G


def test_chunk_and_tolerance_are_checked():
    with pytest.raises(ValueError, match="centroid_chunk"):
        small_model("torch", centroid_chunk=0)
    with pytest.raises(ValueError, match="weight_tol"):
        small_model("torch", weight_tol=1.5)


def test_gradients_through_the_blocks_keep_no_block_of_weights_on_jax(rng):
    """The backward pass of a blocked sum recomputes each block (``jax.checkpoint``): no
    ``(blocks, B, chunk)`` stack of weights is saved for it."""
    import jax

    from rhvae.math.metric import MetricSpec, local_metric

    batch, n_centroids, chunk = 6, 29, 4
    model = small_model("jax", input_dim=8, latent_dim=3, dtype="float64")
    B = model.backend
    state = model.init(seed=0, centroids=rng.uniform(size=(n_centroids, 8))).metric
    spec = MetricSpec(0.9, 0.01, chunk=chunk)
    z = B.asarray(rng.standard_normal((batch, 3)), "float64")
    jaxpr = jax.make_jaxpr(jax.grad(lambda zz: B.xp.sum(local_metric(B, zz, state, spec).logdet_G)))(z)
    shapes = [tuple(a.shape) for a in avals(jaxpr.jaxpr) if hasattr(a, "shape")]
    assert any(s[-2:] == (batch, chunk) for s in shapes)
    assert not [s for s in shapes if len(s) == 3 and s[1:] == (batch, chunk)], "a stack of block weights is saved"
