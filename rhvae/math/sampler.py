"""The Riemannian sampler: Hamiltonian Monte Carlo on the learned metric's volume element.

Target ``p(z) ∝ √det G⁻¹(z)``, high where the metric is small, near the data (Chadebec &
Allassonnière's data-augmentation sampler; pythae's ``RHVAESampler``). With
``s_i = tr(G M_i) w_i``:

``log p(z) = ½ log det G⁻¹(z) + const``,
``∇ log p(z) = ½ a Σ_i tr(G M_i) ∇w_i = -(a/T²) [z Σ_i s_i - Σ_i s_i c_i]``.

One transition is ``n_lf`` Euclidean leapfrog steps of size ``ε`` on ``U = -log p`` with unit
momentum, then a Metropolis correction ``accept ⟺ log u < H(z, p) - H(z', p')``, per chain.

Tempering (Neal 2011, "MCMC using Hamiltonian dynamics" §5.7): with ``h = ⌊n_lf/2⌋``, the
momentum is multiplied by ``√α`` before each of the first ``h`` steps and divided by ``√α``
after each of the last ``h``, ``α = β0^(-1/h)``: the chain is heated to inverse temperature
``β0`` mid-trajectory, which carries it across low-volume gaps between clusters. The map stays
volume-preserving and reversible, so the Metropolis step keeps the target exact.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from rhvae.interfaces import Array, Backend
from rhvae.math.metric import MetricSpec, MetricState, local_metric, metric_tensor, weighted_gradient


class VolumeTarget(NamedTuple):
    """The frozen metric ``G⁻¹`` that defines the target, and its settings."""

    state: MetricState
    spec: MetricSpec


def log_volume_and_grad(B: Backend, target: VolumeTarget, z: Array) -> tuple[Array, Array]:
    """``(½ log det G⁻¹(z), its gradient)``, ``(B,)`` and ``(B, d)``."""
    metric = local_metric(B, z, target.state, target.spec)
    return -0.5 * metric.logdet_G, weighted_gradient(B, z, metric_tensor(B, metric), metric, target.state,
                                                     target.spec)


def tempering_factors(n_lf: int, beta0: float) -> tuple[np.ndarray, np.ndarray]:
    """Momentum factors before and after each leapfrog step: ``√α`` before steps ``< h``,
    ``1/√α`` after steps ``≥ n_lf - h``, 1 otherwise; ``h = ⌊n_lf/2⌋``, ``α = β0^(-1/h)``."""
    before, after = np.ones(n_lf), np.ones(n_lf)
    h = n_lf // 2
    if beta0 != 1.0:
        if h == 0:
            raise ValueError(f"tempering (beta0={beta0}) needs n_lf >= 2 leapfrog steps; got n_lf={n_lf}")
        root_alpha = beta0 ** (-0.5 / h)
        before[:h], after[n_lf - h:] = root_alpha, 1.0 / root_alpha
    return before, after


def trajectory(B: Backend, target: VolumeTarget, z: Array, momentum: Array, eps: float,
               before: Array, after: Array, start: tuple[Array, Array] | None = None) -> tuple[Array, Array, Array]:
    """``len(before)`` leapfrog steps on ``U = -log p``, momentum scaled by ``before[k]`` and ``after[k]``
    around step ``k``; reversible: from ``(z', -p')`` it returns to ``(z, -p)``. ``start``:
    :func:`log_volume_and_grad` at ``z`` when known. Returns ``(z', p', log p(z'))``."""
    log_p, grad = log_volume_and_grad(B, target, z) if start is None else start

    def step(k, carry):
        zz, p, g, _ = carry
        p = p * before[k] + 0.5 * eps * g
        zz = zz + eps * p
        lp, g = log_volume_and_grad(B, target, zz)
        return zz, (p + 0.5 * eps * g) * after[k], g, lp

    z1, p1, _, log_p1 = B.fori_loop(0, before.shape[0], step, (z, momentum, grad, log_p))
    return z1, p1, log_p1


def hmc_transition(B: Backend, target: VolumeTarget, z: Array, momentum: Array, log_u: Array,
                   eps: float, n_lf: int, beta0: float = 1.0) -> tuple[Array, Array]:
    """One HMC transition per chain: ``(z (B, d), momentum (B, d) ~ N(0, I), log_u (B,) = log U(0, 1))``
    to ``(z_next, accepted)`` with ``accepted`` 1.0 or 0.0 per chain; tempered when ``beta0 < 1``."""
    xp = B.xp
    before, after = (B.constant(f, z.dtype) for f in tempering_factors(n_lf, beta0))
    start = log_volume_and_grad(B, target, z)
    z1, p1, log_p1 = trajectory(B, target, z, momentum, eps, before, after, start)
    log_p0 = start[0]
    h0 = -log_p0 + 0.5 * xp.sum(momentum * momentum, axis=-1)
    h1 = -log_p1 + 0.5 * xp.sum(p1 * p1, axis=-1)
    accept = log_u < (h0 - h1)
    accepted = xp.where(accept, xp.ones_like(log_u), xp.zeros_like(log_u))
    return xp.where(accept[:, None], z1, z), accepted
