"""Factories of the registered MLP and convolutional decoders, one per likelihood."""

from __future__ import annotations

from collections.abc import Sequence

from rhvae_builtins.conv import ConvDecoder
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


def bernoulli_conv(channels: Sequence[int] = (64, 32), kernel: int = 4, stride: int = 2, padding: int = 1,
                   activation: str = "relu") -> ConvDecoder:
    """Transposed-convolution decoder producing Bernoulli logits for ``(C, H, W)`` images."""
    return ConvDecoder(Bernoulli(), channels, kernel, stride, padding, activation)


def gaussian_conv(channels: Sequence[int] = (64, 32), kernel: int = 4, stride: int = 2, padding: int = 1,
                  activation: str = "relu", sigma: float = 1.0) -> ConvDecoder:
    """Transposed-convolution decoder producing the mean of a Gaussian with fixed ``sigma``."""
    return ConvDecoder(Gaussian(sigma), channels, kernel, stride, padding, activation)


def gaussian_logscale_conv(channels: Sequence[int] = (64, 32), kernel: int = 4, stride: int = 2, padding: int = 1,
                           activation: str = "relu") -> ConvDecoder:
    """Transposed-convolution decoder producing the mean and log standard deviation of a Gaussian."""
    return ConvDecoder(GaussianLogScale(), channels, kernel, stride, padding, activation)
