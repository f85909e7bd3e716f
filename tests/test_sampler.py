"""The Riemannian sampler: its gradient, a closed-form target, backend parity, the model API."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import rhvae
from helpers import small_model
from rhvae.math import sampler
from rhvae.math.metric import metric_state
from rhvae.testing import normwise_error


def _backend(name: str):
    return rhvae.get_registry().create("backend", name, device="cpu")


def _random_target(B, rng, n=6, d=3, T=0.9, lam=0.05, reduction="sum"):
    L = np.tril(rng.normal(size=(n, d, d)), -1) + np.eye(d) * np.exp(rng.normal(size=(n, 1, d)) * 0.3)
    state = metric_state(B, B.asarray(rng.normal(size=(n, d)), "float64"), B.asarray(L, "float64"))
    return sampler.VolumeTarget(state, T, lam, reduction)


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
