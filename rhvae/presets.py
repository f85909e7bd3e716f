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
    "M_max": None,
}


def aetk_compat(**overrides: Any) -> dict[str, Any]:
    """AutoEncoderToolkit.jl v0.1.2's RHVAE: ``RHVAE(backend, **aetk_compat(input_dim=..., latent_dim=...))``.

    Its leapfrog (``integrator="aetk"``: frozen decoder output and ``G⁻¹`` inside each step, so
    ``∇zH = -∇ log p(z)``; accumulating fixed-point updates; ``log N(ρ0; 0, G(z0))`` and
    ``-(d/2) log β0`` in ``log q̄``), central finite differences with step ``∛eps`` of the dtype,
    the mean over centroids, and its source defaults ``ε = 1e-4, K = 3, steps = 3, β0 = 0.3``
    with the quickstart's ``T = 0.4, λ = 1e-2``; its ``M_i`` are unbounded (``M_max=None``).
    ``overrides`` replace any of these or add
    other arguments (``input_dim``, ``latent_dim``, components, ``dtype``...).
    """
    return {**AETK_COMPAT, **overrides}


RHVAE_0_1: dict[str, Any] = {"M_max": None, "guard_fixed_point": False, "reweight_frozen_metric": False}


def rhvae_0_1(**overrides: Any) -> dict[str, Any]:
    """rhvae 0.1's numerics, to reproduce results obtained with it: no bound on the ``M_i``, no
    guard on the fixed-point iterations, and the frozen metric of ``centroids="batch"`` summed
    unweighted over every centroid. Its networks started from Glorot-uniform weights: pass
    components built with ``init="glorot"``. 0.1's README job, to the last digit (held-out ELBO
    -260.85 on torch): ``rhvae train --preset rhvae_0_1 --init glorot --hidden 256
    --metric-hidden 256 --T 0.4 --centroids 256``. Unstable at latent 2 (``docs/stability.md``).
    """
    return {**RHVAE_0_1, **overrides}


PRESETS: dict[str, Callable[..., dict[str, Any]]] = {"aetk_compat": aetk_compat, "rhvae_0_1": rhvae_0_1}
