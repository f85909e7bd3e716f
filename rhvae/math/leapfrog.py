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

import math
from typing import TYPE_CHECKING

import numpy as np

from rhvae.interfaces import Array, Backend, FlowEnds, GradH, PositionTerms
from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import momentum_log_prob, sample_momentum

if TYPE_CHECKING:
    from rhvae.math.elbo import Flow


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
                       eps: float, steps: int, at: PositionTerms | None = None, truncate: bool = False,
                       guard: bool = True) -> Array:
    """Sub-step 1: ``steps`` guarded iterations of ``ρ' ← ρ - (ε/2) ∇z H(z, ρ')`` from ``ρ' = ρ``
    (:func:`_guarded_iterations`; the first is always taken).

    ``at`` is :func:`prepare` of ``z`` when the caller already has it. ``truncate`` treats the
    ``∇H`` values as constants for the parameter gradient, as pythae does in sub-steps 1 and 2.
    """
    at = grad_h.prepare(B, H, z) if at is None else at
    unbounded = B.xp.full_like(rho[:, 0], float("inf"))
    return _guarded_iterations(B, lambda r: rho - 0.5 * eps * _maybe_stop(B, grad_h.grad_z_at(B, H, at, r), truncate),
                               rho, unbounded, steps, grad_h.closed_form, guard)


def position_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                  eps: float, steps: int, at: PositionTerms | None = None, truncate: bool = False,
                  guard: bool = True) -> Array:
    """Sub-step 2: ``steps`` guarded iterations of ``z' ← z + (ε/2)[∇ρH(z, ρ) + ∇ρH(z', ρ)]`` from
    ``z' = z`` (:func:`_guarded_iterations`).

    The first iteration starts at ``z' = z``, where ``∇ρH`` is already known: it is ``z + ε ∇ρH(z, ρ)``.
    """
    at = grad_h.prepare(B, H, z) if at is None else at
    g0 = _maybe_stop(B, grad_h.grad_rho_at(B, H, at, rho), truncate)
    first = eps * g0
    return _guarded_iterations(
        B, lambda zz: z + 0.5 * eps * (g0 + _maybe_stop(B, grad_h.grad_rho(B, H, zz, rho), truncate)),
        z + first, B.xp.sum(first * first, axis=-1), steps - 1, grad_h.closed_form, guard)


def momentum_final_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                        eps: float, at: PositionTerms | None = None) -> Array:
    """Sub-step 3 (explicit): ``ρ'' = ρ' - (ε/2) ∇z H(z', ρ')``."""
    at = grad_h.prepare(B, H, z) if at is None else at
    return rho - 0.5 * eps * grad_h.grad_z_at(B, H, at, rho)


def _step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array, at: PositionTerms,
          eps: float, steps: int, truncate: bool = False, guard: bool = True) -> tuple[Array, Array, PositionTerms]:
    rho_half = momentum_half_step(B, H, grad_h, z, rho, eps, steps, at, truncate, guard)
    z_new = position_step(B, H, grad_h, z, rho_half, eps, steps, at, truncate, guard)
    at_new = grad_h.prepare(B, H, z_new)
    return z_new, momentum_final_step(B, H, grad_h, z_new, rho_half, eps, at_new), at_new


def leapfrog_step(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                  eps: float, steps: int, guard: bool = True) -> tuple[Array, Array]:
    """One generalized leapfrog step ``(z, ρ) -> (z', ρ'')``; volume-preserving and reversible
    when the fixed-point iterations converge."""
    z_new, rho_new, _ = _step(B, H, grad_h, z, rho, grad_h.prepare(B, H, z), eps, steps, guard=guard)
    return z_new, rho_new


def tempered_trajectory(B: Backend, H: Hamiltonian, grad_h: GradH, z: Array, rho: Array,
                        eps: float, steps: int, momentum_scales: Array,
                        truncate: bool = False, at: PositionTerms | None = None,
                        guard: bool = True) -> tuple[Array, Array, PositionTerms]:
    """``K = len(momentum_scales)`` leapfrog steps, ``ρ ← s_k ρ`` after step ``k``.

    ``momentum_scales[k-1] = √(β_{k-1} / β_k)`` (see :func:`rhvae.math.elbo.momentum_scales`).
    Each position is prepared once: step ``k+1`` starts from the terms step ``k`` ended with,
    so ``K`` steps prepare ``K + 1`` positions. ``truncate``: see :func:`momentum_half_step`.
    ``at`` is :func:`prepare` of ``z`` when the caller has it; the third output is that of the
    final position. ``guard``: see :func:`_guarded_iterations`.
    """
    def body(k, state):
        zk, rk, at = _step(B, H, grad_h, *state, eps, steps, truncate, guard)
        return zk, rk * momentum_scales[k], at

    at = grad_h.prepare(B, H, z) if at is None else at
    return B.fori_loop(0, momentum_scales.shape[0], body, (z, rho, at), unroll=grad_h.closed_form)


class GeneralizedLeapfrog:
    """The paper's integrator (``integrator="implicit"``): ``ρ0 = γ/√β0`` with ``γ ~ N(0, G(z0))``,
    then :func:`tempered_trajectory`; ``log q(ρ0) = log N(γ; 0, G(z0)) + (d/2) log β0``, and the
    tempering's log-Jacobian ``log(β0/β_K)``. Position terms the ∇H method prepared (the metric,
    ``log p(x|z)``) are reused at both ends of the flow."""

    def __repr__(self) -> str:
        return "GeneralizedLeapfrog()"

    def check(self, grad_h: GradH, settings: Flow) -> None:
        """Every ∇H method and setting applies."""

    def log_beta_ratio(self, betas: np.ndarray) -> float:
        return float(math.log(betas[0] / betas[-1]))

    def flow(self, B: Backend, H: Hamiltonian, grad_h: GradH, settings: Flow, z0: Array, xi: Array,
             scales: Array) -> FlowEnds:
        at0 = grad_h.prepare(B, H, z0)
        metric0 = at0.metric if at0.metric is not None else H.metric(z0)
        gamma = sample_momentum(B, metric0, xi)
        rho0 = gamma / math.sqrt(settings.beta0)
        zK, rhoK, atK = tempered_trajectory(B, H, grad_h, z0, rho0, settings.eps, settings.steps, scales,
                                            settings.truncate_gradients, at0, settings.guard_fixed_point)
        # log N(ρ0; 0, G(z0)/β0) = log N(γ; 0, G(z0)) + (d/2) log β0
        log_q_rho = momentum_log_prob(B, metric0, gamma) + 0.5 * z0.shape[-1] * math.log(settings.beta0)
        return FlowEnds(rho0, log_q_rho, zK, rhoK,
                        atK.log_likelihood if atK.log_likelihood is not None else H.log_likelihood(zK),
                        atK.metric if atK.metric is not None else H.metric(zK))

    def step(self, B: Backend, H: Hamiltonian, grad_h: GradH, settings: Flow, z: Array,
             rho: Array) -> tuple[Array, Array]:
        return leapfrog_step(B, H, grad_h, z, rho, settings.eps, settings.steps, settings.guard_fixed_point)
