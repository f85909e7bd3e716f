"""Closed-form partial derivatives of the Hamiltonian (DESIGN §2), as contractions.

With ``w_i = exp(-‖z - c_i‖²/T²)``, ``∇z w_i = -2 (z - c_i) w_i / T²`` and ``a`` the reduction
scale (1 for "sum", 1/N for "mean"):

- ``∇ρ H = G⁻¹(z) ρ``;
- ``∇z κ = ½ a Σ_i (ρᵀ M_i ρ) ∇z w_i - ½ a Σ_i tr(G M_i) ∇z w_i
         = -(a/T²) [z Σ_i s_i - Σ_i s_i c_i]``,  ``s_i = (ρᵀM_iρ - tr(G M_i)) w_i``;
- ``∇z U = -∇z log p(x|z) - ∇z log p(z)``, the likelihood term by one vector-Jacobian
  product of the decoder, the prior term from ``prior.grad_log_prob`` when it has one.

``s_i = ⟨ρρᵀ - G, M_i⟩ w_i`` (all symmetric) is one ``(B, P) × (P, N)`` product over packed
upper triangles, ``P = d(d+1)/2``: memory ``O(B N + B d² + N d²)``, never ``(B, N, d, d)``
(``O(B·chunk + N d²)`` with a chunked :class:`~rhvae.math.metric.MetricSpec`).
Everything that depends only on the position (``∇z U``, ``w``, ``G``, ``G⁻¹``) is computed
once per position by :func:`position_terms` and reused for every momentum.
"""

from __future__ import annotations

from rhvae.interfaces import Array, Backend, PositionTerms
from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import metric_tensor, weighted_gradient


def grad_log_prior(B: Backend, H: Hamiltonian, z: Array) -> Array:
    """``∇z log p(z)``: the prior's ``grad_log_prob`` if it has one, else autodiff of ``Σ_b log p(z_b)``."""
    closed_form = getattr(H.prior, "grad_log_prob", None)
    if closed_form is not None:
        return closed_form(B, z)
    return B.grad(lambda zz: B.xp.sum(H.prior.log_prob(B, zz)))(z)


def grad_potential(B: Backend, H: Hamiltonian, z: Array) -> tuple[Array, Array]:
    """``(∇z U, log p(x|z))`` with ``∇z U = -∇z log p(x|z) - ∇z log p(z)``; one decoder VJP."""
    def log_likelihood(zz):
        per_sample = H.log_likelihood(zz)
        return B.xp.sum(per_sample), per_sample

    (_, per_sample), grad_loglik = B.value_and_grad(log_likelihood, has_aux=True)(z)
    return -grad_loglik - grad_log_prior(B, H, z), per_sample


def position_terms(B: Backend, H: Hamiltonian, z: Array) -> PositionTerms:
    """The local metric, ``log p(x|z)``, ``∇z U`` and ``G`` at ``z``: every field of the terms."""
    metric = H.metric(z)
    grad_u, log_likelihood = grad_potential(B, H, z)
    return PositionTerms(z, metric, log_likelihood, grad_u, metric_tensor(B, metric))


def grad_kinetic_z(B: Backend, H: Hamiltonian, terms: PositionTerms, rho: Array) -> Array:
    """``∇z κ(z, ρ) = -(a/T²) [z Σ_i s_i - Σ_i s_i c_i]``, ``s_i = ⟨ρρᵀ - G, M_i⟩ w_i``."""
    A = rho[:, :, None] * rho[:, None, :] - terms.G
    return weighted_gradient(B, terms.z, A, terms.metric, H.metric_state, H.spec)


def grad_z(B: Backend, H: Hamiltonian, terms: PositionTerms, rho: Array) -> Array:
    """``∇z H(z, ρ) = ∇z U(z) + ∇z κ(z, ρ)``."""
    return terms.grad_potential + grad_kinetic_z(B, H, terms, rho)


def grad_rho(B: Backend, G_inv: Array, rho: Array) -> Array:
    """``∇ρ H(z, ρ) = G⁻¹(z) ρ``."""
    return B.xp.einsum("bij,bj->bi", G_inv, rho)
