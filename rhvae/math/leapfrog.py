"""The generalized (implicit) leapfrog of Girolami & Calderhead, with tempering.

One step, with ``steps`` fixed-point iterations in the two implicit updates, each iteration
re-evaluating ``∇H`` at the current iterate (nothing frozen):

1. ``ρ' = ρ - (ε/2) ∇z H(z, ρ')``
2. ``z' = z + (ε/2) [∇ρ H(z, ρ') + ∇ρ H(z', ρ')]``
3. ``ρ'' = ρ' - (ε/2) ∇z H(z', ρ')``

Tempering after step ``k``: ``ρ ← √(β_{k-1} / β_k) ρ``.

The fixed-point iterations are guarded per sample (:func:`_guarded_iterations`): an iterate
whose increment ``‖x_{k+1} - x_k‖`` is larger than the previous one is a sign the map does not
contract there (it then diverges double-exponentially: ``∇zκ`` is quadratic in ``ρ``), so that
sample keeps its last iterate. A map that contracts in the Euclidean norm has shrinking
increments and is not touched; one that converges with growing increments is stopped early.
"""

from __future__ import annotations

from typing import Any

from rhvae.interfaces import Array, Backend, GradH, PreparedGradH
from rhvae.math.hamiltonian import Hamiltonian


class _PositionOnly:
    """A plain :class:`GradH` seen as a :class:`PreparedGradH` whose prepared position is ``z`` itself."""

    def __init__(self, grad_h: GradH) -> None:
        self.grad_h = grad_h

    def prepare(self, B: Backend, H: Hamiltonian, z: Array) -> Array:
        return z

    def grad_z_at(self, B: Backend, H: Hamiltonian, z: Array, rho: Array) -> Array:
        return self.grad_h.grad_z(B, H, z, rho)

    def grad_rho_at(self, B: Backend, H: Hamiltonian, z: Array, rho: Array) -> Array:
        return self.grad_h.grad_rho(B, H, z, rho)

    def grad_z(self, B: Backend, H: Hamiltonian, z: Array, rho: Array) -> Array:
        return self.grad_h.grad_z(B, H, z, rho)

    def grad_rho(self, B: Backend, H: Hamiltonian, z: Array, rho: Array) -> Array:
        return self.grad_h.grad_rho(B, H, z, rho)


def _prepared(grad_h: GradH) -> PreparedGradH:
    return grad_h if isinstance(grad_h, PreparedGradH) else _PositionOnly(grad_h)


def _unroll(grad_h: GradH) -> bool:
    """Unroll the leapfrog and fixed-point loops for a closed-form ``∇H`` (a small graph to
    compile); an autodiff or finite-difference ``∇H`` inside unrolled loops compiles for minutes."""
    return isinstance(grad_h, PreparedGradH) and not isinstance(grad_h, _PositionOnly)


def prepare(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array) -> Any:
    """What ``grad_h`` reuses at position ``z``: its ``prepare`` output, or ``z`` itself."""
    return _prepared(grad_h).prepare(B, H, z)


def _maybe_stop(B: Backend, g: Array, truncate: bool) -> Array:
    return B.stop_gradient(g) if truncate else g


def _guarded_iterations(B: Backend, update, x: Array, increment: Array, n: int, unroll: bool,
                        guard: bool = True) -> Array:
    """``n`` iterations ``x ← update(x)`` in which a sample (row) takes the new iterate only while
    its squared increment ``δ = ‖update(x) - x‖²`` does not exceed the last accepted one
    (``increment (B,)``, ``inf`` when there is none yet); a rejected row keeps ``x``, and so stays
    rejected. ``x (B, d)``. ``guard=False``: plain iterations."""
    xp = B.xp
    if not guard:
        return B.fori_loop(0, n, lambda _, x: update(x), x, unroll=unroll)

    def body(_, carry):
        x, last = carry
        new = update(x)
        step = xp.sum((new - x) ** 2, axis=-1)
        ok = step <= last
        return xp.where(ok[:, None], new, x), xp.where(ok, step, last)

    return B.fori_loop(0, n, body, (x, increment), unroll=unroll)[0]


def momentum_half_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                       eps: float, steps: int, at: Any = None, truncate: bool = False, guard: bool = True) -> Array:
    """Sub-step 1: ``steps`` guarded iterations of ``ρ' ← ρ - (ε/2) ∇z H(z, ρ')`` from ``ρ' = ρ``
    (:func:`_guarded_iterations`; the first is always taken).

    ``at`` is :func:`prepare` of ``z`` when the caller already has it. ``truncate`` treats the
    ``∇H`` values as constants for the parameter gradient, as pythae does in sub-steps 1 and 2.
    """
    gh = _prepared(grad_h)
    at = gh.prepare(B, H, z) if at is None else at
    unbounded = B.xp.full_like(rho[:, 0], float("inf"))
    return _guarded_iterations(B, lambda r: rho - 0.5 * eps * _maybe_stop(B, gh.grad_z_at(B, H, at, r), truncate),
                               rho, unbounded, steps, _unroll(grad_h), guard)


def position_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                  eps: float, steps: int, at: Any = None, truncate: bool = False, guard: bool = True) -> Array:
    """Sub-step 2: ``steps`` guarded iterations of ``z' ← z + (ε/2)[∇ρH(z, ρ) + ∇ρH(z', ρ)]`` from
    ``z' = z`` (:func:`_guarded_iterations`).

    The first iteration starts at ``z' = z``, where ``∇ρH`` is already known: it is ``z + ε ∇ρH(z, ρ)``.
    """
    gh = _prepared(grad_h)
    at = gh.prepare(B, H, z) if at is None else at
    g0 = _maybe_stop(B, gh.grad_rho_at(B, H, at, rho), truncate)
    first = eps * g0
    return _guarded_iterations(
        B, lambda zz: z + 0.5 * eps * (g0 + _maybe_stop(B, gh.grad_rho(B, H, zz, rho), truncate)),
        z + first, B.xp.sum(first * first, axis=-1), steps - 1, _unroll(grad_h), guard)


def momentum_final_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                        eps: float, at: Any = None) -> Array:
    """Sub-step 3 (explicit): ``ρ'' = ρ' - (ε/2) ∇z H(z', ρ')``."""
    gh = _prepared(grad_h)
    at = gh.prepare(B, H, z) if at is None else at
    return rho - 0.5 * eps * gh.grad_z_at(B, H, at, rho)


def _step(B: Backend, H: Hamiltonian, grad_h: PreparedGradH, z: Array, rho: Array, at: Any,
          eps: float, steps: int, truncate: bool = False, guard: bool = True) -> tuple[Array, Array, Any]:
    rho_half = momentum_half_step(B, H, grad_h, z, rho, eps, steps, at, truncate, guard)
    z_new = position_step(B, H, grad_h, z, rho_half, eps, steps, at, truncate, guard)
    at_new = grad_h.prepare(B, H, z_new)
    return z_new, momentum_final_step(B, H, grad_h, z_new, rho_half, eps, at_new), at_new


def leapfrog_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                  eps: float, steps: int, guard: bool = True) -> tuple[Array, Array]:
    """One generalized leapfrog step ``(z, ρ) -> (z', ρ'')``; volume-preserving and reversible
    when the fixed-point iterations converge."""
    gh = _prepared(grad_h)
    z_new, rho_new, _ = _step(B, H, gh, z, rho, gh.prepare(B, H, z), eps, steps, guard=guard)
    return z_new, rho_new


def tempered_trajectory(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                        eps: float, steps: int, momentum_scales: Array,
                        truncate: bool = False, at: Any = None, guard: bool = True) -> tuple[Array, Array, Any]:
    """``K = len(momentum_scales)`` leapfrog steps, ``ρ ← s_k ρ`` after step ``k``.

    ``momentum_scales[k-1] = √(β_{k-1} / β_k)`` (see :func:`rhvae.math.elbo.momentum_scales`).
    Each position is prepared once: step ``k+1`` starts from the terms step ``k`` ended with,
    so ``K`` steps prepare ``K + 1`` positions. ``truncate``: see :func:`momentum_half_step`.
    ``at`` is :func:`prepare` of ``z`` when the caller has it; the third output is that of the
    final position. ``guard``: see :func:`_guarded_iterations`.
    """
    gh = _prepared(grad_h)

    def body(k, state):
        zk, rk, at = _step(B, H, gh, *state, eps, steps, truncate, guard)
        return zk, rk * momentum_scales[k], at

    at = gh.prepare(B, H, z) if at is None else at
    return B.fori_loop(0, momentum_scales.shape[0], body, (z, rho, at), unroll=_unroll(grad_h))
