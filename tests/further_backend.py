"""A backend registered from outside the core, through the plugin hook: torch without the
flushing of subnormal numbers (``TorchBackend(flush_subnormals=False)``), under its own name.

The parity suite (``tests/test_parity.py``) runs over every backend of :data:`REGISTRY`, so this
one is checked against torch like jax is, without a line of ``rhvae/`` knowing about it."""

from __future__ import annotations

import rhvae
from rhvae.registry import Registry


class ExactTorch:
    """The plugin: registers ``torch_exact``."""

    @rhvae.hookimpl
    def rhvae_register(self, registry):
        registry.add("backend", "torch_exact", "further_backend:exact_torch",
                     doc="torch with subnormal numbers kept (no flush to zero)")


def exact_torch(device: str = "cpu", compile: bool = False):
    from rhvae_torch.backend import TorchBackend

    class TorchKeepingSubnormals(TorchBackend):
        name = "torch_exact"

    return TorchKeepingSubnormals(device=device, compile=compile, flush_subnormals=False)


REGISTRY = Registry.from_entry_points()
REGISTRY.register_plugin(ExactTorch(), "tests-further-backend")
PARITY_BACKENDS = [name for name in REGISTRY.names("backend") if name != "torch"]
"""Every registered backend but the reference, torch: jax, torch_exact and any installed plugin's."""
