"""A linear tempering schedule ``(K, β0) -> β (K + 1,)``."""

from __future__ import annotations

import numpy as np


class Linear:
    """``1/√β_k = 1/√β0 + (1 - 1/√β0) k/K``, ``k = 0..K``: from ``β_0 = β0`` up to ``β_K = 1``.

    The inverse square root of β (the momentum's scale factor) moves in equal steps, where
    the built-in ``quadratic`` schedule moves it along ``(k/K)²``.
    """

    def __repr__(self) -> str:
        return "Linear()"

    def __call__(self, K: int, beta0: float) -> np.ndarray:
        if not beta0 > 0:
            raise ValueError(f"beta0 must be > 0; got {beta0!r}")
        k = np.arange(K + 1)
        inv_sqrt = 1.0 / np.sqrt(beta0) + (1.0 - 1.0 / np.sqrt(beta0)) * (k / K)
        return inv_sqrt ** -2.0
