"""The JAX backend of rhvae (registered through the ``rhvae`` entry-point group).

Importing this package does not import jax; the backend object does, when it is created.
"""

import rhvae


@rhvae.hookimpl
def rhvae_register(registry):
    registry.add("backend", "jax", "rhvae_jax.backend:JaxBackend",
                 doc="JAX: jax.grad/jit, lax.fori_loop, CPU or GPU")
