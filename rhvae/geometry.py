"""The latent geometry of a trained model under its frozen metric: ``G⁻¹``, ``G``, ``log det G``, the
decoder's pull-back metric, geodesics, and the Hamiltonian the flow integrates with its gradient
and one leapfrog step. Functions of a model and its state; :class:`rhvae.RHVAE` exposes each as a
method of the same name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from rhvae import validation
from rhvae.errors import InputError
from rhvae.interfaces import Array
from rhvae.math import geodesic as geodesic_math
from rhvae.math import pullback
from rhvae.math.hamiltonian import Hamiltonian, shaped
from rhvae.math.metric import MetricState, local_metric, metric_tensor as metric_from_factor
from rhvae.optim import Adam
from rhvae.state import Geodesic

if TYPE_CHECKING:
    from rhvae.model import RHVAE
    from rhvae.state import TrainState


def hamiltonian_of(model: RHVAE, params: dict, metric: MetricState, x: Array) -> Hamiltonian:
    """The Hamiltonian of the target rows ``x`` (backend arrays) under ``params`` and ``metric``,
    the object a ∇H method and an integrator take."""
    parts = model.components
    return Hamiltonian(model.backend, x, parts.decoder, params["decoder"], parts.prior, metric, model.metric_spec)


def _local(model: RHVAE, state: TrainState, z: Any):
    B, spec = model.backend, model.metric_spec
    fn = model.compile_once("local_metric", lambda: lambda m, zb: local_metric(B, zb, m, spec))
    return fn(model.frozen_metric(state), model.to_backend(model.latent_points(z)))


def G_inv(model: RHVAE, state: TrainState, z: Any) -> np.ndarray:
    """``G⁻¹(z) = a Σ_i M_i exp(-‖z - c_i‖²/T²) + λI`` under the frozen metric; ``(B, d, d)``."""
    return model.backend.to_numpy(_local(model, state, z).G_inv)


def metric_tensor(model: RHVAE, state: TrainState, z: Any) -> np.ndarray:
    """``G(z) = Xᵀ X`` from the inverse ``X`` of the Cholesky factor of ``G⁻¹(z)``; ``(B, d, d)``."""
    return model.backend.to_numpy(metric_from_factor(model.backend, _local(model, state, z)))


def log_det_metric(model: RHVAE, state: TrainState, z: Any) -> np.ndarray:
    """``log det G(z) = -log det G⁻¹(z)``; ``(B,)``."""
    return model.backend.to_numpy(_local(model, state, z).logdet_G)


def pullback_metric(model: RHVAE, state: TrainState, z: Any) -> np.ndarray:
    """The decoder's pull-back metric ``J(z)ᵀ J(z)``, ``J = ∂ mean(p(x|z)) / ∂z``; ``(B, d, d)``.

    The geometry the decoder induces, for comparison with the learned ``G`` (see
    :mod:`rhvae.math.pullback`).
    """
    B, dec, shape = model.backend, model.components.decoder, model.config.output_shape

    def build():
        def metric(p, zb):
            return pullback.pullback_metric(
                B, lambda zz: dec.likelihood.mean(B, shaped(dec(B, p, zz), shape)).reshape(zz.shape[0], -1), zb)
        return metric

    z = model.to_backend(model.latent_points(z))
    return B.to_numpy(model.compile_once("pullback", build)(state.params["decoder"], z))


def geodesic(model: RHVAE, state: TrainState, z0: Any, z1: Any, *, n_segments: int = 32, iterations: int = 500,
             learning_rate: float = 1e-2, progress: bool = True) -> Geodesic:
    """The geodesic from ``z0`` to ``z1`` (each ``(d,)``) under the frozen metric ``G``.

    A path of ``n_segments`` segments starts on the straight line; ``iterations`` Adam steps
    move its interior points to minimise ``n Σ_t Δ_tᵀ G(m_t) Δ_t`` (see
    :mod:`rhvae.math.geodesic`). Returns the path, its length and energy, the straight
    segment's length for comparison, and the decoded path.
    """
    n_segments = validation.check_count("n_segments", n_segments)
    iterations = validation.check_count("iterations", iterations, minimum=0)
    learning_rate = validation.check_positive("learning_rate", learning_rate)
    ends = model.latent_points(np.stack([model.latent_point(z0, "z0"), model.latent_point(z1, "z1")]), "z0, z1")
    metric, spec, B = model.frozen_metric(state), model.metric_spec, model.backend
    opt = Adam(lr=learning_rate)  # the same Adam as training, on the path's interior points

    def path_of(interior, a, b):
        return B.xp.concatenate([a[None], interior, b[None]], axis=0)

    def build():
        def step(interior, opt_state, a, b, m):
            e, g = B.value_and_grad(lambda p: geodesic_math.energy(B, path_of(p, a, b), m, spec))(interior)
            new, new_state = opt.update(B, {"z": g}, opt_state, {"z": interior})
            return new["z"], new_state, e
        return step

    t = np.linspace(0.0, 1.0, n_segments + 1)[:, None]
    straight = model.to_backend((1 - t) * ends[0] + t * ends[1])
    interior, a, b = straight[1:-1], straight[0], straight[-1]
    opt_state = opt.init(B, {"z": interior})
    step = model.compile_once(f"geodesic:{learning_rate!r}", build)
    for _ in tqdm(range(iterations), desc="geodesic", disable=not progress, leave=False):
        interior, opt_state, _ = step(interior, opt_state, a, b, metric)
    path = path_of(interior, a, b)
    measure = lambda f, p: float(B.to_numpy(f(B, p, metric, spec)))  # noqa: E731
    z = B.to_numpy(path)
    return Geodesic(z, measure(geodesic_math.length, path), measure(geodesic_math.energy, path),
                    measure(geodesic_math.length, straight), model.decode(state, z))


def _phase_point(model: RHVAE, x: Any, z: Any, rho: Any) -> tuple[Array, ...]:
    xo = model.checked(x, "x", target=True)
    zz, rr = model.latent_points(z, "z"), model.latent_points(rho, "rho")
    if not xo.shape[0] == zz.shape[0] == rr.shape[0]:
        raise InputError(f"x, z and rho must have the same number of rows; got "
                         f"{xo.shape[0]}, {zz.shape[0]}, {rr.shape[0]}")
    return model.to_backend(xo), model.to_backend(zz), model.to_backend(rr)


def hamiltonian(model: RHVAE, state: TrainState, x: Any, z: Any, rho: Any) -> np.ndarray:
    """``H(z, ρ) = -log p(x|z) - log p(z) - log N(ρ; 0, G(z))`` per sample, ``(B,)``."""
    fn = model.compile_once("hamiltonian", lambda: lambda p, m, xb, zb, rb: hamiltonian_of(model, p, m, xb)(zb, rb))
    return model.backend.to_numpy(fn(state.params, model.frozen_metric(state), *_phase_point(model, x, z, rho)))


def grad_hamiltonian(model: RHVAE, state: TrainState, x: Any, z: Any, rho: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(∂H/∂z, ∂H/∂ρ)`` by the model's ``grad_h`` method, each ``(B, d)``."""
    B, gh = model.backend, model.components.grad_h

    def build():
        def grads(p, m, xb, zb, rb):
            H = hamiltonian_of(model, p, m, xb)
            return gh.grad_z(B, H, zb, rb), gh.grad_rho(B, H, zb, rb)
        return grads

    gz, gr = model.compile_once("grad_hamiltonian", build)(state.params, model.frozen_metric(state),
                                                           *_phase_point(model, x, z, rho))
    return B.to_numpy(gz), B.to_numpy(gr)


def leapfrog(model: RHVAE, state: TrainState, x: Any, z: Any, rho: Any) -> tuple[np.ndarray, np.ndarray]:
    """One leapfrog step ``(z, ρ) -> (z', ρ'')`` of the configured integrator (no tempering), under
    the frozen metric."""
    B, parts, flow = model.backend, model.components, model.flow

    def step(p, m, xb, zb, rb):
        return parts.integrator.step(B, hamiltonian_of(model, p, m, xb), parts.grad_h, flow, zb, rb)

    z1, r1 = model.compile_once("leapfrog", lambda: step)(state.params, model.frozen_metric(state),
                                                          *_phase_point(model, x, z, rho))
    return B.to_numpy(z1), B.to_numpy(r1)
