"""Position priors ``log p(z)``."""

from __future__ import annotations

import math

from rhvae.interfaces import Array, Backend


class Spherical:
    """``log p(z) = -½ ‖z‖² - (d/2) log 2π``; ``∇ log p(z) = -z``."""

    def __repr__(self) -> str:
        return "Spherical()"

    def log_prob(self, B: Backend, z: Array) -> Array:
        d = z.shape[-1]
        return -0.5 * B.xp.sum(z * z, axis=-1) - 0.5 * d * math.log(2 * math.pi)

    def grad_log_prob(self, B: Backend, z: Array) -> Array:
        return -z
