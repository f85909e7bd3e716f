"""Ways to take the partial derivatives ``∂H/∂z`` and ``∂H/∂ρ`` of the Hamiltonian."""

from __future__ import annotations

import numpy as np

from rhvae.errors import InputError
from rhvae.interfaces import Array, Backend, GradHBase, PositionTerms
from rhvae.math import gradients
from rhvae.math.metric import inverse_metric


class Autodiff(GradHBase):
    """``∇H`` by the backend's autodiff: ``torch.func.grad`` / ``jax.grad`` of ``Σ_b H_b``.

    ``argnums`` makes these partial derivatives; nested inside the loss gradient they are
    differentiated again (no ``create_graph`` total-derivative trap).
    """

    def __repr__(self) -> str:
        return "Autodiff()"

    def grad_z(self, B: Backend, H, z: Array, rho: Array) -> Array:
        return B.grad(lambda zz: B.xp.sum(H(zz, rho)))(z)

    def grad_rho(self, B: Backend, H, z: Array, rho: Array) -> Array:
        return B.grad(lambda rr: B.xp.sum(H(z, rr)))(rho)


class FiniteDifference(GradHBase):
    """Central differences ``∂_i H ≈ [H(v + h e_i) - H(v - h e_i)] / 2h``, coordinate ``i`` of all rows at once.

    ``step`` defaults to ``∛eps`` of the dtype (4.92e-3 in float32, 6.06e-6 in float64), the
    choice of AutoEncoderToolkit.jl; the truncation error is ``O(h²)``, the round-off ``O(|H| eps / h)``.
    """

    def __init__(self, step: float | None = None) -> None:
        if step is not None and not step > 0:
            raise InputError(f"step must be > 0; got {step!r}")
        self.step = step

    def __repr__(self) -> str:
        return f"FiniteDifference(step={self.step})"

    def _central(self, B: Backend, f, v: Array) -> Array:
        xp = B.xp
        h = self.step if self.step is not None else float(np.cbrt(xp.finfo(v.dtype).eps))
        d = v.shape[-1]
        eye = B.constant(np.eye(d) * h, v.dtype)
        columns = [(f(v + eye[i]) - f(v - eye[i])) / (2.0 * h) for i in range(d)]
        return xp.stack(columns, axis=-1)

    def grad_z(self, B: Backend, H, z: Array, rho: Array) -> Array:
        return self._central(B, lambda zz: H(zz, rho), z)

    def grad_rho(self, B: Backend, H, z: Array, rho: Array) -> Array:
        return self._central(B, lambda rr: H(z, rr), rho)


class Analytic(GradHBase):
    """``∇H`` in closed form (:mod:`rhvae.math.gradients`): ``∇ρH = G⁻¹ρ``,
    ``∇zκ = -(a/T²)[z Σ_i s_i - Σ_i s_i c_i]`` with ``s_i = (ρᵀM_iρ - tr(G M_i)) w_i``, and
    ``∇zU`` from one decoder VJP plus the prior's ``grad_log_prob``.

    ``closed_form``: ``∇zU``, the weights, ``G`` and ``G⁻¹`` are computed once per position
    (:meth:`prepare`, every field of :class:`rhvae.interfaces.PositionTerms`) and reused by every
    fixed-point iteration there.
    """

    closed_form = True

    def __repr__(self) -> str:
        return "Analytic()"

    def prepare(self, B: Backend, H, z: Array) -> PositionTerms:
        return gradients.position_terms(B, H, z)

    def grad_z_at(self, B: Backend, H, at: PositionTerms, rho: Array) -> Array:
        return gradients.grad_z(B, H, at, rho)

    def grad_rho_at(self, B: Backend, H, at: PositionTerms, rho: Array) -> Array:
        return gradients.grad_rho(B, at.metric.G_inv, rho)

    def grad_z(self, B: Backend, H, z: Array, rho: Array) -> Array:
        return self.grad_z_at(B, H, self.prepare(B, H, z), rho)

    def grad_rho(self, B: Backend, H, z: Array, rho: Array) -> Array:
        G_inv, _ = inverse_metric(B, z, H.metric_state, H.spec)
        return gradients.grad_rho(B, G_inv, rho)
