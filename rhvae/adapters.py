"""What every network adapter (``rhvae_torch.TorchNetwork``, ``rhvae_jax.FlaxNetwork``, ...)
shares: turning a module's return value into the tuple a component returns."""

from __future__ import annotations

from typing import Any

from rhvae.errors import ComponentError


def as_outputs(adapter: Any, out: Any, arrays: str = "arrays") -> tuple:
    """``out`` as a tuple: a tuple or list as is, a single array as the 1-tuple of a decoder whose
    likelihood has one output; else a :class:`ComponentError` naming what the role expects
    (``arrays``: the framework's word, e.g. ``"tensors"``)."""
    if isinstance(out, (tuple, list)):
        return tuple(out)
    likelihood = getattr(adapter, "likelihood", None)
    if likelihood is not None and likelihood.n_outputs == 1:
        return (out,)
    role = (f"a tuple of {likelihood.n_outputs} {arrays} (a decoder for {likelihood!r})" if likelihood is not None
            else "a pair: (mu, log_sigma) for an encoder, (diag, lower) for a metric network")
    raise ComponentError(f"{adapter!r}: the module returned one {type(out).__name__}; expected {role}")
