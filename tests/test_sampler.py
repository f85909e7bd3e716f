"""The HMC sampler: its targets' gradients, a closed-form target, backend parity, the model API."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import rhvae
from helpers import small_model
from rhvae.math import sampler
from rhvae.math.metric import MetricSpec, MetricState, metric_state
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
        z, acc, _ = sampler.hmc_transition(B, target, *(B.asarray(draws[k], "float64") for k in ("z", "p", "log_u")),
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
    draws = model.sample(state, 2000, transitions=60, warmup=0, eps=0.25, n_lf=8, target="volume", seed=11,
                         progress=False)
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
    a = model.sample(state, 5, transitions=3, warmup=5, seed=1, progress=False)
    b = model.sample(state, 5, transitions=3, warmup=5, seed=1, progress=False)
    np.testing.assert_array_equal(a.z, b.z)
    prior = model.sample_prior(state, 4, seed=2)
    assert prior.x.shape == (4, 10) and np.isnan(prior.acceptance)
    with pytest.raises(ValueError, match="transitions must be >= 1"):
        model.sample(state, 5, transitions=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        model.sample(state, 2.5)
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        model.sample(state, 5, eps=-1.0)
    with pytest.raises(ValueError, match=r"target_accept must lie in \(0, 1\)"):
        model.sample(state, 5, target_accept=1.0)
    with pytest.raises(ValueError, match="target must be one of"):
        model.sample(state, 5, target="prior")


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
            z, _, _ = sampler.hmc_transition(B, target, z, B.asarray(rng.standard_normal((1000, 2)), "float64"),
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
    draws = model.sample(state, 2000, transitions=60, warmup=0, eps=0.25, n_lf=10, beta0=0.3, seed=12,
                         target="centroids", progress=False)
    sd = T / np.sqrt(d)
    for j in range(d):
        assert stats.kstest(draws.z[:, j], "norm", args=(c[j], sd)).pvalue > 1e-3
    with pytest.raises(ValueError, match="beta0 must lie in"):
        model.sample(state, 2, beta0=1.5)


# ---------------------------------------------------------------- the proper target and adaptation


def _centroid_target(B, rng, **kwargs):
    volume = _random_target(B, rng, **kwargs)
    return sampler.CentroidTarget(volume.state, volume.spec)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_the_gradient_of_the_centroid_volume_matches_autodiff_and_its_value_the_definition(backend, rng, reduction):
    B = rhvae.get_registry().create("backend", backend[0], device=backend[1])
    target = _centroid_target(B, rng, reduction=reduction)
    z = B.asarray(rng.normal(size=(5, 3)) * 2.0, "float64")
    log_p, grad = target(B, z)
    expected = B.grad(lambda zz: B.xp.sum(target(B, zz)[0]))(z)
    assert normwise_error(B.to_numpy(grad), B.to_numpy(expected)) < 1e-10
    # ½ log det Σ_i M_i w_i(z), written out in numpy
    c, M = B.to_numpy(target.state.centroids), B.to_numpy(target.state.M)
    zn = B.to_numpy(z)
    w = np.exp(-((zn[:, None, :] - c[None]) ** 2).sum(-1) / target.spec.T ** 2)
    direct = 0.5 * np.linalg.slogdet(np.einsum("bn,nij->bij", w, M))[1]
    np.testing.assert_allclose(B.to_numpy(log_p), direct, rtol=1e-12)


def test_the_centroid_target_vanishes_far_from_the_data_where_the_volume_target_does_not():
    """40 chains from the left of two centroids, 150 tempered transitions at a large step: with
    ``λ = 0.05`` the volume target's plateau holds chains far away; the centroid target none."""
    B = _backend("torch")
    c = np.array([[-1.0, 0.0], [1.0, 0.0]])
    state = metric_state(B, B.asarray(c, "float64"), B.asarray(np.stack([np.eye(2)] * 2), "float64"))
    far = {}
    for name in ("centroids", "volume"):
        target, rng = sampler.TARGETS[name](state, MetricSpec(0.5, 0.05)), np.random.default_rng(0)
        z = B.asarray(np.tile(c[:1], (400, 1)), "float64")
        for _ in range(150):
            z, _, _ = sampler.hmc_transition(B, target, z, B.asarray(rng.standard_normal((400, 2)), "float64"),
                                             B.asarray(np.log(rng.uniform(size=400)), "float64"), 0.4, 10)
        far[name] = float(np.mean(np.abs(B.to_numpy(z)).max(axis=1) > 3.0))
    assert far["centroids"] == 0.0 and far["volume"] > 0.1, far
    # the chains were not simply stuck: far out the centroid target is negligible, not -inf
    log_far, _ = sampler.CentroidTarget(state, MetricSpec(0.5, 0.05))(B, B.asarray([[6.0, 0.0]], "float64"))
    assert np.isfinite(B.to_numpy(log_far)).all()


def test_dual_averaging_finds_the_step_of_a_known_acceptance_curve():
    """``α(ε) = exp(-ε)`` (no noise): the step that accepts at rate δ is ``-log δ``."""
    for delta in (0.65, 0.8, 0.9):
        adapt = sampler.DualAveraging(0.01, delta)
        for _ in range(2000):
            adapt.update(np.exp(-adapt.step))
        assert adapt.final == pytest.approx(-np.log(delta), rel=0.02)


@pytest.mark.parametrize("target_accept", [0.6, 0.8])
def test_warm_up_reaches_the_target_acceptance_on_a_gaussian(target_accept):
    """One centroid, ``M = √3 I``: the centroid target is exactly ``N(c, T²/d I)``. After the
    warm-up the kept transitions accept at the requested rate, and the draws have the right law."""
    d, T, c = 2, 0.8, np.array([0.5, -1.0])
    model = small_model("jax", latent_dim=d, dtype="float64", T=T)
    B = model.backend
    state = model.init(seed=0).replace(metric=metric_state(
        B, B.asarray(c[None], "float64"), B.asarray(np.sqrt(3.0) * np.eye(d)[None], "float64")))
    draws = model.sample(state, 500, transitions=100, warmup=300, target_accept=target_accept, n_lf=5, seed=3,
                         target="centroids", progress=False)
    assert abs(draws.acceptance - target_accept) < 0.07, (draws.acceptance, draws.step_size)
    assert draws.acceptance_per_chain.shape == (500,) and draws.trace.shape == (100, 500, d)
    sd = T / np.sqrt(d)
    for j in range(d):
        assert stats.kstest(draws.z[:, j], "norm", args=(c[j], sd)).pvalue > 1e-3
    assert np.all(draws.diagnostics["r_hat"] < 1.05) and np.all(draws.diagnostics["ess_bulk"] > 1000)


def test_an_adapted_run_agrees_across_backends(rng):
    """float64, the same model and seed: the warm-up picks the same step size on torch and jax and
    the chains end at the same points (dual averaging amplifies round-off by ``√m/γ``, about 100
    here, so the bound is 10⁻⁶ rather than float64's 10⁻¹⁰)."""
    x = rng.uniform(size=(30, 10))
    runs = {}
    for name in ("torch", "jax"):
        model = small_model(name, latent_dim=2, dtype="float64")
        state = model.refresh_metric(model.init(seed=0), x)
        runs[name] = model.sample(state, 6, transitions=10, warmup=20, seed=4, progress=False)
    assert runs["jax"].step_size == pytest.approx(runs["torch"].step_size, rel=1e-6)
    assert normwise_error(runs["jax"].trace, runs["torch"].trace) < 1e-6
    np.testing.assert_array_equal(runs["jax"].acceptance_per_chain, runs["torch"].acceptance_per_chain)


def test_diagnostics_agree_with_the_effective_sample_size_of_an_ar1_chain():
    """``y_t = φ y_{t-1} + √(1-φ²) ε_t`` has ``ESS = n (1-φ)/(1+φ)`` per chain; 8 independent chains
    of a stationary start give R-hat ≈ 1."""
    from rhvae.diagnostics import chain_diagnostics

    phi, draws, chains = 0.8, 5000, 8
    rng = np.random.default_rng(0)
    y = np.empty((draws, chains, 1))
    y[0] = rng.standard_normal((chains, 1))
    for t in range(1, draws):
        y[t] = phi * y[t - 1] + np.sqrt(1 - phi ** 2) * rng.standard_normal((chains, 1))
    result = chain_diagnostics(y)
    expected = draws * chains * (1 - phi) / (1 + phi)
    assert result["ess_bulk"][0] == pytest.approx(expected, rel=0.15)
    assert abs(result["r_hat"][0] - 1.0) < 0.01
    stuck = np.concatenate([y[:, :4], y[:, 4:] + 3.0], axis=1)  # half the chains in another mode
    assert chain_diagnostics(stuck)["r_hat"][0] > 1.5


# ---------------------------------------------------------------- the aggregate-posterior target


def _posterior_target(B, rng, n=5, d=3):
    state = MetricState(B.asarray(rng.normal(size=(n, d)) * 2.0, "float64"), B.asarray(np.zeros((n, d, d)), "float64"),
                        log_sigma=B.asarray(rng.normal(size=(n, d)) * 0.3 - 0.5, "float64"))
    return sampler.PosteriorTarget(state, MetricSpec(0.8, 0.01))


def test_the_posterior_target_is_the_mixture_of_the_encoder_gaussians(backend, rng):
    """``log π`` equals scipy's mixture density and ``∇ log π`` autodiff's, far from the modes too."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    B = rhvae.get_registry().create("backend", backend[0], device=backend[1])
    target = _posterior_target(B, rng)
    z = B.asarray(rng.normal(size=(7, 3)) * 4.0, "float64")
    log_p, grad = target(B, z)
    c, sigma = B.to_numpy(target.state.centroids), np.exp(B.to_numpy(target.state.log_sigma))
    zn = B.to_numpy(z)
    direct = logsumexp([multivariate_normal(c[i], np.diag(sigma[i] ** 2)).logpdf(zn) for i in range(len(c))],
                       axis=0) - np.log(len(c))
    np.testing.assert_allclose(B.to_numpy(log_p), direct, rtol=1e-12)
    expected = B.grad(lambda zz: B.xp.sum(target(B, zz)[0]))(z)
    assert normwise_error(B.to_numpy(grad), B.to_numpy(expected)) < 1e-10


def test_the_default_sampler_draws_the_aggregate_posterior(rng):
    """Two encoded points with known ``μ, σ``: the draws follow the two-Gaussian mixture (KS test
    of each coordinate against the mixture's CDF), from a start in equilibrium and after it."""
    d = 2
    model = small_model("jax", latent_dim=d, dtype="float64")
    B = model.backend
    c, sigma = np.array([[-1.5, 0.0], [1.5, 0.5]]), np.array([[0.3, 0.6], [0.5, 0.2]])
    state = model.init(seed=0).replace(metric=MetricState(
        B.asarray(c, "float64"), B.asarray(np.zeros((2, d, d)), "float64"),
        log_sigma=B.asarray(np.log(sigma), "float64")))
    draws = model.sample(state, 1000, transitions=40, warmup=100, seed=2, progress=False)
    for j in range(d):
        cdf = lambda v, j=j: 0.5 * sum(stats.norm.cdf(v, c[i, j], sigma[i, j]) for i in range(2))  # noqa: E731
        assert stats.kstest(draws.z[:, j], cdf).pvalue > 1e-3
    assert 0.5 < draws.acceptance < 0.8


def test_the_posterior_target_needs_the_encoder_scales(rng):
    model = small_model("torch", latent_dim=2, dtype="float64")
    x = rng.uniform(size=(20, 10))
    state = model.refresh_metric(model.init(seed=0), x)
    assert state.metric.log_sigma.shape == (20, 2)
    np.testing.assert_allclose(model.backend.to_numpy(state.metric.log_sigma), model.encode(state, x)[1])
    old = state.replace(metric=state.metric._replace(log_sigma=None))  # as a checkpoint of rhvae <= 0.3.0
    with pytest.raises(ValueError, match="refresh_metric"):
        model.sample(old, 3, progress=False)
    assert model.sample(old, 3, target="centroids", transitions=2, warmup=2, progress=False).z.shape == (3, 2)


def test_log_target_is_the_density_each_target_samples(rng):
    """``model.log_target``: ``-½ log det G`` for the volume target, the mixture for the posterior."""
    from scipy.special import logsumexp

    model = small_model("torch", latent_dim=2, dtype="float64")
    x = rng.uniform(size=(15, 10))
    state = model.refresh_metric(model.init(seed=0), x)
    z = rng.normal(size=(6, 2))
    np.testing.assert_allclose(model.log_target(state, z, "volume"), -0.5 * model.log_det_metric(state, z), rtol=1e-12)
    mu, log_sigma = model.encode(state, x)
    comp = -0.5 * (((z[:, None] - mu[None]) / np.exp(log_sigma[None])) ** 2).sum(-1) - log_sigma.sum(-1)
    expected = logsumexp(comp, axis=1) - np.log(len(x)) - np.log(2 * np.pi)
    np.testing.assert_allclose(model.log_target(state, z), expected, rtol=1e-10)
    samples = model.sample(state, 4, transitions=2, warmup=2, progress=False)
    assert samples.target == "posterior"


def test_the_posterior_target_keeps_float32_accuracy_for_sharp_encoders(rng):
    """Codes spread over ±10 with ``σ = 0.005``: an expanded ``z² s - 2 z s c + s c²`` loses
    about 10 nats in float32; the differences keep ``log π`` within 0.01 nats of float64."""
    B = _backend("torch")
    n, d = 200, 4
    c, log_sigma = rng.uniform(-10, 10, size=(n, d)), np.full((n, d), np.log(0.005))
    z = c[:8] + 0.005 * rng.standard_normal((8, d))
    values = {}
    for dtype in ("float32", "float64"):
        state = MetricState(B.asarray(c, dtype), B.asarray(np.zeros((n, d, d)), dtype), log_sigma=B.asarray(log_sigma, dtype))
        values[dtype] = B.to_numpy(sampler.PosteriorTarget(state, MetricSpec(0.8, 0.01))(B, B.asarray(z, dtype))[0])
    np.testing.assert_allclose(values["float32"], values["float64"], atol=1e-2)
