"""Small builders shared by the tests."""

from __future__ import annotations

import rhvae
from rhvae.model import RHVAE


def small_model(backend: str = "torch", device: str = "cpu", *, input_dim: int = 10, latent_dim: int = 2,
                hidden: int = 12, decoder: str = "bernoulli_mlp", **hyper) -> RHVAE:
    """An RHVAE with one small tanh hidden layer per network (smooth, so finite differences are clean)."""
    reg = rhvae.get_registry()
    return RHVAE(
        backend, device=device, input_dim=input_dim, latent_dim=latent_dim,
        encoder=reg.create("encoder", "mlp", hidden=(hidden,), activation="tanh"),
        decoder=reg.create("decoder", decoder, hidden=(hidden,), activation="tanh"),
        metric=reg.create("metric", "mlp", hidden=(hidden,), activation="tanh"),
        **hyper,
    )
