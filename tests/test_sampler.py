"""The Riemannian sampler: its gradient, a closed-form target, backend parity, the model API."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import rhvae
from helpers import small_model
from rhvae.math import sampler
from rhvae.math.metric import MetricSpec, metric_state
from rhvae.testing import normwise_error


def _backend(name: str):
    return rhvae.get_registry().create("backend", name, device="cpu")


def _random_target(B, rng, n=6, d=3, T=0.9, lam=0.05, reduction="sum"):
    L = np.tril(rng.normal(size=(n, d, d)), -1) + np.eye(d) * np.exp(rng.normal(size=(n, 1, d)) * 0.3)
    state = metric_state(B, B.asarray(rng.normal(size=(n, d)), "float64"), B.asarray(L, "float64"))
    return sampler.VolumeTarget(state, MetricSpec(T, lam, reduction))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_the_gradient_of_the_log_volume_matches_autodiff(backend, rng, reduction):
    B = rhvae.get_registry().create("backend", backend[0], device=backend[1])
    target = _random_target(B, rng, reduction=reduction)
    z = B.asarray(rng.normal(size=(5, 3)), "float64")
    _, grad = sampler.log_volume_and_grad(B, target, z)
    expected = B.grad(lambda zz: B.xp.sum(sampler.log_volume_and_grad(B, target, zz)[0]))(z)
    assert normwise_error(B.to_numpy(grad), B.to_numpy(expected)) < 1e-10


def test_one_transition_agrees_across_backends(rng):
    draws = {k: rng.normal(size=s) for k, s in (("z", (8, 3)), ("p", (8, 3)))}
    draws["log_u"] = np.log(rng.uniform(size=8))
    out = {}
    for name in ("torch", "jax"):
        B = _backend(name)
        target = _random_target(B, np.random.default_rng(3))
        z, acc = sampler.hmc_transition(B, target, *(B.asarray(draws[k], "float64") for k in ("z", "p", "log_u")),
                                        eps=0.05, n_lf=5)
        out[name] = (B.to_numpy(z), B.to_numpy(acc))
    assert normwise_error(out["jax"][0], out["torch"][0]) < 1e-10
    np.testing.assert_array_equal(out["jax"][1], out["torch"][1])
    assert 0 < out["torch"][1].sum() <= 8


def test_one_centroid_with_isotropic_M_gives_a_gaussian_target():
    """``G⁻¹(z) = m e^{-‖z-c‖²/T²} I + λI`` with ``λ → 0`` has ``√det G⁻¹ ∝ e^{-d‖z-c‖²/(2T²)}``:
    the target is ``N(c, T²/d I)``. 2,000 chains, 60 transitions; Kolmogorov-Smirnov per coordinate."""
    d, T, c = 2, 0.8, np.array([0.5, -1.0])
    model = small_model("torch", latent_dim=d, dtype="float64", T=T, lam=1e-12)
    B = model.backend
    state = model.init(seed=0).replace(metric=metric_state(
        B, B.asarray(c[None], "float64"), B.asarray(np.sqrt(3.0) * np.eye(d)[None], "float64")))
    draws = model.sample(state, 2000, transitions=60, eps=0.25, n_lf=8, seed=11, progress=False)
    assert draws.x.shape == (2000, 10) and draws.z.shape == (2000, d)
    assert 0.5 < draws.acceptance <= 1.0
    sd = T / np.sqrt(d)
    for j in range(d):
        assert stats.kstest(draws.z[:, j], "norm", args=(c[j], sd)).pvalue > 1e-3
    np.testing.assert_allclose(draws.z.mean(axis=0), c, atol=5 * sd / np.sqrt(2000))
    np.testing.assert_allclose(draws.z.std(axis=0), sd, rtol=0.08)


def test_sampling_is_reproducible_and_checks_its_arguments(rng):
    model = small_model("jax", latent_dim=2, K=2, steps=2)
    x = rng.uniform(size=(20, 10))
    state = model.refresh_metric(model.init(seed=0), x)
    a = model.sample(state, 5, transitions=3, seed=1, progress=False)
    b = model.sample(state, 5, transitions=3, seed=1, progress=False)
    np.testing.assert_array_equal(a.z, b.z)
    prior = model.sample_prior(state, 4, seed=2)
    assert prior.x.shape == (4, 10) and np.isnan(prior.acceptance)
    with pytest.raises(ValueError, match="transitions must be >= 1"):
        model.sample(state, 5, transitions=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        model.sample(state, 2.5)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        model.sample(state, 5, eps=-1.0)


def test_a_tempered_trajectory_is_reversible(rng):
    B = _backend("jax")
    target = _random_target(B, np.random.default_rng(5))
    before, after = (B.asarray(f, "float64") for f in sampler.tempering_factors(7, 0.2))
    z0, p0 = B.asarray(rng.normal(size=(6, 3)), "float64"), B.asarray(rng.normal(size=(6, 3)), "float64")
    z1, p1, _ = sampler.trajectory(B, target, z0, p0, 0.05, before, after)
    z2, p2, _ = sampler.trajectory(B, target, z1, -p1, 0.05, before, after)
    assert np.abs(B.to_numpy(z1 - z0)).max() > 0.05
    np.testing.assert_allclose(B.to_numpy(z2), B.to_numpy(z0), atol=1e-12)
    np.testing.assert_allclose(B.to_numpy(-p2), B.to_numpy(p0), atol=1e-12)


def test_tempering_factors_heat_then_cool_to_unit_product():
    before, after = sampler.tempering_factors(5, 0.25)
    # h = 2 heated steps: (√α)² = 1/√β0 at the middle, undone by the last two
    np.testing.assert_allclose(before, [2**0.5, 2**0.5, 1, 1, 1])
    np.testing.assert_allclose(after, [1, 1, 1, 2**-0.5, 2**-0.5])
    assert np.all(sampler.tempering_factors(4, 1.0)[0] == 1)
    with pytest.raises(ValueError, match="n_lf >= 2"):
        sampler.tempering_factors(1, 0.5)


def test_tempering_carries_chains_across_a_low_volume_gap():
    """Two centroids 5 apart with ``λ = 1e-3``: the valley between them is 8 nats below the modes.
    From the left mode, plain HMC almost never crosses in 40 transitions; tempered to β0 = 0.1 it does."""
    B = _backend("torch")
    c = np.array([[-2.5, 0.0], [2.5, 0.0]])
    state = metric_state(B, B.asarray(c, "float64"), B.asarray(np.sqrt(3.0) * np.stack([np.eye(2)] * 2), "float64"))
    target = sampler.VolumeTarget(state, MetricSpec(0.8, 1e-3))
    right = {}
    for beta0 in (1.0, 0.1):
        rng = np.random.default_rng(0)
        z = B.asarray(np.tile(c[:1], (1000, 1)), "float64")
        for _ in range(40):
            z, _ = sampler.hmc_transition(B, target, z, B.asarray(rng.standard_normal((1000, 2)), "float64"),
                                          B.asarray(np.log(rng.uniform(size=1000)), "float64"), 0.25, 8, beta0)
        right[beta0] = float(np.mean(B.to_numpy(z)[:, 0] > 0))
    assert right[1.0] < 0.05 and right[0.1] > 0.2, right


def test_the_tempered_sampler_keeps_the_gaussian_target():
    d, T, c = 2, 0.8, np.array([0.5, -1.0])
    model = small_model("jax", latent_dim=d, dtype="float64", T=T, lam=1e-12)
    B = model.backend
    state = model.init(seed=0).replace(metric=metric_state(
        B, B.asarray(c[None], "float64"), B.asarray(np.sqrt(3.0) * np.eye(d)[None], "float64")))
    # n_lf=10: with 8 steps of 0.25 a tempered trajectory nearly returns to its start in this
    # well (exact still, but slow to mix from the centroid)
    draws = model.sample(state, 2000, transitions=60, eps=0.25, n_lf=10, beta0=0.3, seed=12, progress=False)
    sd = T / np.sqrt(d)
    for j in range(d):
        assert stats.kstest(draws.z[:, j], "norm", args=(c[j], sd)).pvalue > 1e-3
    with pytest.raises(ValueError, match="beta0 must lie in"):
        model.sample(state, 2, beta0=1.5)
