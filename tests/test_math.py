"""Correctness of the mathematics against closed forms and independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import rhvae
from rhvae.testing import normwise_error
from helpers import small_model
from rhvae.math import leapfrog
from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import MetricSpec, MetricState, local_metric, lower_triangular
from rhvae.state import Noise
from rhvae.optim import Adam
from rhvae.geometry import hamiltonian_of


def _backend(spec):
    name, device = spec
    return rhvae.get_registry().create("backend", name, device=device)


def test_lower_triangular_fills_rows_of_the_strict_lower_triangle_in_order(backend):
    B = _backend(backend)
    d = 4
    diag = np.array([[0.1, -0.2, 0.3, 0.0]])
    lower = np.arange(1.0, 7.0)[None]
    L = B.to_numpy(lower_triangular(B, B.asarray(diag, "float64"), B.asarray(lower, "float64")))[0]
    expected = np.zeros((d, d))
    expected[np.diag_indices(d)] = np.exp(diag[0])
    expected[np.tril_indices(d, -1)] = lower[0]
    np.testing.assert_array_equal(L, expected)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_inverse_metric_matches_an_explicit_loop_over_centroids(backend, reduction, rng):
    B = _backend(backend)
    N, d, T, lam = 7, 3, 0.7, 0.05
    c, z = rng.standard_normal((N, d)), rng.standard_normal((5, d))
    L = np.tril(rng.standard_normal((N, d, d)))
    M = L @ L.transpose(0, 2, 1)
    state = MetricState(B.asarray(c, "float64"), B.asarray(M, "float64"))
    m = local_metric(B, B.asarray(z, "float64"), state, MetricSpec(T, lam, reduction))
    a = 1.0 if reduction == "sum" else 1.0 / N
    for b in range(z.shape[0]):
        expected = lam * np.eye(d) + a * sum(M[i] * np.exp(-np.sum((z[b] - c[i]) ** 2) / T**2) for i in range(N))
        assert normwise_error(B.to_numpy(m.G_inv)[b], expected) < 1e-13
        assert abs(B.to_numpy(m.logdet_G)[b] + np.linalg.slogdet(expected)[1]) < 1e-12


def _isotropic_hamiltonian(B, x, c, T, lam, decoder_params, sigma):
    """One centroid with M = I and a linear Gaussian decoder: everything has a closed form."""
    reg = rhvae.get_registry()
    decoder = reg.create("decoder", "gaussian_mlp", hidden=(), sigma=sigma)
    prior = reg.create("prior", "spherical")
    state = MetricState(B.asarray(c[None], "float64"), B.asarray(np.eye(c.size)[None], "float64"))
    return Hamiltonian(B, B.asarray(x, "float64"), decoder, decoder_params, prior, state, MetricSpec(T, lam))


@pytest.mark.parametrize("grad_h", ["autodiff", "finite"])
def test_hamiltonian_and_its_gradient_match_the_closed_form_of_an_isotropic_metric(backend, grad_h, rng):
    """G⁻¹(z) = (w + λ) I, w = exp(-‖z-c‖²/T²); U = ‖x - zW - b‖²/2σ² + ‖z‖²/2 + const."""
    B = _backend(backend)
    d, D, T, lam, sigma = 3, 5, 1.1, 0.3, 0.8
    W, bias = rng.standard_normal((d, D)), rng.standard_normal(D)
    c, x = rng.standard_normal(d), rng.standard_normal((4, D))
    z, rho = rng.standard_normal((4, d)), rng.standard_normal((4, d))
    params = {"out0.w": B.asarray(W, "float64"), "out0.b": B.asarray(bias, "float64")}
    H = _isotropic_hamiltonian(B, x, c, T, lam, params, sigma)

    w = np.exp(-np.sum((z - c) ** 2, axis=1) / T**2)
    s = w + lam
    r = x - z @ W - bias
    U = 0.5 * np.sum(r**2, 1) / sigma**2 + D * (math.log(sigma) + 0.5 * math.log(2 * math.pi)) \
        + 0.5 * np.sum(z**2, 1) + 0.5 * d * math.log(2 * math.pi)
    kappa = 0.5 * d * math.log(2 * math.pi) - 0.5 * d * np.log(s) + 0.5 * s * np.sum(rho**2, 1)
    grad_s = -2.0 * (z - c) * w[:, None] / T**2
    grad_z = -(r @ W.T) / sigma**2 + z + (-0.5 * d / s + 0.5 * np.sum(rho**2, 1))[:, None] * grad_s
    grad_rho = s[:, None] * rho

    zb, rb = B.asarray(z, "float64"), B.asarray(rho, "float64")
    assert normwise_error(B.to_numpy(H(zb, rb)), U + kappa) < 1e-13
    method = rhvae.get_registry().create("grad_h", grad_h)
    tol = 1e-12 if grad_h == "autodiff" else 1e-8
    assert normwise_error(B.to_numpy(method.grad_z(B, H, zb, rb)), grad_z) < tol
    assert normwise_error(B.to_numpy(method.grad_rho(B, H, zb, rb)), grad_rho) < tol


def test_constant_metric_when_T_is_huge(backend, rng):
    """T → ∞: every weight is 1, G⁻¹ = (N + λ) I, ∇z κ = 0, ∇ρ H = (N + λ) ρ."""
    B = _backend(backend)
    N, d, lam = 5, 2, 0.1
    state = MetricState(B.asarray(rng.standard_normal((N, d)), "float64"),
                        B.asarray(np.tile(np.eye(d), (N, 1, 1)), "float64"))
    z, rho = rng.standard_normal((3, d)), rng.standard_normal((3, d))
    m = local_metric(B, B.asarray(z, "float64"), state, MetricSpec(1e8, lam))
    np.testing.assert_allclose(B.to_numpy(m.G_inv), np.broadcast_to((N + lam) * np.eye(d), (3, d, d)), rtol=1e-12)
    np.testing.assert_allclose(B.to_numpy(m.logdet_G), -d * math.log(N + lam), rtol=1e-12)
    H = Hamiltonian(B, None, None, None, None, state, MetricSpec(1e8, lam))
    zb, rb = B.asarray(z, "float64"), B.asarray(rho, "float64")
    g = B.grad(lambda zz: B.xp.sum(H.kinetic(zz, rb)))(zb)
    assert np.max(np.abs(B.to_numpy(g))) < 1e-12
    g_rho = B.grad(lambda rr: B.xp.sum(H.kinetic(zb, rr)))(rb)
    np.testing.assert_allclose(B.to_numpy(g_rho), (N + lam) * rho, rtol=1e-12)


def test_metric_tensor_inverts_the_inverse_metric(backend, rng):
    model = small_model(*backend, dtype="float64")
    state = model.init(seed=0, centroids=rng.uniform(size=(9, 10)))
    z = rng.standard_normal((6, 2))
    G, G_inv = model.metric_tensor(state, z), model.G_inv(state, z)
    np.testing.assert_allclose(G @ G_inv, np.broadcast_to(np.eye(2), G.shape), atol=1e-11)
    np.testing.assert_allclose(model.log_det_metric(state, z), np.linalg.slogdet(G)[1], rtol=1e-11)


def test_inverse_cholesky_in_float32_loses_at_most_condition_number_times_eps(backend, rng):
    """``G = XᵀX`` from ``B.inverse_cholesky`` of an ill-conditioned ``G⁻¹`` (``κ ≈ 10⁴``, as with
    ``λ = 10⁻²`` next to large ``M_i``), against float64: a relative error ``O(κ ε)``, the
    accuracy of a backward-stable inverse (an unstable one loses ``κ² ε`` and fails)."""
    B = _backend(backend)
    d, n = 16, 50
    Q, _ = np.linalg.qr(rng.standard_normal((n, d, d)))
    eigenvalues = np.logspace(-2, 2, d)                           # κ = 10⁴
    a = np.einsum("nij,j,nkj->nik", Q, eigenvalues, Q)
    X = B.to_numpy(B.inverse_cholesky(B.asarray(a, "float32"))).astype(np.float64)
    G = X.transpose(0, 2, 1) @ X
    relative = np.linalg.norm(G - np.linalg.inv(a), axis=(1, 2)) / np.linalg.norm(np.linalg.inv(a), axis=(1, 2))
    assert np.median(relative) < 1e4 * np.finfo(np.float32).eps
    np.testing.assert_allclose(2 * np.log(np.diagonal(X, axis1=1, axis2=2)).sum(-1), -np.linalg.slogdet(a)[1],
                               atol=1e4 * np.finfo(np.float32).eps)


def test_autodiff_grad_h_matches_finite_differences_in_float64(backend, rng):
    auto = small_model(*backend, dtype="float64", grad_h="autodiff")
    fd = small_model(*backend, dtype="float64", grad_h="finite")
    x = rng.uniform(size=(5, 10))
    state = auto.init(seed=1, centroids=rng.uniform(size=(8, 10)))
    z, rho = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    for a, f in zip(auto.grad_hamiltonian(state, x, z, rho), fd.grad_hamiltonian(state, x, z, rho)):
        assert normwise_error(f, a) < 1e-8


def test_loss_gradient_matches_finite_differences_in_float64(backend, rng):
    model = small_model(*backend, dtype="float64", eps=0.05, K=2)
    x = rng.uniform(0.05, 0.95, size=(4, 10))
    state = model.init(seed=2, centroids=rng.uniform(size=(6, 10)))
    noise = Noise(rng.standard_normal((4, 2)), rng.standard_normal((4, 2)))
    _, grads = model.loss_and_grad(state, x, noise=noise)
    B, h = model.backend, 1e-6
    for net, name in [("encoder", "hidden0.w"), ("decoder", "out0.w"), ("metric", "diag.b"), ("metric", "lower.w")]:
        base = B.to_numpy(state.params[net][name])
        for flat in rng.choice(base.size, 2, replace=False):
            idx = np.unravel_index(flat, base.shape)
            values = []
            for sign in (1, -1):
                p = base.copy()
                p[idx] += sign * h
                params = {**state.params, net: {**state.params[net], name: B.asarray(p, "float64")}}
                values.append(model.loss(state.replace(params=params), x, noise=noise))
            fd = (values[0] - values[1]) / (2 * h)
            assert abs(fd - grads[net][name][idx]) < 1e-6 * max(1.0, abs(fd)), (net, name, idx)


def test_quadratic_tempering_matches_the_formula_and_reaches_one():
    schedule = rhvae.get_registry().create("tempering", "quadratic")
    betas = schedule(3, 0.3)
    # Values listed in reference/aetk_rhvae_spec.md §5.3 for beta0 = 0.3, K = 3.
    np.testing.assert_allclose(betas, [0.3, 0.3326, 0.4699, 1.0], atol=1e-4)
    K, beta0 = 10, 0.09
    k = np.arange(K + 1)
    expected = ((1 - 1 / math.sqrt(beta0)) * (k / K) ** 2 + 1 / math.sqrt(beta0)) ** -2
    np.testing.assert_allclose(schedule(K, beta0), expected, rtol=1e-14)
    scales = np.sqrt(betas[:-1] / betas[1:])
    assert math.isclose(np.prod(scales), math.sqrt(0.3), rel_tol=1e-12)
    np.testing.assert_array_equal(rhvae.get_registry().create("tempering", "none")(4, 0.5), np.full(5, 0.5))


def test_leapfrog_is_reversible_and_nearly_conserves_energy(backend, rng):
    model = small_model(*backend, dtype="float64", eps=0.01, steps=40)
    x = rng.uniform(size=(4, 10))
    state = model.init(seed=4, centroids=rng.uniform(size=(8, 10)))
    z, rho = rng.standard_normal((4, 2)), rng.standard_normal((4, 2))
    z1, rho1 = model.leapfrog(state, x, z, rho)
    z2, rho2 = model.leapfrog(state, x, z1, -rho1)
    np.testing.assert_allclose(z2, z, atol=1e-10)
    np.testing.assert_allclose(-rho2, rho, atol=1e-10)
    H0, H1 = model.hamiltonian(state, x, z, rho), model.hamiltonian(state, x, z1, rho1)
    assert np.max(np.abs(H1 - H0)) < 1e-3 * np.max(np.abs(H0))
    assert np.max(np.abs(z1 - z)) > 1e-4  # it moved


def test_leapfrog_composes_the_three_substeps(backend, rng):
    model = small_model(*backend, dtype="float64", eps=0.05, steps=20)
    x = rng.uniform(size=(3, 10))
    state = model.init(seed=5, centroids=rng.uniform(size=(8, 10)))
    z, rho = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    B, c, gh = model.backend, model.config, model.components.grad_h
    H = hamiltonian_of(model, state.params, state.metric, B.asarray(x, "float64"))
    zb, rb = B.asarray(z, "float64"), B.asarray(rho, "float64")
    r1 = leapfrog.momentum_half_step(B, H, gh, zb, rb, c.eps, c.steps)
    g = B.to_numpy(gh.grad_z(B, H, zb, r1))
    np.testing.assert_allclose(B.to_numpy(r1), rho - 0.5 * c.eps * g, atol=1e-9)  # near the fixed point
    z1 = leapfrog.position_step(B, H, gh, zb, r1, c.eps, c.steps)
    r2 = leapfrog.momentum_final_step(B, H, gh, z1, r1, c.eps)
    z_api, r_api = model.leapfrog(state, x, z, rho)
    np.testing.assert_allclose(z_api, B.to_numpy(z1), rtol=1e-13)
    np.testing.assert_allclose(r_api, B.to_numpy(r2), rtol=1e-13)


def test_elbo_momentum_term_is_the_exact_density_of_rho0(backend, rng):
    """log q̄'s ρ0 term is log N(ρ0; 0, G(z0)/β0) (scipy), and the ELBO is log p̄ - log q̄."""
    model = small_model(*backend, dtype="float64", beta0=0.3)
    x = rng.uniform(0.05, 0.95, size=(5, 10))
    state = model.init(seed=6, centroids=rng.uniform(size=(8, 10)))
    t = model.elbo_terms(state, x, noise=Noise(rng.standard_normal((5, 2)), rng.standard_normal((5, 2))))
    G0 = model.metric_tensor(state, t.z0)
    expected = [multivariate_normal(np.zeros(2), G0[b] / 0.3).logpdf(t.rho0[b]) for b in range(5)]
    np.testing.assert_allclose(t.log_q_rho, expected, rtol=1e-10)
    GK = model.metric_tensor(state, t.zK)
    expected_p = [multivariate_normal(np.zeros(2), GK[b]).logpdf(t.rhoK[b]) for b in range(5)]
    np.testing.assert_allclose(t.log_p_rho, expected_p, rtol=1e-10)
    jacobian = 0.5 * 2 * math.log(0.3)  # (d/2) log(beta0 / beta_K), beta_K = 1
    elbo = t.log_px + t.log_p_rho + t.log_pz - t.log_qz - t.log_q_rho + jacobian
    np.testing.assert_allclose(t.elbo, elbo, rtol=1e-12)


def test_initial_momentum_has_covariance_G(backend, rng):
    """γ = C⁻ᵀ ξ with G⁻¹ = C Cᵀ: the empirical covariance of many draws approaches G(z0)."""
    from rhvae.math.metric import sample_momentum

    B = _backend(backend)
    A = rng.standard_normal((3, 3))
    G_inv = A @ A.T + 0.5 * np.eye(3)
    m = local_metric(B, B.asarray(np.zeros((1, 3)), "float64"),
                     MetricState(B.asarray(np.zeros((1, 3)), "float64"), B.asarray(G_inv[None], "float64")),
                     MetricSpec(1.0, 1e-9))
    n = 200_000
    xi = rng.standard_normal((n, 3))
    inv_chol = B.xp.broadcast_to(m.inv_chol, (n, 3, 3))
    gamma = B.to_numpy(sample_momentum(B, m._replace(inv_chol=inv_chol), B.asarray(xi, "float64")))
    assert normwise_error(np.cov(gamma.T), np.linalg.inv(G_inv)) < 0.02


def test_adam_matches_an_independent_numpy_implementation(backend, rng):
    B = _backend(backend)
    opt = Adam(lr=0.1)
    p = {"a": {"w": rng.standard_normal((3, 2))}}
    params = {"a": {"w": B.asarray(p["a"]["w"], "float64")}}
    state = opt.init(B, params)
    m = v = np.zeros((3, 2))
    w = p["a"]["w"].copy()
    for t in range(1, 6):
        g = 2 * w + 1.0  # gradient of sum(w² + w)
        params, state = opt.update(B, {"a": {"w": B.asarray(g, "float64")}}, state, params)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w = w - 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(B.to_numpy(params["a"]["w"]), w, rtol=1e-12)
