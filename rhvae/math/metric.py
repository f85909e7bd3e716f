"""The learned Riemannian metric of the RHVAE.

``G⁻¹(z) = a Σ_i M_i exp(-‖z - c_i‖² / T²) + λ I`` with ``M_i = L_i L_iᵀ``, ``a = 1`` ("sum")
or ``1/N`` ("mean"). ``G`` and ``log det G`` come from the Cholesky factor ``C`` of ``G⁻¹``
(``G⁻¹ = C Cᵀ``); no explicit inverse is formed in the hot path.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from rhvae.interfaces import Array, Backend

REDUCTIONS = ("sum", "mean")


class MetricState(NamedTuple):
    """Centroids ``c (N, d)`` and matrices ``M (N, d, d)`` that define ``G⁻¹``.

    ``M_packed (N, d(d+1)/2)``: the upper triangles of the ``M_i`` (:func:`pack_symmetric`),
    the operand of every contraction over centroids; :func:`metric_state` fills it once, and
    :func:`packed_matrices` packs on the fly when it is ``None``.
    """

    centroids: Array
    M: Array
    M_packed: Array | None = None


class LocalMetric(NamedTuple):
    """The metric at a batch of points ``z (B, d)``.

    ``G_inv (B, d, d)``; ``chol (B, d, d)`` lower, ``G_inv = chol cholᵀ``; ``logdet_G (B,)``;
    ``weights (B, N)`` the centroid weights ``w_i = exp(-‖z - c_i‖²/T²)``.
    """

    G_inv: Array
    chol: Array
    logdet_G: Array
    weights: Array


def _tril_gather_index(d: int) -> np.ndarray:
    """Index map ``(d, d)`` into ``concat([diag (d), lower (d(d-1)/2), 0])``.

    The strict lower triangle is filled in row-major order, ``lower[i(i-1)/2 + j]`` at ``(i, j)``.
    """
    n_lower = d * (d - 1) // 2
    idx = np.full((d, d), d + n_lower, dtype=np.int32)
    idx[np.diag_indices(d)] = np.arange(d)
    rows, cols = np.tril_indices(d, -1)
    idx[rows, cols] = d + np.arange(n_lower)
    return idx


def lower_triangular(B: Backend, diag: Array, lower: Array) -> Array:
    """``L`` with ``exp(diag)`` on the diagonal and ``lower`` below it; ``(n, d), (n, d(d-1)/2) -> (n, d, d)``.

    Built by a gather (no in-place writes), so it differentiates identically on both backends.
    """
    xp = B.xp
    d = diag.shape[-1]
    zero = xp.zeros_like(diag[..., :1])
    values = xp.concatenate([xp.exp(diag), lower, zero], axis=-1)
    return values[..., B.constant(_tril_gather_index(d), None)]


def _packed_index(d: int) -> np.ndarray:
    """Flat indices ``i d + j`` of the upper triangle ``i <= j`` of a ``d × d`` matrix, row-major."""
    rows, cols = np.triu_indices(d)
    return (rows * d + cols).astype(np.int32)


def _unpack_index(d: int) -> np.ndarray:
    """``(d, d)`` map from a symmetric matrix's entries to their position in the packed vector."""
    position = np.empty((d, d), dtype=np.int32)
    rows, cols = np.triu_indices(d)
    position[rows, cols] = position[cols, rows] = np.arange(rows.size)
    return position


def pack_symmetric(B: Backend, A: Array) -> Array:
    """The ``d(d+1)/2`` upper-triangle entries of symmetric ``A (..., d, d)``."""
    d = A.shape[-1]
    return A.reshape(A.shape[:-2] + (d * d,))[..., B.constant(_packed_index(d), None)]


def unpack_symmetric(B: Backend, packed: Array, d: int) -> Array:
    """Inverse of :func:`pack_symmetric`: ``(..., d(d+1)/2) -> (..., d, d)``."""
    return packed[..., B.constant(_unpack_index(d), None)]


def symmetric_inner(B: Backend, A: Array, packed_M: Array) -> Array:
    """``⟨A_b, M_n⟩ = Σ_ij A_b,ij M_n,ij`` for symmetric ``A (B, d, d)`` and packed ``M (N, P)``: ``(B, N)``.

    Off-diagonal pairs count twice, so one ``(B, P) × (P, N)`` product does it with
    ``P = d(d+1)/2`` instead of ``d²`` columns.
    """
    d = A.shape[-1]
    rows, cols = np.triu_indices(d)
    twice = B.constant(np.where(rows == cols, 1.0, 2.0), A.dtype)
    return B.xp.matmul(pack_symmetric(B, A) * twice, packed_M.mT)


def metric_state(B: Backend, centroids: Array, L: Array) -> MetricState:
    """``MetricState(c, M = L Lᵀ, packed M)``; ``c (N, d)``, ``L (N, d, d)``."""
    M = B.xp.matmul(L, L.mT)
    return MetricState(centroids, M, pack_symmetric(B, M))


def packed_matrices(B: Backend, state: MetricState) -> Array:
    """``state.M_packed``, or the packed ``M`` computed now when the state has none."""
    return state.M_packed if state.M_packed is not None else pack_symmetric(B, state.M)


def centroid_weights(B: Backend, z: Array, centroids: Array, T: float) -> Array:
    """``w_bi = exp(-‖z_b - c_i‖² / T²)``; ``(B, d), (N, d) -> (B, N)``.

    ``‖z - c‖² = ‖z‖² + ‖c‖² - 2 z·c`` is one ``(B, d) × (d, N)`` product instead of a
    ``(B, N, d)`` difference tensor (the exponent is clamped at 0 against round-off).
    """
    xp = B.xp
    inv_t2 = 1.0 / (T * T)
    log_w = (xp.matmul(z * (2.0 * inv_t2), centroids.mT) - inv_t2 * xp.sum(z * z, axis=-1)[:, None]
             - inv_t2 * xp.sum(centroids * centroids, axis=-1)[None, :])
    return xp.exp(xp.clip(log_w, None, 0.0))


def reduction_scale(state: MetricState, reduction: str) -> float:
    """``a`` of ``G⁻¹ = a Σ_i M_i w_i + λI``: 1 for ``"sum"``, ``1/N`` for ``"mean"``."""
    return 1.0 / state.centroids.shape[0] if reduction == "mean" else 1.0


def trace_G_M(B: Backend, metric: LocalMetric, state: MetricState) -> Array:
    """``tr(G(z_b) M_i) = ⟨G(z_b), M_i⟩`` for every point and centroid, ``(B, N)``."""
    return symmetric_inner(B, metric_tensor(B, metric), packed_matrices(B, state))


def weight_gradient_sum(B: Backend, z: Array, s: Array, state: MetricState, T: float,
                        reduction: str = "sum") -> Array:
    """``½ a Σ_i u_i ∇z w_i = -(a/T²) [z Σ_i s_i - Σ_i s_i c_i]`` for ``s_i = u_i w_i (B, N)``,
    from ``∇z w_i = -2 (z - c_i) w_i / T²``; ``(B, d)``."""
    xp = B.xp
    return -(reduction_scale(state, reduction) / (T * T)) * (
        z * xp.sum(s, axis=-1, keepdims=True) - xp.matmul(s, state.centroids))


def inverse_metric(B: Backend, z: Array, state: MetricState, T: float, lam: float,
                   reduction: str = "sum") -> tuple[Array, Array]:
    """``G⁻¹(z) = a Σ_i M_i w_i(z) + λ I``; ``z (B, d) -> (G_inv (B, d, d), w (B, N))``.

    The sum is one ``(B, N) × (N, d(d+1)/2)`` product over the packed upper triangles of the
    symmetric ``M_i``, then unpacked: memory ``O(B N + N d²)``, never ``(B, N, d, d)``.
    """
    w = centroid_weights(B, z, state.centroids, T)
    scale = reduction_scale(state, reduction)
    d = z.shape[-1]
    packed = B.xp.matmul(w, packed_matrices(B, state))
    return scale * unpack_symmetric(B, packed, d) + lam * B.constant(np.eye(d), z.dtype), w


def local_metric(B: Backend, z: Array, state: MetricState, T: float, lam: float,
                 reduction: str = "sum") -> LocalMetric:
    """``G⁻¹(z)``, its Cholesky factor and ``log det G = -2 Σ_j log C_jj``."""
    G_inv, w = inverse_metric(B, z, state, T, lam, reduction)
    chol = B.cholesky(G_inv)
    logdet_G = -2.0 * B.xp.sum(B.xp.log(B.xp.linalg.diagonal(chol)), axis=-1)
    return LocalMetric(G_inv, chol, logdet_G, w)


def metric_tensor(B: Backend, metric: LocalMetric) -> Array:
    """``G = (G⁻¹)⁻¹ = C⁻ᵀ C⁻¹`` from the Cholesky factor; ``(B, d, d)``."""
    xp = B.xp
    eye = xp.broadcast_to(B.constant(np.eye(metric.chol.shape[-1]), metric.chol.dtype), metric.chol.shape)
    c_inv = B.solve_triangular(metric.chol, eye, lower=True)
    return xp.matmul(c_inv.mT, c_inv)


def quadratic_form(B: Backend, A: Array, v: Array) -> Array:
    """``vᵀ A v`` per sample; ``(B, d, d), (B, d) -> (B,)``."""
    return B.xp.einsum("bi,bij,bj->b", v, A, v)


def sample_momentum(B: Backend, metric: LocalMetric, xi: Array) -> Array:
    """``γ = C⁻ᵀ ξ ~ N(0, G(z))`` for ``ξ ~ N(0, I)``: ``Cov γ = C⁻ᵀC⁻¹ = G``; ``(B, d)``."""
    return B.solve_triangular(metric.chol.mT, xi[..., None], lower=False)[..., 0]


def momentum_log_prob(B: Backend, metric: LocalMetric, rho: Array) -> Array:
    """``log N(ρ; 0, G(z)) = -½ (d log 2π + log det G) - ½ ρᵀ G⁻¹ ρ``; ``(B,)``."""
    d = rho.shape[-1]
    return -0.5 * (d * math.log(2 * math.pi) + metric.logdet_G) - 0.5 * quadratic_form(B, metric.G_inv, rho)
