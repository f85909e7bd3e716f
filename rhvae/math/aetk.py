"""AutoEncoderToolkit.jl's leapfrog (v0.1.2), reproduced for porting: ``integrator="aetk"``.

AETK differentiates a closure over the decoder output and ``G⁻¹`` computed where each sub-step
starts, so inside a step the Hamiltonian it differentiates is the *frozen*

``H̃(z', ρ) = -log p(x | z) - log p(z') + ½ (d log 2π + log det G(z)) + ½ ρᵀ G⁻¹(z) ρ``

and ``∇z H̃ = -∇ log p(z')`` (``= z'`` for the spherical prior): the likelihood and the metric
never steer the flow. Its fixed-point updates accumulate from the current iterate, so with
``s`` iterations and ``g(z) = ∇z H̃`` one step is (``aetk_rhvae_spec.md`` §5.2)

``ρ̃ = ρ - s (ε/2) g(z)``,  ``z' = z + s ε G⁻¹(z) ρ̃``,  ``ρ' = ρ̃ - (ε/2) g(z')``.

The paper's integrator (:mod:`rhvae.math.leapfrog`) is the default; this one exists so that
numbers from Julia can be reproduced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rhvae.errors import InputError
from rhvae.interfaces import Array, Backend, FlowEnds, GradH, LogPrior
from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import LocalMetric, momentum_log_prob, sample_momentum

if TYPE_CHECKING:
    from rhvae.math.elbo import Flow


@dataclass(frozen=True)
class FrozenHamiltonian:
    """``H̃(z', ρ)``: the likelihood ``log p(x | z)`` and the metric at ``z`` held fixed, the prior live."""

    B: Backend
    prior: LogPrior
    log_likelihood: Array
    metric: LocalMetric

    def __call__(self, z: Array, rho: Array) -> Array:
        return -self.log_likelihood - self.prior.log_prob(self.B, z) - momentum_log_prob(self.B, self.metric, rho)


def freeze(B: Backend, H: Hamiltonian, z: Array) -> FrozenHamiltonian:
    """The Hamiltonian AETK differentiates in a sub-step that starts at ``z``."""
    return FrozenHamiltonian(B, H.prior, H.log_likelihood(z), H.metric(z))


def leapfrog_step(B: Backend, grad_h: GradH, H: Hamiltonian, z: Array, rho: Array, frozen: FrozenHamiltonian,
                  eps: float, steps: int) -> tuple[Array, Array, FrozenHamiltonian]:
    """One AETK step from ``(z, ρ)``, ``frozen`` = :func:`freeze` at ``z``; returns ``(z', ρ', frozen at z')``.

    ``∇H̃`` is taken by ``grad_h`` (AETK's default: central differences, step ``∛eps``).
    """
    rho_t = B.fori_loop(0, steps, lambda _, r: r - 0.5 * eps * grad_h.grad_z(B, frozen, z, r), rho)
    g0 = grad_h.grad_rho(B, frozen, z, rho_t)
    z_new = B.fori_loop(0, steps, lambda _, zz: zz + 0.5 * eps * (g0 + grad_h.grad_rho(B, frozen, zz, rho_t)), z)
    frozen_new = freeze(B, H, z_new)
    return z_new, rho_t - 0.5 * eps * grad_h.grad_z(B, frozen_new, z_new, rho_t), frozen_new


def tempered_trajectory(B: Backend, grad_h: GradH, H: Hamiltonian, z: Array, rho: Array, frozen: FrozenHamiltonian,
                        eps: float, steps: int, momentum_scales: Array) -> tuple[Array, Array, FrozenHamiltonian]:
    """``K = len(momentum_scales)`` AETK steps, ``ρ ← s_k ρ`` after step ``k``; the third output is
    the frozen Hamiltonian at ``z_K`` (its likelihood and metric serve the ELBO)."""

    def body(k, carry):
        zk, rk, log_lik, metric = carry
        zk, rk, fk = leapfrog_step(B, grad_h, H, zk, rk, FrozenHamiltonian(B, H.prior, log_lik, metric), eps, steps)
        return zk, rk * momentum_scales[k], fk.log_likelihood, fk.metric

    zK, rhoK, log_lik, metric = B.fori_loop(0, momentum_scales.shape[0], body,
                                            (z, rho, frozen.log_likelihood, frozen.metric))
    return zK, rhoK, FrozenHamiltonian(B, H.prior, log_lik, metric)


class FrozenLeapfrog:
    """AutoEncoderToolkit.jl's integrator (``integrator="aetk"``), registered as a plugin of the
    ``integrator`` kind: ``ρ0 = γ0/√β0`` with no gradient through ``G(z0)``'s factor (AETK draws it
    under ``ignore_derivatives``), :func:`tempered_trajectory`, ``log N(ρ0; 0, G(z0))`` as the ρ0
    term and ``log β0`` as the tempering's log-Jacobian factor whatever the schedule."""

    def __repr__(self) -> str:
        return "FrozenLeapfrog()"

    def check(self, grad_h: GradH, settings: Flow) -> None:
        """It differentiates the frozen Hamiltonian, a bare callable: a closed-form method, which
        reads the full Hamiltonian's parts, does not apply; nor does ``truncate_gradients``."""
        if grad_h.closed_form:
            raise InputError(f"integrator='aetk' differentiates AutoEncoderToolkit.jl's frozen Hamiltonian, "
                             f"which grad_h={grad_h!r} does not support; use grad_h='finite' (its default) "
                             f"or 'autodiff'")
        if settings.truncate_gradients:
            raise InputError("truncate_gradients applies to integrator='implicit' only")

    def log_beta_ratio(self, betas: np.ndarray) -> float:
        return float(math.log(betas[0]))

    def flow(self, B: Backend, H: Hamiltonian, grad_h: GradH, settings: Flow, z0: Array, xi: Array,
             scales: Array) -> FlowEnds:
        frozen0 = freeze(B, H, z0)
        rho0 = B.stop_gradient(sample_momentum(B, frozen0.metric, xi)) / math.sqrt(settings.beta0)
        zK, rhoK, frozenK = tempered_trajectory(B, grad_h, H, z0, rho0, frozen0, settings.eps, settings.steps, scales)
        return FlowEnds(rho0, momentum_log_prob(B, frozen0.metric, rho0), zK, rhoK, frozenK.log_likelihood,
                        frozenK.metric)

    def step(self, B: Backend, H: Hamiltonian, grad_h: GradH, settings: Flow, z: Array,
             rho: Array) -> tuple[Array, Array]:
        return leapfrog_step(B, grad_h, H, z, rho, freeze(B, H, z), settings.eps, settings.steps)[:2]
