"""Named bundles of :class:`rhvae.RHVAE` keyword arguments that reproduce another implementation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

AETK_COMPAT: dict[str, Any] = {
    "integrator": "aetk",
    "grad_h": "finite",
    "reduction": "mean",
    "eps": 1e-4,
    "K": 3,
    "steps": 3,
    "beta0": 0.3,
    "T": 0.4,
    "lam": 1e-2,
}


def aetk_compat(**overrides: Any) -> dict[str, Any]:
    """AutoEncoderToolkit.jl v0.1.2's RHVAE: ``RHVAE(backend, **aetk_compat(input_dim=..., latent_dim=...))``.

    Its leapfrog (``integrator="aetk"``: frozen decoder output and ``G⁻¹`` inside each step, so
    ``∇zH = -∇ log p(z)``; accumulating fixed-point updates; ``log N(ρ0; 0, G(z0))`` and
    ``-(d/2) log β0`` in ``log q̄``), central finite differences with step ``∛eps`` of the dtype,
    the mean over centroids, and its source defaults ``ε = 1e-4, K = 3, steps = 3, β0 = 0.3``
    with the quickstart's ``T = 0.4, λ = 1e-2``. ``overrides`` replace any of these or add
    other arguments (``input_dim``, ``latent_dim``, components, ``dtype``...).
    """
    return {**AETK_COMPAT, **overrides}


PRESETS: dict[str, Callable[..., dict[str, Any]]] = {"aetk_compat": aetk_compat}
