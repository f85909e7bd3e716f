"""Small builders shared by the tests."""

from __future__ import annotations

import rhvae
from rhvae.model import RHVAE


def small_model(backend: str = "torch", device: str = "cpu", *, input_dim: int = 10, latent_dim: int = 2,
                hidden: int = 12, decoder: str = "bernoulli_mlp", **hyper) -> RHVAE:
    """An RHVAE with one small tanh hidden layer per network (smooth, so finite differences are clean).

    On JAX the build-time probe only traces shapes (``probe="shapes"``) unless ``probe`` is given:
    its compiled call costs about a second per model, and the suite builds hundreds; the tests of
    the probe itself pass ``probe="full"``."""
    reg = rhvae.get_registry()
    hyper.setdefault("probe", "shapes" if backend == "jax" else "full")
    return RHVAE(
        backend, device=device, input_dim=input_dim, latent_dim=latent_dim,
        encoder=reg.create("encoder", "mlp", hidden=(hidden,), activation="tanh"),
        decoder=reg.create("decoder", decoder, hidden=(hidden,), activation="tanh"),
        metric=reg.create("metric", "mlp", hidden=(hidden,), activation="tanh"),
        **hyper,
    )


def avals(jaxpr):
    """Every intermediate abstract value of a jaxpr, sub-jaxprs (loops, custom rules) included."""
    from jax.extend.core import ClosedJaxpr, Jaxpr

    for eqn in jaxpr.eqns:
        yield from (v.aval for v in eqn.outvars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if isinstance(sub, ClosedJaxpr):
                    yield from avals(sub.jaxpr)
                elif isinstance(sub, Jaxpr):
                    yield from avals(sub)
