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

from dataclasses import dataclass

from rhvae.interfaces import Array, Backend, GradH, LogPrior
from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import LocalMetric, momentum_log_prob


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
