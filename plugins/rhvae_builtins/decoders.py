"""Factories of the registered MLP decoders, one per likelihood."""

from __future__ import annotations

from collections.abc import Sequence

from rhvae_builtins.likelihoods import Bernoulli, Gaussian, GaussianLogScale
from rhvae_builtins.nets import MLPDecoder


def bernoulli_mlp(hidden: Sequence[int] = (512,), activation: str = "relu", init: str = "fan_in") -> MLPDecoder:
    """MLP decoder producing Bernoulli logits."""
    return MLPDecoder(Bernoulli(), hidden, activation, init)


def gaussian_mlp(hidden: Sequence[int] = (512,), activation: str = "relu", sigma: float = 1.0,
                 init: str = "fan_in") -> MLPDecoder:
    """MLP decoder producing the mean of a Gaussian with fixed ``sigma``."""
    return MLPDecoder(Gaussian(sigma), hidden, activation, init)


def gaussian_logscale_mlp(hidden: Sequence[int] = (512,), activation: str = "relu", init: str = "fan_in") -> MLPDecoder:
    """MLP decoder producing the mean and log standard deviation of a Gaussian."""
    return MLPDecoder(GaussianLogScale(), hidden, activation, init)
