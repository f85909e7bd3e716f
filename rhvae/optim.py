"""Adam, written once over the backend namespace so torch and jax step identically.

``m ← b1 m + (1-b1) g``, ``v ← b2 v + (1-b2) g²``, ``p ← p - lr m̂ / (√v̂ + eps)`` with
``m̂ = m / (1 - b1^t)``, ``v̂ = v / (1 - b2^t)`` (Kingma & Ba), computed as
``p ← p - α_t m / (√v + ε_t)`` with ``α_t = lr √(1 - b2^t) / (1 - b1^t)`` and
``ε_t = eps √(1 - b2^t)``: the same number with the bias corrections folded into two scalars, so
eager torch makes five passes over each parameter instead of seven. The state is a dict of
arrays (a pytree), so the update runs inside a compiled step.
"""

from __future__ import annotations

from dataclasses import dataclass

from rhvae.interfaces import Backend
from rhvae.tree import flatten, tree_map


@dataclass(frozen=True)
class Adam:
    """Adam with learning rate ``lr``, decay rates ``b1``, ``b2`` and ``eps``."""

    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8

    def init(self, B: Backend, params: dict) -> dict:
        """``{"count": 0, "m": 0, "v": 0}`` shaped like ``params``."""
        _, leaf = next(flatten(params))
        count = B.constant(0.0, leaf.dtype)
        return {"count": count, "m": tree_map(B.xp.zeros_like, params), "v": tree_map(B.xp.zeros_like, params)}

    def update(self, B: Backend, grads: dict, state: dict, params: dict) -> tuple[dict, dict]:
        """One step: ``(params, state) -> (new params, new state)``."""
        count = state["count"] + 1.0
        m = tree_map(lambda m, g: self.b1 * m + (1.0 - self.b1) * g, state["m"], grads)
        v = tree_map(lambda v, g: self.b2 * v + (1.0 - self.b2) * g * g, state["v"], grads)
        root_c2 = B.xp.sqrt(1.0 - self.b2 ** count)
        step_size, eps = self.lr * root_c2 / (1.0 - self.b1 ** count), self.eps * root_c2
        new = tree_map(lambda p, m, v: p - step_size * m / (B.xp.sqrt(v) + eps), params, m, v)
        return new, {"count": count, "m": m, "v": v}

