"""Any ``torch.nn.Module`` as an rhvae encoder, decoder or metric network (``docs/networks.md``).

The module runs through ``torch.func.functional_call`` with the model's parameters, so the
model owns them (its dtype, its device, Adam, checkpoints) and the module's own tensors are
only the starting point.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from rhvae.errors import BackendUnavailableError, InputError, InputTypeError
from rhvae.adapters import as_outputs
from rhvae.interfaces import Backend, Likelihood, Params
from rhvae_builtins.likelihoods import resolve_likelihood


class TorchNetwork:
    """``module`` as an encoder (``x -> (mu, log_sigma)``), a metric network (``x -> (diag, lower)``) or,
    with ``likelihood``, a decoder (``z -> tuple of likelihood.n_outputs tensors``; a single tensor is
    taken as the 1-tuple when ``n_outputs == 1``).

    ``module`` must have parameters and no buffers (BatchNorm's running statistics are state the
    functional step cannot carry). ``reset=True``: :meth:`init` re-draws the parameters of a copy
    of ``module`` with every ``reset_parameters()``, seeded from the model's seed (torch's global
    RNG is left untouched); ``reset=False`` starts from the module's current (pretrained) weights.
    The module fixes its own shapes: a mismatch with the model's dimensions is reported by the
    model's build-time probe. Torch backend only.
    """

    backends = ("torch",)

    def __init__(self, module: nn.Module, *, likelihood: str | Likelihood | None = None, reset: bool = True) -> None:
        if not isinstance(module, nn.Module):
            raise InputTypeError(f"module must be a torch.nn.Module; got {type(module).__name__}")
        buffers = [name for name, _ in module.named_buffers()]
        if buffers:
            raise InputError(f"module {type(module).__name__} has buffers {buffers[:4]}: mutable state (such as "
                             f"BatchNorm's running statistics) that rhvae's functional training step cannot "
                             f"carry; use GroupNorm or LayerNorm instead")
        if not any(True for _ in module.parameters()):
            raise InputError(f"module {type(module).__name__} has no parameters; expected a network to train")
        self.module = module
        self.reset = bool(reset)
        if likelihood is not None:
            self.likelihood = resolve_likelihood(likelihood)

    def __repr__(self) -> str:
        likelihood = f", likelihood={self.likelihood!r}" if hasattr(self, "likelihood") else ""
        return f"TorchNetwork({type(self.module).__qualname__}{likelihood})"

    def init(self, rng: np.random.Generator, n_in: int, n_out: int) -> dict[str, np.ndarray]:
        """The parameters, keyed by ``named_parameters()`` names, as float64 numpy copies (re-drawn
        from ``rng`` on the CPU when ``reset``); ``n_in`` and ``n_out`` are not used."""
        module = self.module
        if self.reset:
            module = copy.deepcopy(module).to("cpu")  # CPU: the draws depend on the seed alone
            with torch.random.fork_rng(devices=[]):
                torch.random.default_generator.manual_seed(int(rng.integers(2**63 - 1)))
                for sub in module.modules():
                    if callable(getattr(sub, "reset_parameters", None)):
                        sub.reset_parameters()
        return {name: p.detach().to("cpu", torch.float64, copy=True).numpy() for name, p in module.named_parameters()}

    def __call__(self, B: Backend, params: Params, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if B.name not in self.backends:
            raise BackendUnavailableError(f"{self!r} runs on the torch backend only; this model's backend is "
                                          f"{B.name!r}")
        return as_outputs(self, torch.func.functional_call(self.module, dict(params), (x,), strict=True), "tensors")
