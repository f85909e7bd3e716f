"""``integrator="aetk"`` and the ``aetk_compat`` preset reproduce AutoEncoderToolkit.jl's closed form
(``aetk_rhvae_spec.md`` §5.2, §7.2), computed here in numpy from the metric state alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from helpers import small_model
from rhvae.state import Noise
from rhvae.presets import AETK_COMPAT, aetk_compat
from rhvae.testing import normwise_error
from rhvae.tree import flatten


def _g_inv(z, centroids, M, T, lam):
    """AETK's ``G⁻¹(z) = (1/N) Σ_i M_i exp(-‖z - c_i‖²/T²) + λI``, per row of ``z``."""
    w = np.exp(-((z[:, None, :] - centroids[None]) ** 2).sum(-1) / T**2)
    return np.einsum("bn,nij->bij", w, M) / len(centroids) + lam * np.eye(z.shape[1])


def _log_normal_precision(rho, precision):
    """``log N(ρ; 0, Σ)`` with ``Σ⁻¹ = precision``."""
    d = rho.shape[1]
    _, logdet = np.linalg.slogdet(precision)
    return -0.5 * (d * math.log(2 * math.pi) - logdet) - 0.5 * np.einsum("bi,bij,bj->b", rho, precision, rho)


def _closed_form(z, rho, centroids, M, c, scales):
    """§5.2 with the spherical prior (``∇zH̃ = z``): ``ρ̃ = ρ - s(ε/2)z``, ``z' = z + sεG⁻¹(z)ρ̃``,
    ``ρ' = ρ̃ - (ε/2)z'``, then the tempering rescale."""
    s, eps = c.steps, c.eps
    for scale in scales:
        rho_t = rho - s * 0.5 * eps * z
        z = z + s * eps * np.einsum("bij,bj->bi", _g_inv(z, centroids, M, c.T, c.lam), rho_t)
        rho = (rho_t - 0.5 * eps * z) * scale
    return z, rho


def _model(backend, dtype="float64", **overrides):
    # a large step and T so that the metric terms of the closed form matter at this scale
    return small_model(backend, input_dim=8, latent_dim=3, **aetk_compat(dtype=dtype, eps=0.05, T=1.5, **overrides))


@pytest.mark.parametrize("tempering", ["quadratic", "none"])
def test_trajectory_and_elbo_match_the_closed_form(backend, tempering):
    rng = np.random.default_rng(7)
    x = (rng.uniform(size=(12, 8)) > 0.5).astype(float)
    model = _model(backend[0], tempering=tempering)
    state = model.init(seed=3, centroids=x)
    noise = Noise(rng.standard_normal((12, 3)), rng.standard_normal((12, 3)))
    t = model.elbo_terms(state, x, noise=noise)
    centroids, M = (model.backend.to_numpy(a) for a in state.metric[:2])
    c = model.config

    # ρ0 = γ/√β0 with γ = C⁻ᵀξ ~ N(0, G(z0)), C the Cholesky factor of G⁻¹(z0)
    C = np.linalg.cholesky(_g_inv(t.z0, centroids, M, c.T, c.lam))
    gamma = np.linalg.solve(np.swapaxes(C, 1, 2), noise.xi[..., None])[..., 0]
    np.testing.assert_allclose(t.rho0, gamma / math.sqrt(c.beta0), rtol=1e-10)
    zK, rhoK = _closed_form(t.z0, t.rho0, centroids, M, c, model.flow.momentum_scales)
    assert np.abs(zK - t.z0).max() > 1e-2  # the flow moved
    # float64 central differences of H̃ (|H̃| ~ 10, h = 6e-6): round-off ~1e-10 per gradient
    np.testing.assert_allclose(t.zK, zK, atol=1e-9)
    np.testing.assert_allclose(t.rhoK, rhoK, atol=1e-9)

    d = 3
    logits = model.decoder_outputs(state, t.zK)[0]
    log_px = np.sum(x * logits - np.logaddexp(0, logits), axis=1)
    log_p_rho = _log_normal_precision(t.rhoK, _g_inv(t.zK, centroids, M, c.T, c.lam))
    log_pz = -0.5 * (t.zK**2).sum(1) - 0.5 * d * math.log(2 * math.pi)
    log_q_rho = _log_normal_precision(t.rho0, _g_inv(t.z0, centroids, M, c.T, c.lam))  # N(ρ0; 0, G(z0))
    # AETK subtracts (d/2) log β0 whatever the schedule, even with no rescaling at all
    elbo = log_px + log_p_rho + log_pz - t.log_qz - log_q_rho + 0.5 * d * math.log(c.beta0)
    np.testing.assert_allclose(t.log_q_rho, log_q_rho, rtol=1e-12)
    np.testing.assert_allclose(t.elbo, elbo, rtol=1e-10, atol=1e-10)


def test_float32_central_differences_stay_within_their_round_off():
    rng = np.random.default_rng(8)
    x = (rng.uniform(size=(12, 8)) > 0.5).astype(np.float32)
    model = _model("torch", dtype="float32")
    state = model.init(seed=3, centroids=x)
    t = model.elbo_terms(state, x, seed=1)
    centroids, M = (model.backend.to_numpy(a).astype(np.float64) for a in state.metric[:2])
    zK, rhoK = _closed_form(t.z0.astype(np.float64), t.rho0.astype(np.float64), centroids, M, model.config,
                            model.flow.momentum_scales)
    # h = ∛eps(f32) = 4.9e-3: each gradient is off by ~|H̃| eps / 2h ≈ 3e-4 for |H̃| ≈ 30, moved by
    # sε/2 = 0.075 per sub-step and amplified by the G⁻¹ρ̃ position steps; 1.1e-4 observed
    np.testing.assert_allclose(t.zK, zK, atol=5e-4)
    np.testing.assert_allclose(t.rhoK, rhoK, atol=5e-4)


def test_the_aetk_gradient_agrees_across_backends():
    rng = np.random.default_rng(9)
    x = (rng.uniform(size=(10, 8)) > 0.5).astype(float)
    noise = Noise(rng.standard_normal((10, 3)), rng.standard_normal((10, 3)))
    out = {}
    for name in ("torch", "jax"):
        model = _model(name)
        state = model.init(seed=4, centroids=x[:6])
        out[name] = model.loss_and_grad(state, x, noise=noise)
    # central differences divide the backends' ~1e-16 round-off of H̃ by h = 6e-6
    assert out["jax"][0] == pytest.approx(out["torch"][0], rel=1e-9)
    g_t, g_j = dict(flatten(out["torch"][1])), dict(flatten(out["jax"][1]))
    for k in g_t:
        assert np.all(np.isfinite(g_t[k]))
        assert normwise_error(np.asarray(g_j[k]), np.asarray(g_t[k])) < 1e-7, k


def test_one_leapfrog_step_is_the_closed_form():
    rng = np.random.default_rng(10)
    x = (rng.uniform(size=(5, 8)) > 0.5).astype(float)
    model = _model("jax")
    state = model.init(seed=1, centroids=x)
    z, rho = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    z1, rho1 = model.leapfrog(state, x, z, rho)
    centroids, M = (model.backend.to_numpy(a) for a in state.metric[:2])
    ez, erho = _closed_form(z, rho, centroids, M, model.config, [1.0])
    np.testing.assert_allclose(z1, ez, atol=1e-9)
    np.testing.assert_allclose(rho1, erho, atol=1e-9)


def test_preset_values_and_overrides():
    kwargs = aetk_compat(input_dim=4, latent_dim=2, eps=0.01)
    assert kwargs["eps"] == 0.01 and kwargs["reduction"] == "mean" and kwargs["integrator"] == "aetk"
    assert AETK_COMPAT["eps"] == 1e-4  # AETK's source default; the overrides did not mutate it
    model = small_model("torch", input_dim=4, **aetk_compat())
    assert model.config.integrator == "aetk" and model.config.reduction == "mean"


def test_the_aetk_integrator_rejects_what_it_cannot_honour():
    with pytest.raises(ValueError, match="grad_h='finite'"):
        small_model("torch", **aetk_compat(grad_h="analytic"))
    with pytest.raises(ValueError, match="truncate_gradients"):
        small_model("torch", **aetk_compat(truncate_gradients=True))
    with pytest.raises(ValueError, match="unknown integrator .verlet.. Available: aetk, implicit"):
        small_model("torch", integrator="verlet")
