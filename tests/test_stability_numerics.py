"""The pieces that keep training stable (docs/stability.md), each against a closed form or an
independent computation: the bound on the ``M_i``, the fixed-point guard, the weight of the
frozen metric in batch mode, and importance weights that ignore the ELBO prefactors."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from helpers import small_model
from rhvae.math import elbo as elbo_math
from rhvae.math.leapfrog import _guarded_iterations, position_step
from rhvae.math.metric import bounded_factor, local_metric, lower_triangular
from rhvae.state import Noise


def _backend(spec):
    name, device = spec
    return rhvae.get_registry().create("backend", name, device=device)


def test_bounded_factor_has_the_stated_trace_and_every_eigenvalue_below_the_bound(backend, rng):
    B = _backend(backend)
    n, d, M_max = 50, 3, 7.0
    diag, lower = 2.0 * rng.standard_normal((n, d)), 3.0 * rng.standard_normal((n, d * (d - 1) // 2))
    L = B.to_numpy(lower_triangular(B, B.asarray(diag, "float64"), B.asarray(lower, "float64")))
    bounded = B.to_numpy(bounded_factor(B, B.asarray(diag, "float64"), B.asarray(lower, "float64"), M_max))
    q = np.sum(L * L, axis=(1, 2))
    np.testing.assert_allclose(bounded, L / np.sqrt(1 + q / M_max)[:, None, None], rtol=1e-13)
    M = bounded @ bounded.transpose(0, 2, 1)
    np.testing.assert_allclose(np.trace(M, axis1=1, axis2=2), q / (1 + q / M_max), rtol=1e-13)
    assert np.linalg.eigvalsh(M).max() < M_max
    unbounded = bounded_factor(B, B.asarray(diag, "float64"), B.asarray(lower, "float64"), None)
    np.testing.assert_array_equal(B.to_numpy(unbounded), L)


def test_bounded_factor_stays_finite_where_exp_of_the_network_output_overflows(backend):
    """Adam keeps pushing a saturated output up; float32 ``exp`` overflows above 88."""
    B = _backend(backend)
    diag = B.asarray(np.array([[300.0, 1.0], [-300.0, -250.0], [95.0, 95.0], [1.0, 1.0]]), "float32")
    lower = B.asarray(np.array([[1e4], [2.0], [-1e3], [3e25]]), "float32")  # (3e25)² overflows float32
    M_max = 10.0
    L = B.to_numpy(bounded_factor(B, diag, lower, M_max)).astype(np.float64)
    assert np.all(np.isfinite(L))
    trace = np.sum(L * L, axis=(1, 2))
    np.testing.assert_allclose(trace[[0, 2, 3]], M_max, rtol=1e-5)  # saturated
    np.testing.assert_allclose(L[3, 1, 0], np.sqrt(M_max), rtol=1e-6)
    np.testing.assert_allclose(L[1], [[0, 0], [2.0 / np.sqrt(1 + 4.0 / M_max), 0]], atol=1e-6)


def test_bounded_factor_gradient_matches_central_differences(backend, rng):
    B = _backend(backend)
    d, M_max = 3, 4.0
    diag0, lower0 = rng.standard_normal((2, d)), rng.standard_normal((2, 3))
    weights = rng.standard_normal((2, d, d))

    def f(v):
        L = bounded_factor(B, v[:, :d], v[:, d:], M_max)
        return B.xp.sum(B.asarray(weights, "float64") * B.xp.matmul(L, L.mT))

    v = np.concatenate([diag0, lower0], axis=1)
    grad = B.to_numpy(B.grad(f)(B.asarray(v, "float64")))
    h, numeric = 1e-6, np.zeros_like(v)
    for idx in np.ndindex(v.shape):
        e = np.zeros_like(v)
        e[idx] = h
        numeric[idx] = (float(f(B.asarray(v + e, "float64"))) - float(f(B.asarray(v - e, "float64")))) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_the_guard_stops_a_diverging_row_and_leaves_a_contracting_one_alone(backend):
    """``x ← ρ - a x²`` per row: contracts for ``a = 0.1`` (fixed point ≈ 0.916), diverges
    double-exponentially for ``a = 3`` (no real fixed point near ``ρ``)."""
    B = _backend(backend)
    rho = np.array([[1.0], [1.0]])
    a = B.asarray(np.array([[0.1], [3.0]]), "float64")
    update = lambda x: B.asarray(rho, "float64") - a * x * x  # noqa: E731
    inf = B.xp.full_like(a[:, 0], float("inf"))
    guarded = B.to_numpy(_guarded_iterations(B, update, B.asarray(rho, "float64"), inf, 6, False))
    plain = B.to_numpy(_guarded_iterations(B, update, B.asarray(rho, "float64"), inf, 6, False, guard=False))
    x = 1.0
    for _ in range(6):
        x = 1.0 - 0.1 * x * x
    np.testing.assert_allclose(guarded[0], x, rtol=1e-15)
    np.testing.assert_array_equal(guarded[0], plain[0])
    # row 2: 1 -> -2 (Δ² = 9) -> -11 (Δ² = 81 > 9: rejected), so it keeps -2; plain iterations
    # run away double-exponentially: -362, -393131, -4.6e11, -6.4e23
    np.testing.assert_array_equal(guarded[1], [-2.0])
    assert abs(plain[1][0]) > 1e23


class _QuadraticVelocity:
    """A stand-in ∇H whose ``∂H/∂ρ = a z²`` (per row): the position iteration
    ``z' ← z + (ε/2)(a z² + a z'²)`` converges for small ``a`` and runs away for large ``a``."""

    closed_form = False

    def __init__(self, a):
        self.a = a

    def prepare(self, B, H, z):
        return z

    def grad_rho_at(self, B, H, z, rho):
        return self.a * z * z

    grad_rho = grad_rho_at

    def grad_z_at(self, B, H, z, rho):
        return B.xp.zeros_like(z)

    grad_z = grad_z_at


def test_the_guard_stops_a_runaway_position_iteration(backend):
    B = _backend(backend)
    a = B.asarray(np.array([[0.5], [400.0]]), "float64")
    z = B.asarray(np.ones((2, 1)), "float64")
    eps, steps = 0.01, 6
    gh = _QuadraticVelocity(a)
    guarded = B.to_numpy(position_step(B, None, gh, z, z, eps, steps))
    plain = B.to_numpy(position_step(B, None, gh, z, z, eps, steps, guard=False))
    ref, first = [], None
    for a_row in (0.5, 400.0):
        x, last, kept = 1.0 + eps * a_row, (eps * a_row) ** 2, None
        first = x if first is None else first
        for _ in range(steps - 1):
            new = 1.0 + 0.5 * eps * (a_row + a_row * x * x)
            if kept is None and (new - x) ** 2 > last:
                kept = x
            last, x = (new - x) ** 2, new
        ref.append((x, kept))
    np.testing.assert_allclose(guarded[0, 0], ref[0][0], rtol=1e-14)  # converging row: untouched
    np.testing.assert_array_equal(guarded[0], plain[0])
    assert ref[1][1] is not None and abs(plain[1, 0]) > 1e6  # the other runs away ...
    np.testing.assert_allclose(guarded[1, 0], ref[1][1], rtol=1e-14)  # ... and the guard keeps its last good iterate


def test_the_guard_changes_nothing_on_a_converging_flow(backend, rng):
    model = small_model(*backend, input_dim=6, latent_dim=2, dtype="float64")
    plain = small_model(*backend, input_dim=6, latent_dim=2, dtype="float64", guard_fixed_point=False)
    x = rng.uniform(0.1, 0.9, size=(5, 6))
    state = model.init(seed=0, centroids=x)
    noise = Noise(rng.standard_normal((5, 2)), rng.standard_normal((5, 2)))
    a, b = model.elbo_terms(state, x, noise=noise), plain.elbo_terms(state, x, noise=noise)
    np.testing.assert_array_equal(a.zK, b.zK)
    np.testing.assert_array_equal(a.elbo, b.elbo)


def test_the_frozen_batch_metric_is_the_mean_of_the_training_batch_metrics(backend, rng):
    """``(n_b/N) Σ_{i≤N} M_i w_i + λI`` equals the average over a partition into batches of size
    ``n_b`` of the batch metrics ``Σ_{i∈b} M_i w_i + λI`` that training uses."""
    model = small_model(*backend, input_dim=6, latent_dim=2, dtype="float64")
    x = rng.uniform(0.1, 0.9, size=(12, 6))
    state = model.init(seed=0).replace(batch_centroids=4)
    frozen = model.refresh_metric(state, x)
    z = rng.standard_normal((7, 2))
    B, parts, spec = model.backend, model.components, model.metric_spec
    per_batch = []
    for b in range(3):
        batch = elbo_math.metric_from_data(B, parts, state.params, model.to_backend(x[4 * b:4 * b + 4]), M_max=spec.M_max)
        per_batch.append(B.to_numpy(local_metric(B, model.to_backend(z), batch, spec).G_inv))
    np.testing.assert_allclose(model.G_inv(frozen, z), np.mean(per_batch, axis=0), rtol=1e-12)
    unweighted = model.refresh_metric(state, x, weight=1.0)
    lam = np.eye(2) * model.config.lam
    np.testing.assert_allclose(model.G_inv(unweighted, z) - lam, 3 * (model.G_inv(frozen, z) - lam), rtol=1e-12)
    legacy = small_model(*backend, input_dim=6, latent_dim=2, dtype="float64", reweight_frozen_metric=False)
    np.testing.assert_allclose(legacy.G_inv(legacy.refresh_metric(state, x), z), model.G_inv(unweighted, z), rtol=1e-12)


def test_fit_records_the_batch_size_that_weighs_the_frozen_metric(rng):
    model = small_model(input_dim=6, latent_dim=2)
    x = rng.uniform(0.1, 0.9, size=(30, 6))
    state, _ = model.fit(model.init(seed=0), x, epochs=1, batch_size=10, progress=False)
    assert state.batch_centroids == 10
    np.testing.assert_allclose(model.backend.to_numpy(state.metric.M),
                               model.backend.to_numpy(model.refresh_metric(state, x, weight=1 / 3).metric.M))
    fixed, _ = model.fit(model.init(seed=0, centroids=x[:5]), x, epochs=1, batch_size=10, progress=False)
    assert fixed.batch_centroids is None
    whole, _ = model.fit(model.init(seed=0), x, epochs=1, batch_size=50, progress=False)
    assert whole.batch_centroids == 30  # a batch larger than the data holds all of it: weight 1
    stepped, _ = model.step(model.init(seed=0), x[:7])
    assert stepped.batch_centroids == 7


def test_the_batch_size_behind_the_frozen_metric_survives_a_checkpoint(tmp_path, rng):
    model = small_model(input_dim=6, latent_dim=2)
    x = rng.uniform(0.1, 0.9, size=(30, 6))
    state, _ = model.fit(model.init(seed=0), x, epochs=1, batch_size=10, progress=False)
    model.save(state, tmp_path / "ckpt")
    loaded = model.load(tmp_path / "ckpt")
    assert loaded.batch_centroids == 10
    np.testing.assert_allclose(model.backend.to_numpy(model.refresh_metric(loaded, x).metric.M),
                               model.backend.to_numpy(state.metric.M), rtol=1e-6)


def test_nll_weights_ignore_the_training_prefactors(backend, rng):
    """Prefactors change the training objective, not the density ratio the NLL estimates."""
    weighted = small_model(*backend, input_dim=6, latent_dim=2, dtype="float64", logq_prefactor=(1.0, 0.0, 0.0),
                           logp_prefactor=(1.0, 0.5, 1.0))
    plain = small_model(*backend, input_dim=6, latent_dim=2, dtype="float64")
    x = rng.uniform(0.1, 0.9, size=(4, 6))
    state = plain.init(seed=0, centroids=x)
    np.testing.assert_allclose(weighted.nll(state, x, n_samples=8, progress=False),
                               plain.nll(state, x, n_samples=8, progress=False), rtol=1e-12)
    terms = weighted.elbo_terms(state, x)
    assert not np.allclose(terms.elbo, plain.elbo_terms(state, x).elbo)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), "big"])
def test_m_max_must_be_a_positive_number_or_none(bad):
    with pytest.raises((ValueError, TypeError), match="M_max"):
        rhvae.RHVAE("torch", input_dim=4, latent_dim=2, M_max=bad)


@pytest.mark.parametrize("field", ["guard_fixed_point", "reweight_frozen_metric"])
def test_the_stability_switches_must_be_bools(field):
    with pytest.raises(TypeError, match=field):
        rhvae.RHVAE("torch", input_dim=4, latent_dim=2, **{field: 1})
