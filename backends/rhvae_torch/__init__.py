"""The PyTorch backend of rhvae (registered through the ``rhvae`` entry-point group).

Importing this package does not import torch; the backend object does, when it is created.
"""

import rhvae


@rhvae.hookimpl
def rhvae_register(registry):
    registry.add("backend", "torch", "rhvae_torch.backend:TorchBackend",
                 doc="PyTorch: torch.func transforms, eager loops, CPU or CUDA")
