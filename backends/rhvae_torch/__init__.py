"""The PyTorch backend of rhvae (registered through the ``rhvae`` entry-point group).

Importing this package does not import torch; the backend object does, when it is created, and
so does the first access to :class:`~rhvae_torch.adapters.TorchNetwork` (``rhvae_torch.TorchNetwork``).
"""

from typing import Any

import rhvae

_LAZY = {"TorchNetwork": "rhvae_torch.adapters"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@rhvae.hookimpl
def rhvae_register(registry):
    registry.add("backend", "torch", "rhvae_torch.backend:TorchBackend",
                 doc="PyTorch: torch.func transforms, eager loops, CPU or CUDA")
