"""A heavy-tailed position prior: the multivariate Student-t, written once over ``B.xp``."""

from __future__ import annotations

import math

from rhvae.interfaces import Array, Backend


class StudentT:
    """Isotropic multivariate Student-t with ``df`` degrees of freedom ``ν`` and ``scale`` ``s``.

    ``log p(z) = lgamma((ν+d)/2) - lgamma(ν/2) - (d/2) log(νπ) - d log s
    - ((ν+d)/2) log(1 + ‖z‖²/(ν s²))``;  ``z (B, d) -> (B,)``.

    ``∇ log p(z) = -(ν+d) z / (ν s² + ‖z‖²)``;  ``z (B, d) -> (B, d)``.
    """

    def __init__(self, df: float = 3.0, scale: float = 1.0) -> None:
        if not df > 0:
            raise ValueError(f"df must be > 0; got {df!r}")
        if not scale > 0:
            raise ValueError(f"scale must be > 0; got {scale!r}")
        self.df, self.scale = float(df), float(scale)

    def __repr__(self) -> str:
        return f"StudentT(df={self.df}, scale={self.scale})"

    def log_normalizer(self, d: int) -> float:
        """``lgamma((ν+d)/2) - lgamma(ν/2) - (d/2) log(νπ) - d log s``, a Python float."""
        nu, s = self.df, self.scale
        return math.lgamma((nu + d) / 2) - math.lgamma(nu / 2) - d / 2 * math.log(nu * math.pi) - d * math.log(s)

    def log_prob(self, B: Backend, z: Array) -> Array:
        d = z.shape[-1]
        nu, s = self.df, self.scale
        sq = B.xp.sum(z * z, axis=-1)
        return self.log_normalizer(d) - (nu + d) / 2 * B.xp.log1p(sq / (nu * s * s))

    def grad_log_prob(self, B: Backend, z: Array) -> Array:
        d = z.shape[-1]
        nu, s = self.df, self.scale
        sq = B.xp.sum(z * z, axis=-1)
        return -(nu + d) * z / (nu * s * s + sq)[..., None]
