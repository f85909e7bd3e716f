"""Tempering schedules ``(K, β0) -> β (K + 1,)`` with ``β[0] = β0``."""

from __future__ import annotations

import numpy as np


class Quadratic:
    """``1/√β_k = (1 - 1/√β0)(k/K)² + 1/√β0``: from ``β0`` up to ``β_K = 1`` (Caterini et al.)."""

    def __repr__(self) -> str:
        return "Quadratic()"

    def __call__(self, K: int, beta0: float) -> np.ndarray:
        k = np.arange(K + 1)
        inv_sqrt = (1.0 - 1.0 / np.sqrt(beta0)) * (k / K) ** 2 + 1.0 / np.sqrt(beta0)
        return inv_sqrt ** -2.0


class Constant:
    """``β_k = β0`` for every ``k``: the momentum is never rescaled (AutoEncoderToolkit's null tempering)."""

    def __repr__(self) -> str:
        return "Constant()"

    def __call__(self, K: int, beta0: float) -> np.ndarray:
        return np.full(K + 1, float(beta0))
