"""The pull-back metric of the decoder, for comparison with the learned metric.

With ``μ(z)`` the mean of ``p(x | z)`` (probabilities for Bernoulli) and ``J = ∂μ/∂z (D, d)``,
the Euclidean metric of data space pulled back to the latent space is

``G_pb(z) = J(z)ᵀ J(z)``

(Arvanitidis, Hansen & Hauberg 2018, deterministic part; AutoEncoderToolkit.jl's
``pullback_metric`` for a decoder without a learned scale). Its volume ``√det G_pb`` is large
where the decoder stretches space, small where it flattens it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from rhvae.interfaces import Array, Backend


def jacobian_columns(B: Backend, f: Callable[[Array], Array], z: Array) -> Array:
    """``J v`` for every unit vector ``v = e_i`` of row-wise ``f: (B, d) -> (B, D)``; ``(B, D, d)``.

    Each column is a forward product obtained as the VJP of the (linear) VJP ``u ↦ Jᵀu``, so only
    reverse-mode ``B.vjp`` is needed; ``d`` such products, each about two decoder passes.
    """
    xp = B.xp
    out, _ = B.vjp(f, z)
    u0 = xp.zeros_like(out)

    def transpose_product(u):
        return B.vjp(f, z)[1](u)[0]

    _, forward = B.vjp(transpose_product, u0)
    d = z.shape[-1]
    eye = B.constant(np.eye(d), z.dtype)
    return xp.stack([forward(xp.zeros_like(z) + eye[i])[0] for i in range(d)], axis=-1)


def pullback_metric(B: Backend, mean: Callable[[Array], Array], z: Array) -> Array:
    """``G_pb(z) = J(z)ᵀ J(z)`` with ``J = ∂ mean / ∂z``; ``(B, d, d)``."""
    J = jacobian_columns(B, mean, z)
    return B.xp.einsum("bDi,bDj->bij", J, J)
