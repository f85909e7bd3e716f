"""Observation models ``log p(x | outputs)``, summed over features: ``(B, *shape) -> (B,)``."""

from __future__ import annotations

import math

from rhvae.errors import InputError, InputTypeError
from rhvae.interfaces import Array, Backend, Likelihood


def _features(x: Array) -> tuple[int, ...]:
    """The axes of one example (every axis but the batch's)."""
    return tuple(range(1, x.ndim))


class Bernoulli:
    """``log p(x | l) = Σ_j [x_j l_j - softplus(l_j)]`` for logits ``l``; ``x ∈ [0, 1]``."""

    n_outputs = 1
    support = (0.0, 1.0)

    def __repr__(self) -> str:
        return "Bernoulli()"

    def log_prob(self, B: Backend, x: Array, outputs: tuple[Array, ...]) -> Array:
        (logits,) = outputs
        return B.xp.sum(x * logits - B.softplus(logits), axis=_features(x))

    def mean(self, B: Backend, outputs: tuple[Array, ...]) -> Array:
        return 1.0 / (1.0 + B.xp.exp(-outputs[0]))


class Gaussian:
    """``log p(x | μ) = -½ Σ_j ((x_j - μ_j)/σ)² - D log σ - (D/2) log 2π`` with fixed ``σ``."""

    n_outputs = 1

    def __init__(self, sigma: float = 1.0) -> None:
        if not sigma > 0:
            raise InputError(f"sigma must be > 0; got {sigma!r}")
        self.sigma = float(sigma)

    def __repr__(self) -> str:
        return f"Gaussian(sigma={self.sigma})"

    def log_prob(self, B: Backend, x: Array, outputs: tuple[Array, ...]) -> Array:
        u = (x - outputs[0]) / self.sigma
        D = math.prod(x.shape[1:])
        return -0.5 * B.xp.sum(u * u, axis=_features(x)) - D * (math.log(self.sigma) + 0.5 * math.log(2 * math.pi))

    def mean(self, B: Backend, outputs: tuple[Array, ...]) -> Array:
        return outputs[0]


class GaussianLogScale:
    """``log p(x | μ, log σ) = -½ Σ_j ((x_j - μ_j)/σ_j)² - Σ_j log σ_j - (D/2) log 2π`` (learned σ)."""

    n_outputs = 2

    def __repr__(self) -> str:
        return "GaussianLogScale()"

    def log_prob(self, B: Backend, x: Array, outputs: tuple[Array, ...]) -> Array:
        mu, log_sigma = outputs
        u = (x - mu) * B.xp.exp(-log_sigma)
        D = math.prod(x.shape[1:])
        return -0.5 * B.xp.sum(u * u, axis=_features(x)) - B.xp.sum(log_sigma, axis=_features(x)) - 0.5 * D * math.log(2 * math.pi)

    def mean(self, B: Backend, outputs: tuple[Array, ...]) -> Array:
        return outputs[0]


LIKELIHOODS = {"bernoulli": Bernoulli, "gaussian": Gaussian, "gaussian_logscale": GaussianLogScale}
"""Likelihood names a decoder accepts (the network adapters), with the built-in class each makes."""


def resolve_likelihood(likelihood: str | Likelihood) -> Likelihood:
    """The :class:`Likelihood` named by ``likelihood`` (a key of :data:`LIKELIHOODS`), or the object itself."""
    if isinstance(likelihood, str):
        if likelihood not in LIKELIHOODS:
            raise InputError(f"likelihood must be one of {sorted(LIKELIHOODS)} or a Likelihood object; "
                             f"got {likelihood!r}")
        return LIKELIHOODS[likelihood]()
    if not isinstance(likelihood, Likelihood):
        raise InputTypeError(f"likelihood must be a name or an object with n_outputs, log_prob and mean; "
                             f"got {type(likelihood).__name__}")
    return likelihood
