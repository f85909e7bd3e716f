"""Flax linen and Equinox modules as rhvae encoders, decoders or metric networks (``docs/networks.md``).

The model owns the parameters (its dtype, Adam, checkpoints) as a flat ``dict[str, array]``;
the adapters rebuild the framework's own structure from it on every call. Flax and Equinox are
imported when an adapter is created, so each is needed only by the users of its adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rhvae.errors import BackendUnavailableError, InputError, InputTypeError
from rhvae.adapters import as_outputs
from rhvae.interfaces import Backend, Likelihood, Params
from rhvae_builtins.likelihoods import resolve_likelihood


def _key(parts: Sequence[Any], module: object) -> str:
    """``parts`` joined by '.'; a part holding '.' or '/' would make the key ambiguous (checkpoints use '/')."""
    names = [str(p) for p in parts]
    bad = [n for n in names if "." in n or "/" in n]
    if bad:
        raise InputError(f"module {type(module).__name__} has a parameter path {names} whose part {bad[0]!r} "
                         f"contains '.' or '/'; rename that submodule or field")
    return ".".join(names)


class _JaxNetwork:
    """What both adapters share: the backend check, the likelihood, the output contract."""

    backends = ("jax",)

    def __init__(self, module: Any, likelihood: str | Likelihood | None) -> None:
        self.module = module
        if likelihood is not None:
            self.likelihood = resolve_likelihood(likelihood)

    def __repr__(self) -> str:
        likelihood = f", likelihood={self.likelihood!r}" if hasattr(self, "likelihood") else ""
        return f"{type(self).__name__}({type(self.module).__qualname__}{likelihood})"

    def _check_backend(self, B: Backend) -> None:
        if B.name not in self.backends:
            raise BackendUnavailableError(f"{self!r} runs on the jax backend only; this model's backend is "
                                          f"{B.name!r}")

    def _outputs(self, out: Any) -> tuple[jax.Array, ...]:
        return as_outputs(self, out)


class FlaxNetwork(_JaxNetwork):
    """A ``flax.linen.Module`` as an encoder (``x -> (mu, log_sigma)``), a metric network
    (``x -> (diag, lower)``) or, with ``likelihood``, a decoder (``z -> tuple of likelihood.n_outputs
    arrays``; a single array is taken as the 1-tuple when ``n_outputs == 1``).

    :meth:`init` runs ``module.init`` on a zero example batch ``(1, n_in)`` (``(1, *n_in)`` for a
    shape) with a key drawn from the model's seed and keeps the ``"params"`` collection, flattened
    to ``{"Dense_0.kernel": ..., ...}``; a module with other collections (``batch_stats``: state
    the functional step cannot carry) is refused. Calls are ``module.apply({"params": tree}, x)``
    on the whole batch. JAX backend only.
    """

    def __init__(self, module: Any, *, likelihood: str | Likelihood | None = None) -> None:
        import flax.linen as nn

        if not isinstance(module, nn.Module):
            raise InputTypeError(f"module must be a flax.linen.Module; got {type(module).__name__}")
        super().__init__(module, likelihood)

    def init(self, rng: np.random.Generator, n_in: int | tuple[int, ...], n_out: int) -> dict[str, np.ndarray]:
        """Fresh parameters from ``module.init``, keyed by '.'-joined paths, as float64 numpy arrays;
        ``n_out`` is not used (the module fixes its output shapes)."""
        from flax.traverse_util import flatten_dict

        shape = (1, *n_in) if isinstance(n_in, tuple) else (1, n_in)
        variables = self.module.init(jax.random.key(int(rng.integers(2**31 - 1))), jax.numpy.zeros(shape))
        other = sorted(set(variables) - {"params"})
        if other:
            raise InputError(f"module {type(self.module).__name__} has the variable collections {other} besides "
                             f"'params': mutable state (such as BatchNorm's batch_stats) that rhvae's functional "
                             f"training step cannot carry; use GroupNorm or LayerNorm instead")
        flat = flatten_dict(variables.get("params", {}))
        if not flat:
            raise InputError(f"module {type(self.module).__name__} has no parameters; expected a network to train")
        return {_key(path, self.module): np.array(v, dtype=np.float64) for path, v in flat.items()}

    def __call__(self, B: Backend, params: Params, x: jax.Array) -> tuple[jax.Array, ...]:
        from flax.traverse_util import unflatten_dict

        self._check_backend(B)
        return self._outputs(self.module.apply({"params": unflatten_dict(dict(params), sep=".")}, x))


class EquinoxNetwork(_JaxNetwork):
    """An ``equinox.Module`` as an encoder (``x -> (mu, log_sigma)``), a metric network
    (``x -> (diag, lower)``) or, with ``likelihood``, a decoder (``z -> tuple of likelihood.n_outputs
    arrays``; a single array is taken as the 1-tuple when ``n_outputs == 1``).

    The module maps **one** example (as ``equinox.nn`` layers do): calls are
    ``jax.vmap(module)(x)`` over the batch. Its floating-point arrays
    (``eqx.partition(module, eqx.is_inexact_array)``) are the parameters, keyed by readable paths
    (``"layers.0.weight"``); everything else stays fixed. :meth:`init` returns the module's current
    arrays whatever the seed: an Equinox module draws its weights from the key it is built with.
    Stateful modules (``eqx.nn.State``, e.g. BatchNorm) are refused. JAX backend only.
    """

    def __init__(self, module: Any, *, likelihood: str | Likelihood | None = None) -> None:
        import equinox as eqx

        if not isinstance(module, eqx.Module):
            raise InputTypeError(f"module must be an equinox.Module; got {type(module).__name__}")
        if any(_is_state(leaf) for leaf in jax.tree_util.tree_leaves(module, is_leaf=_is_state)):
            raise InputError(f"module {type(module).__name__} holds eqx.nn.State (such as BatchNorm's running "
                             f"statistics): mutable state that rhvae's functional training step cannot carry; "
                             f"use GroupNorm or LayerNorm instead")
        arrays, self._static = eqx.partition(module, eqx.is_inexact_array)
        leaves, self._treedef = jax.tree_util.tree_flatten_with_path(arrays)
        if not leaves:
            raise InputError(f"module {type(module).__name__} has no floating-point arrays; expected a network "
                             f"to train")
        self._keys = [_key([_part(k) for k in path], module) for path, _ in leaves]
        self._arrays = [v for _, v in leaves]
        super().__init__(module, likelihood)

    def init(self, rng: np.random.Generator, n_in: int, n_out: int) -> dict[str, np.ndarray]:
        """The module's arrays as float64 numpy copies; ``rng``, ``n_in`` and ``n_out`` are not used."""
        return {k: np.array(v, dtype=np.float64) for k, v in zip(self._keys, self._arrays)}

    def __call__(self, B: Backend, params: Params, x: jax.Array) -> tuple[jax.Array, ...]:
        import equinox as eqx

        self._check_backend(B)
        arrays = jax.tree_util.tree_unflatten(self._treedef, [params[k] for k in self._keys])
        return self._outputs(jax.vmap(eqx.combine(arrays, self._static))(x))


def _is_state(leaf: Any) -> bool:
    import equinox as eqx

    return isinstance(leaf, eqx.nn.StateIndex)


def _part(key: Any) -> Any:
    """The name in one step of a pytree path (attribute, index or dictionary key)."""
    for attr in ("name", "idx", "key"):
        if hasattr(key, attr):
            return getattr(key, attr)
    return key
