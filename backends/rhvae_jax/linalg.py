"""The inverse Cholesky factor ``X = C⁻¹`` of SPD matrices ``a = C Cᵀ``, with a closed-form gradient.

Everything the metric needs comes from ``X``: ``a⁻¹ = Xᵀ X``, ``log det a = -2 Σ_j log X_jj``,
``Xᵀ ξ ~ N(0, a⁻¹)`` for ``ξ ~ N(0, I)`` and ``vᵀ a⁻¹ v = ‖X v‖²``.

Forward on CPU: one loop over the rows (below), not jaxlib's LAPACK kernels. Those split the batch
over XLA's intra-op thread pool and block until the pieces finish; when the thunk executor runs two
of them at once on a pool with that many threads (two, on a 2-core machine), every worker waits
on work queued behind itself and the step deadlocks (observed with jaxlib 0.10.2: both
``tf_XLAEigen`` threads parked in ``jax::ParallelBatchMap`` inside ``lapack_strsm_ffi``). The latent
matrices are small (``d × d``, ``d`` ≲ 64): ``O(d³)`` per matrix like LAPACK, parallel over the
batch inside XLA's own kernels. Elsewhere (cuSolver) the factorisation and a triangular solve.

Backward: ``ā = -sym(Xᵀ Φ(X̄ Xᵀ) X)`` (``Φ``: the lower triangle with the diagonal halved), from
``dX = -Φ(X da Xᵀ) X``; three small products instead of the reverse of a loop. At the reference
workload (batch 100, ``d = 16``) this took the JAX training step from 27.5 to 22-23 ms.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax


def _rows(a: jax.Array) -> jax.Array:
    """``X`` row by row, ``i = 0 … d-1`` (Cholesky–Banachiewicz with the inverse carried along).

    With ``X_<i`` the rows solved so far (the others zero), row ``i`` of ``C`` is
    ``c = X_<i a_i`` (``a_i``: row ``i`` of ``a``), its pivot ``C_ii = √(a_ii - ‖c‖²)``, and row
    ``i`` of ``X = C⁻¹`` is ``(e_i - cᵀ X_<i) / C_ii``. Reads the lower triangle of ``a`` only; a
    matrix that is not positive definite gives NaN, as LAPACK's ``potrf`` does.
    """
    idx = jnp.arange(a.shape[-1])

    def row(i, X):
        a_i = lax.dynamic_index_in_dim(a, i, axis=-2, keepdims=False)
        c = jnp.einsum("...kj,...j->...k", X, a_i)
        pivot = jnp.sqrt(lax.dynamic_index_in_dim(a_i, i, axis=-1, keepdims=False) - jnp.sum(c * c, axis=-1))
        e_i = (idx == i).astype(a.dtype)
        x_i = (e_i - jnp.einsum("...k,...kj->...j", c, X)) / pivot[..., None]
        return X + e_i[:, None] * x_i[..., None, :]

    return lax.fori_loop(0, a.shape[-1], row, jnp.zeros_like(a), unroll=4)


def _factor_and_solve(a: jax.Array) -> jax.Array:
    """``C⁻¹`` by the platform's Cholesky and one triangular solve (cuSolver on GPU)."""
    eye = jnp.broadcast_to(jnp.eye(a.shape[-1], dtype=a.dtype), a.shape)
    return lax.linalg.triangular_solve(jnp.linalg.cholesky(a), eye, left_side=True, lower=True)


def _with_closed_form_vjp(forward: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    @jax.custom_vjp
    def inverse_cholesky(a: jax.Array) -> jax.Array:
        return forward(a)

    def fwd(a):
        X = inverse_cholesky(a)  # the residual differentiates through this rule again
        return X, X

    def bwd(X, X_bar):
        d = X.shape[-1]
        phi = jnp.tril(jnp.einsum("...ik,...jk->...ij", X_bar, X)) * (1.0 - 0.5 * jnp.eye(d, dtype=X.dtype))
        a_bar = -jnp.einsum("...ki,...kl,...lj->...ij", X, phi, X)
        return (0.5 * (a_bar + jnp.swapaxes(a_bar, -1, -2)),)

    inverse_cholesky.defvjp(fwd, bwd)
    return inverse_cholesky


inverse_cholesky_cpu = _with_closed_form_vjp(_rows)
"""``X = C⁻¹`` for SPD ``a (..., d, d) = C Cᵀ``, lower triangular; the loop of :func:`_rows`."""

inverse_cholesky_accelerator = _with_closed_form_vjp(_factor_and_solve)
"""``X = C⁻¹`` from the platform's Cholesky (GPU/TPU), with the same closed-form gradient."""
