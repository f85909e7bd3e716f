"""The generalized (implicit) leapfrog of Girolami & Calderhead, with tempering.

One step, with ``steps`` fixed-point iterations in the two implicit updates, each iteration
re-evaluating ``∇H`` at the current iterate (nothing frozen):

1. ``ρ' = ρ - (ε/2) ∇z H(z, ρ')``
2. ``z' = z + (ε/2) [∇ρ H(z, ρ') + ∇ρ H(z', ρ')]``
3. ``ρ'' = ρ' - (ε/2) ∇z H(z', ρ')``

Tempering after step ``k``: ``ρ ← √(β_{k-1} / β_k) ρ``.
"""

from __future__ import annotations

from rhvae.interfaces import Array, Backend, GradH
from rhvae.math.hamiltonian import Hamiltonian


def momentum_half_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                       eps: float, steps: int) -> Array:
    """Sub-step 1: ``steps`` iterations of ``ρ' ← ρ - (ε/2) ∇z H(z, ρ')`` from ``ρ' = ρ``."""
    return B.fori_loop(0, steps, lambda _, r: rho - 0.5 * eps * grad_h.grad_z(B, H, z, r), rho)


def position_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                  eps: float, steps: int) -> Array:
    """Sub-step 2: ``steps`` iterations of ``z' ← z + (ε/2)[∇ρH(z, ρ) + ∇ρH(z', ρ)]`` from ``z' = z``."""
    g0 = grad_h.grad_rho(B, H, z, rho)
    return B.fori_loop(0, steps, lambda _, zz: z + 0.5 * eps * (g0 + grad_h.grad_rho(B, H, zz, rho)), z)


def momentum_final_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                        eps: float) -> Array:
    """Sub-step 3 (explicit): ``ρ'' = ρ' - (ε/2) ∇z H(z', ρ')``."""
    return rho - 0.5 * eps * grad_h.grad_z(B, H, z, rho)


def leapfrog_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                  eps: float, steps: int) -> tuple[Array, Array]:
    """One generalized leapfrog step ``(z, ρ) -> (z', ρ'')``; volume-preserving and reversible."""
    rho_half = momentum_half_step(B, H, grad_h, z, rho, eps, steps)
    z_new = position_step(B, H, grad_h, z, rho_half, eps, steps)
    return z_new, momentum_final_step(B, H, grad_h, z_new, rho_half, eps)


def tempered_trajectory(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                        eps: float, steps: int, momentum_scales: Array) -> tuple[Array, Array]:
    """``K = len(momentum_scales)`` leapfrog steps, ``ρ ← s_k ρ`` after step ``k``.

    ``momentum_scales[k-1] = √(β_{k-1} / β_k)`` (see :func:`rhvae.math.elbo.momentum_scales`).
    """
    def body(k, state):
        zk, rk = leapfrog_step(B, H, grad_h, state[0], state[1], eps, steps)
        return zk, rk * momentum_scales[k]

    return B.fori_loop(0, momentum_scales.shape[0], body, (z, rho))
