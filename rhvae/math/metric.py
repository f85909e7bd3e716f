"""The learned Riemannian metric of the RHVAE.

``G⁻¹(z) = a Σ_i M_i exp(-‖z - c_i‖² / T²) + λ I`` with ``M_i = L_i L_iᵀ``, ``a = 1`` ("sum")
or ``1/N`` ("mean"). Everything else comes from the inverse ``X = C⁻¹`` of the Cholesky factor
``C`` of ``G⁻¹ = C Cᵀ`` (``B.inverse_cholesky``): ``G = Xᵀ X``, ``log det G = 2 Σ_j log X_jj``,
``γ = Xᵀ ξ ~ N(0, G)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from rhvae.interfaces import Array, Backend

REDUCTIONS = ("sum", "mean")


class MetricSpec(NamedTuple):
    """The static settings of ``G⁻¹``: temperature ``T``, regulariser ``lam``, ``reduction``.

    ``chunk``: when set and smaller than the number of centroids ``N``, every sum over centroids
    runs over blocks of ``chunk`` centroids, so memory is ``O(B·chunk + N d²)`` instead of
    ``O(B N + N d²)``; the numbers are the same up to the summation order. ``tol``: weights
    ``w_i < tol`` count as 0 (:func:`centroid_weights` states the error this implies).
    """

    T: float
    lam: float
    reduction: str = "sum"
    chunk: int | None = None
    tol: float = 0.0
    M_max: float | None = None


class MetricState(NamedTuple):
    """Centroids ``c (N, d)`` and matrices ``M (N, d, d)`` that define ``G⁻¹``.

    ``M_packed (N, d(d+1)/2)``: the upper triangles of the ``M_i`` (:func:`pack_symmetric`),
    the operand of every contraction over centroids; :func:`metric_state` fills it once, and
    :func:`packed_matrices` packs on the fly when it is ``None``. ``log_sigma (N, d)``: the
    encoder's ``log σ(x_i)`` beside ``c_i = μ(x_i)``, which a frozen metric keeps for the
    sampler's ``"posterior"`` target (``None`` inside a training step, which does not need it).
    """

    centroids: Array
    M: Array
    M_packed: Array | None = None
    log_sigma: Array | None = None


class LocalMetric(NamedTuple):
    """The metric at a batch of points ``z (B, d)``.

    ``G_inv (B, d, d)``; ``inv_chol (B, d, d)`` lower, the inverse of the Cholesky factor of
    ``G_inv``, so ``G = inv_cholᵀ inv_chol``; ``logdet_G (B,)``;
    ``weights (B, N)`` the centroid weights ``w_i = exp(-‖z - c_i‖²/T²)``, or ``None`` when the
    sums over centroids run in chunks (they are recomputed block by block instead).
    """

    G_inv: Array
    inv_chol: Array
    logdet_G: Array
    weights: Array | None


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


def bounded_factor(B: Backend, diag: Array, lower: Array, M_max: float | None) -> Array:
    """``L̃ = L / √(1 + ‖L‖²_F / M_max)`` for ``L`` of :func:`lower_triangular`, so
    ``tr(L̃ L̃ᵀ) = q / (1 + q/M_max) < M_max`` (``q = ‖L‖²_F``): every eigenvalue of ``M = L̃ L̃ᵀ``
    lies below ``M_max``; ``L`` itself when ``M_max`` is ``None``.

    Computed as ``(L e^{-m}) / √(e^{-2m} + q e^{-2m} / M_max)`` with ``m = max(0, diag_j, log|lower_ij|)``
    (a constant for the gradient: the value does not depend on it), so no intermediate overflows
    however large the network's outputs grow (``exp(diag)`` alone overflows float32 at ``diag > 88``).
    """
    xp = B.xp
    if M_max is None:
        return lower_triangular(B, diag, lower)
    largest = xp.concatenate([diag, xp.log(xp.abs(lower)), xp.zeros_like(diag[..., :1])], axis=-1)
    m = B.stop_gradient(xp.amax(largest, axis=-1, keepdims=True))
    L = lower_triangular(B, diag - m, lower * xp.exp(-m))
    q = xp.sum(L * L, axis=(-2, -1))[..., None, None]
    return L / xp.sqrt(xp.exp(-2.0 * m)[..., None] + q / M_max)


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


def centroid_weights(B: Backend, z: Array, centroids: Array, T: float, tol: float = 0.0) -> Array:
    """``w_bi = exp(-‖z_b - c_i‖² / T²)``; ``(B, d), (N, d) -> (B, N)``.

    ``‖z - c‖² = ‖z‖² + ‖c‖² - 2 z·c`` is one ``(B, d) × (d, N)`` product instead of a
    ``(B, N, d)`` difference tensor (the exponent is clamped at 0 against round-off).

    ``tol > 0`` tapers the weights to ``w̃_i = max(w_i - tol, 0)``: centroids whose weight is
    below ``tol`` drop out, and ``G̃⁻¹`` stays continuous in ``z`` (a hard cut would jump by
    ``a tol M_i`` as a centroid crosses it). Each term moves by at most ``a tol ‖M_i‖₂ ≤ a tol tr M_i``,
    so ``‖G⁻¹ - G̃⁻¹‖₂ ≤ a tol Σ_i tr M_i``, and, both being ``⪰ λI``,
    ``‖G - G̃‖₂ ≤ ‖G⁻¹ - G̃⁻¹‖₂ / λ²``. The weights are still computed: it sparsifies the sum,
    it does not make it cheaper.
    """
    xp = B.xp
    w = xp.exp(xp.clip(centroid_log_weights(B, z, centroids, T), None, 0.0))
    return xp.clip(w - tol, 0.0, None) if tol > 0 else w


def centroid_log_weights(B: Backend, z: Array, centroids: Array, T: float) -> Array:
    """``log w_bi = -‖z_b - c_i‖² / T²`` as ``(2 z·c - ‖z‖² - ‖c‖²) / T²``; ``(B, d), (N, d) -> (B, N)``."""
    xp = B.xp
    inv_t2 = 1.0 / (T * T)
    return (xp.matmul(z * (2.0 * inv_t2), centroids.mT) - inv_t2 * xp.sum(z * z, axis=-1)[:, None]
            - inv_t2 * xp.sum(centroids * centroids, axis=-1)[None, :])


def reduction_scale(state: MetricState, reduction: str) -> float:
    """``a`` of ``G⁻¹ = a Σ_i M_i w_i + λI``: 1 for ``"sum"``, ``1/N`` for ``"mean"``."""
    return 1.0 / state.centroids.shape[0] if reduction == "mean" else 1.0


def _is_chunked(state: MetricState, spec: MetricSpec) -> bool:
    return spec.chunk is not None and spec.chunk < state.centroids.shape[0]


def sum_over_centroids(B: Backend, z: Array, state: MetricState, spec: MetricSpec, term, init):
    """``Σ_blocks term(w, c, M_packed)`` over blocks of ``spec.chunk`` centroids (``init``: the zero
    accumulators, a tuple of arrays); memory ``O(B·chunk)`` per block. The ``N // chunk`` full
    blocks are views of the state's arrays (a loop), the ``N mod chunk`` remaining centroids one
    more block: nothing is padded or copied. A backend with ``remat`` (JAX: ``jax.checkpoint``)
    recomputes each block in the backward pass instead of keeping it."""
    c, packed = state.centroids, packed_matrices(B, state)
    (N, d), P, chunk = c.shape, packed.shape[-1], spec.chunk
    full, rest = divmod(N, chunk)
    c_blocks = c[:full * chunk].reshape(full, chunk, d)
    packed_blocks = packed[:full * chunk].reshape(full, chunk, P)

    def block(acc, c_k, packed_k):
        return tuple(a + t for a, t in zip(acc, term(centroid_weights(B, z, c_k, spec.T, spec.tol), c_k, packed_k)))

    remat = B.remat
    body = remat(lambda k, acc: block(acc, c_blocks[k], packed_blocks[k]))
    acc = B.fori_loop(0, full, body, init)
    return remat(block)(acc, c[full * chunk:], packed[full * chunk:]) if rest else acc


def weighted_gradient(B: Backend, z: Array, A: Array, metric: LocalMetric, state: MetricState,
                      spec: MetricSpec) -> Array:
    """``½ a Σ_i ⟨A_b, M_i⟩ ∇z w_i = -(a/T²) [z Σ_i s_i - Σ_i s_i c_i]``, ``s_i = ⟨A_b, M_i⟩ w_i``,
    from ``∇z w_i = -2 (z - c_i) w_i / T²``, for symmetric ``A (B, d, d)``; ``(B, d)``.

    One ``(B, P) × (P, N)`` product (``P = d(d+1)/2``) with ``metric.weights``, or block by block.
    """
    xp = B.xp
    if metric.weights is not None:
        s = symmetric_inner(B, A, packed_matrices(B, state)) * metric.weights
        total, moment = xp.sum(s, axis=-1, keepdims=True), xp.matmul(s, state.centroids)
    else:
        def term(w, c, packed):
            s = symmetric_inner(B, A, packed) * w
            return xp.sum(s, axis=-1, keepdims=True), xp.matmul(s, c)

        total, moment = sum_over_centroids(B, z, state, spec, term, (xp.zeros_like(z[:, :1]), xp.zeros_like(z)))
    return -(reduction_scale(state, spec.reduction) / (spec.T * spec.T)) * (z * total - moment)


def inverse_metric(B: Backend, z: Array, state: MetricState, spec: MetricSpec) -> tuple[Array, Array | None]:
    """``G⁻¹(z) = a Σ_i M_i w_i(z) + λ I``; ``z (B, d) -> (G_inv (B, d, d), w (B, N) or None)``.

    The sum is a ``(B, N) × (N, d(d+1)/2)`` product over the packed upper triangles of the
    symmetric ``M_i``, then unpacked: memory ``O(B N + N d²)``, never ``(B, N, d, d)``; in
    blocks of ``spec.chunk`` centroids (``w`` is then ``None``), ``O(B·chunk + N d²)``.
    """
    xp = B.xp
    d = z.shape[-1]
    if _is_chunked(state, spec):
        w = None
        zeros = B.constant(np.zeros((z.shape[0], d * (d + 1) // 2)), z.dtype)
        (packed,) = sum_over_centroids(B, z, state, spec, lambda wc, c, pc: (xp.matmul(wc, pc),), (zeros,))
    else:
        w = centroid_weights(B, z, state.centroids, spec.T, spec.tol)
        packed = xp.matmul(w, packed_matrices(B, state))
    scale = reduction_scale(state, spec.reduction)
    return scale * unpack_symmetric(B, packed, d) + spec.lam * B.constant(np.eye(d), z.dtype), w


def local_metric(B: Backend, z: Array, state: MetricState, spec: MetricSpec) -> LocalMetric:
    """``G⁻¹(z)``, ``X = C⁻¹`` for its Cholesky factor ``C`` and ``log det G = 2 Σ_j log X_jj``."""
    G_inv, w = inverse_metric(B, z, state, spec)
    return factorize(B, G_inv, w)


def factorize(B: Backend, A: Array, weights: Array | None = None) -> LocalMetric:
    """``A (B, d, d)`` SPD with ``X = C⁻¹`` for its Cholesky factor ``C`` and ``log det A⁻¹ =
    2 Σ_j log X_jj``, as a :class:`LocalMetric` whose ``G_inv`` is ``A`` (``weights``: the
    centroid weights ``A`` was summed with)."""
    inv_chol = B.inverse_cholesky(A)
    return LocalMetric(A, inv_chol, 2.0 * B.xp.sum(B.xp.log(B.xp.linalg.diagonal(inv_chol)), axis=-1), weights)


def metric_tensor(B: Backend, metric: LocalMetric) -> Array:
    """``G = (G⁻¹)⁻¹ = Xᵀ X``; ``(B, d, d)``."""
    return B.xp.einsum("bki,bkj->bij", metric.inv_chol, metric.inv_chol)


def quadratic_form(B: Backend, A: Array, v: Array) -> Array:
    """``vᵀ A v`` per sample; ``(B, d, d), (B, d) -> (B,)``."""
    return B.xp.einsum("bi,bij,bj->b", v, A, v)


def sample_momentum(B: Backend, metric: LocalMetric, xi: Array) -> Array:
    """``γ = Xᵀ ξ ~ N(0, G(z))`` for ``ξ ~ N(0, I)``: ``Cov γ = Xᵀ X = G``; ``(B, d)``."""
    return B.xp.einsum("bki,bk->bi", metric.inv_chol, xi)


def momentum_log_prob(B: Backend, metric: LocalMetric, rho: Array) -> Array:
    """``log N(ρ; 0, G(z)) = -½ (d log 2π + log det G) - ½ ρᵀ G⁻¹ ρ``; ``(B,)``."""
    d = rho.shape[-1]
    return -0.5 * (d * math.log(2 * math.pi) + metric.logdet_G) - 0.5 * quadratic_form(B, metric.G_inv, rho)
