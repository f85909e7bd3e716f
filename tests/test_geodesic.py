"""Geodesics: straight lines of closed-form length in a constant metric, shorter than the
straight segment in a curved one."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import small_model
from rhvae.math.metric import metric_state


def _with_metric(model, centroids, L):
    B = model.backend
    state = model.init(seed=0)
    return state.replace(metric=metric_state(B, B.asarray(centroids, "float64"), B.asarray(L, "float64")))


def test_in_a_constant_metric_the_geodesic_is_the_straight_line_with_closed_form_length(backend):
    """``T → ∞`` makes every weight 1: ``G⁻¹ = Σ_i M_i + λI`` everywhere, so the geodesic is the
    segment and its length ``√(Δᵀ G Δ)``."""
    name, device = backend
    model = small_model(name, device, latent_dim=2, dtype="float64", T=1e8, lam=0.1)
    L = np.array([[[1.0, 0.0], [0.6, 0.5]], [[0.7, 0.0], [-0.2, 1.2]]])
    state = _with_metric(model, np.zeros((2, 2)), L)
    z0, z1 = np.array([-1.0, 0.5]), np.array([1.5, -0.3])
    path = model.geodesic(state, z0, z1, n_segments=16, iterations=200, progress=False)
    G = np.linalg.inv(np.einsum("nij,nkj->ik", L, L) + 0.1 * np.eye(2))
    delta = z1 - z0
    assert path.length == pytest.approx(np.sqrt(delta @ G @ delta), rel=1e-9)
    assert path.energy == pytest.approx(delta @ G @ delta, rel=1e-9)
    t = np.linspace(0, 1, 17)[:, None]
    np.testing.assert_allclose(path.z, (1 - t) * z0 + t * z1, atol=1e-6)
    assert path.x.shape == (17, 10)


def test_in_a_curved_metric_the_geodesic_avoids_the_expensive_region(rng):
    """``G`` is small near the centroids and large between them: with one centroid above the
    middle of the segment, the geodesic bends up through it and is shorter than the segment."""
    model = small_model("torch", latent_dim=2, dtype="float64", T=1.0, lam=1e-2)
    state = _with_metric(model, np.array([[0.0, 0.8], [-2.0, 0.0], [2.0, 0.0]]), np.stack([2.0 * np.eye(2)] * 3))
    path = model.geodesic(state, [-2.0, 0.0], [2.0, 0.0], n_segments=24, iterations=400,
                          learning_rate=0.05, progress=False)
    assert path.length < 0.97 * path.straight_length
    assert path.z[12, 1] > 0.2                               # the middle moved up, off the line


def test_geodesic_checks_its_arguments():
    model = small_model("torch", latent_dim=2)
    state = model.refresh_metric(model.init(seed=0), np.random.default_rng(0).uniform(size=(5, 10)))
    with pytest.raises(ValueError, match=r"z0 must be a latent point of shape \(2,\); got shape \(3,\)"):
        model.geodesic(state, [0.0, 0.0, 1.0], [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="n_segments must be >= 1"):
        model.geodesic(state, [0.0, 0.0], [1.0, 1.0], n_segments=0)
