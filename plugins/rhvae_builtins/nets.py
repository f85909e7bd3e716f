"""MLP encoder, decoders and metric network, written once over ``B.xp``.

Inputs may be shaped (``(B, C, H, W)`` images: ``input_dim`` is then a shape tuple): the MLPs
flatten them; the decoder's outputs stay flat ``(B, prod(shape))``, which the core reshapes
(:func:`rhvae.math.hamiltonian.shaped`).

Parameters are flat dicts (``"hidden0.w" (in, out)``, ``"hidden0.b" (out,)``, one ``"<head>.w"``
and ``"<head>.b"`` per output head), drawn in numpy, so torch and jax share one layout and one
initialisation (:data:`INITS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from rhvae.errors import InputError
from rhvae.interfaces import Array, Backend, Likelihood, Params


def _size(dim: int | tuple[int, ...]) -> int:
    return math.prod(dim) if isinstance(dim, tuple) else dim


def _fan_in(rng: np.random.Generator, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    bound = 1.0 / np.sqrt(n_in)
    return rng.uniform(-bound, bound, size=(n_in, n_out)), rng.uniform(-bound, bound, size=n_out)


def _glorot(rng: np.random.Generator, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, size=(n_in, n_out)), np.zeros(n_out)


INITS = {"fan_in": _fan_in, "glorot": _glorot}
"""Initialisations of one dense layer ``(W (in, out), b (out,))``: ``"fan_in"``, ``W, b ~ U(±1/√in)``
(PyTorch's ``nn.Linear`` default, which pythae's networks start from; the default), and
``"glorot"``, ``W ~ U(±√(6/(in+out)))``, ``b = 0`` (rhvae 0.1's). On the MNIST sample at latent 2,
``"glorot"`` trains to a held-out NLL about 7 nats worse (docs/stability.md)."""


class MLP:
    """A trunk of dense layers ``h ← act(h W + b)`` followed by linear output heads.

    ``hidden``: the trunk's widths (may be empty); ``activation``: a name known to the backend
    (``relu tanh sigmoid elu softplus gelu leaky_relu identity``); ``init``: a key of
    :data:`INITS`. The initialisation only sets the starting point, so it is not part of the
    ``repr`` that checkpoints compare.
    """

    def __init__(self, hidden: Sequence[int] = (512,), activation: str = "relu", init: str = "fan_in") -> None:
        self.hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in self.hidden):
            raise InputError(f"hidden sizes must be positive integers; got {hidden!r}")
        if init not in INITS:
            raise InputError(f"init must be one of {sorted(INITS)}; got {init!r}")
        self.activation = activation
        self.init_name = init

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hidden={self.hidden}, activation={self.activation!r})"

    def _init(self, rng: np.random.Generator, n_in: int | tuple[int, ...], heads: dict[str, int]) -> dict[str, np.ndarray]:
        layer = INITS[self.init_name]
        params, width = {}, _size(n_in)
        for i, h in enumerate(self.hidden):
            params[f"hidden{i}.w"], params[f"hidden{i}.b"] = layer(rng, width, h)
            width = h
        for name, n_out in heads.items():
            params[f"{name}.w"], params[f"{name}.b"] = layer(rng, width, n_out)
        return params

    def _apply(self, B: Backend, params: Params, x: Array, heads: Sequence[str]) -> tuple[Array, ...]:
        act = B.activation(self.activation)
        h = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
        for i in range(len(self.hidden)):
            h = act(h @ params[f"hidden{i}.w"] + params[f"hidden{i}.b"])
        return tuple(h @ params[f"{name}.w"] + params[f"{name}.b"] for name in heads)


class MLPEncoder(MLP):
    """``x -> (μ, log σ)``: an MLP trunk with two linear heads."""

    def init(self, rng: np.random.Generator, input_dim: int, latent_dim: int) -> dict[str, np.ndarray]:
        return self._init(rng, input_dim, {"mu": latent_dim, "log_sigma": latent_dim})

    def __call__(self, B: Backend, params: Params, x: Array) -> tuple[Array, Array]:
        return self._apply(B, params, x, ("mu", "log_sigma"))


class MLPDecoder(MLP):
    """``z -> outputs`` for ``likelihood``: one linear head per distribution parameter."""

    def __init__(self, likelihood: Likelihood, hidden: Sequence[int] = (512,), activation: str = "relu",
                 init: str = "fan_in") -> None:
        super().__init__(hidden, activation, init)
        self.likelihood = likelihood

    def __repr__(self) -> str:
        return f"MLPDecoder({self.likelihood!r}, hidden={self.hidden}, activation={self.activation!r})"

    def _heads(self) -> tuple[str, ...]:
        return tuple(f"out{i}" for i in range(self.likelihood.n_outputs))

    def init(self, rng: np.random.Generator, latent_dim: int, output_dim: int | tuple[int, ...]) -> dict[str, np.ndarray]:
        return self._init(rng, latent_dim, dict.fromkeys(self._heads(), _size(output_dim)))

    def __call__(self, B: Backend, params: Params, z: Array) -> tuple[Array, ...]:
        return self._apply(B, params, z, self._heads())


class MLPMetric(MLP):
    """``x -> (diag (d,), lower (d(d-1)/2,))``, the raw entries of ``L(x)`` (pythae's metric net)."""

    def __init__(self, hidden: Sequence[int] = (400,), activation: str = "relu", init: str = "fan_in") -> None:
        super().__init__(hidden, activation, init)

    def init(self, rng: np.random.Generator, input_dim: int, latent_dim: int) -> dict[str, np.ndarray]:
        return self._init(rng, input_dim, {"diag": latent_dim, "lower": latent_dim * (latent_dim - 1) // 2})

    def __call__(self, B: Backend, params: Params, x: Array) -> tuple[Array, Array]:
        return self._apply(B, params, x, ("diag", "lower"))
