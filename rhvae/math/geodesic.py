"""Geodesics of the learned metric, as discretised paths of minimal energy.

A path ``z_0, …, z_T`` with fixed ends, segments ``Δ_t = z_{t+1} - z_t`` and midpoints
``m_t = (z_t + z_{t+1}) / 2``, has

``energy = T Σ_t Δ_tᵀ G(m_t) Δ_t`` (≈ ``∫₀¹ żᵀ G(z) ż dt``) and ``length = Σ_t √(Δ_tᵀ G(m_t) Δ_t)``,

with ``Δᵀ G Δ = ‖X Δ‖²`` for the inverse ``X = C⁻¹`` of the Cholesky factor ``C`` of ``G⁻¹``. The
minimiser of the energy is the constant-speed geodesic; the interior points are optimised with
Adam from the straight line.
"""

from __future__ import annotations

from rhvae.interfaces import Array, Backend
from rhvae.math.metric import MetricSpec, MetricState, local_metric


def segment_norms_sq(B: Backend, path: Array, state: MetricState, spec: MetricSpec) -> Array:
    """``Δ_tᵀ G(m_t) Δ_t`` for each of the ``n`` segments of ``path (n + 1, d)``: ``(n,)``."""
    delta = path[1:] - path[:-1]
    metric = local_metric(B, 0.5 * (path[1:] + path[:-1]), state, spec)
    u = B.xp.einsum("tij,tj->ti", metric.inv_chol, delta)
    return B.xp.sum(u * u, axis=-1)


def energy(B: Backend, path: Array, state: MetricState, spec: MetricSpec) -> Array:
    """``n Σ_t Δ_tᵀ G(m_t) Δ_t`` for a path of ``n`` segments (time step ``1/n``)."""
    sq = segment_norms_sq(B, path, state, spec)
    return sq.shape[0] * B.xp.sum(sq)


def length(B: Backend, path: Array, state: MetricState, spec: MetricSpec) -> Array:
    """``Σ_t √(Δ_tᵀ G(m_t) Δ_t)``."""
    return B.xp.sum(B.xp.sqrt(segment_norms_sq(B, path, state, spec)))
