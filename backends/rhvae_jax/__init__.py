"""The JAX backend of rhvae (registered through the ``rhvae`` entry-point group).

Importing this package does not import jax; the backend object does, when it is created, and
so does the first access to the network adapters of :mod:`rhvae_jax.adapters`
(``rhvae_jax.FlaxNetwork``, ``rhvae_jax.EquinoxNetwork``).
"""

from typing import Any

import rhvae

_LAZY = {"FlaxNetwork": "rhvae_jax.adapters", "EquinoxNetwork": "rhvae_jax.adapters"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@rhvae.hookimpl
def rhvae_register(registry):
    registry.add("backend", "jax", "rhvae_jax.backend:JaxBackend",
                 doc="JAX: jax.grad/jit, lax.fori_loop, CPU or GPU")
