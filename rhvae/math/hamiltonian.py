"""The Riemannian Hamiltonian ``H(z, ρ) = U(z) + κ(z, ρ)`` for one batch of data.

``U(z) = -log p(x | z) - log p(z)`` and ``κ(z, ρ) = -log N(ρ; 0, G(z))``. Every sample's
``H`` depends only on its own row of ``z`` and ``ρ``, so the gradient of ``Σ_b H_b`` is the
per-sample gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

from rhvae.interfaces import Array, Backend, Decoder, LogPrior, Params
from rhvae.math.metric import LocalMetric, MetricSpec, MetricState, local_metric, momentum_log_prob


def shaped(outputs: tuple[Array, ...], shape: tuple[int, ...]) -> tuple[Array, ...]:
    """Decoder outputs as ``(B, *shape)``: a decoder may return them flat, ``(B, prod(shape))``."""
    return tuple(o if tuple(o.shape[1:]) == shape else o.reshape((o.shape[0], *shape)) for o in outputs)


@dataclass(frozen=True)
class Hamiltonian:
    """``H(z, ρ)`` for data ``x (B, D)`` (or ``(B, *shape)``) under a decoder and a metric state with
    its settings (closed over). ``decoder_params`` holds what the decoder's ``precompute`` made
    of the parameters given, when it defines one: the form every decoder call of the flow takes."""

    B: Backend
    x: Array
    decoder: Decoder
    decoder_params: Params
    prior: LogPrior
    metric_state: MetricState
    spec: MetricSpec

    def __post_init__(self) -> None:
        # a decoder's ``precompute`` runs once here, for all the positions the flow decodes
        precompute = getattr(self.decoder, "precompute", None)
        if precompute is not None:
            object.__setattr__(self, "decoder_params", precompute(self.B, self.decoder_params))

    def log_likelihood(self, z: Array) -> Array:
        """``log p(x | z)``, ``(B,)``."""
        outputs = shaped(self.decoder(self.B, self.decoder_params, z), tuple(self.x.shape[1:]))
        return self.decoder.likelihood.log_prob(self.B, self.x, outputs)

    def potential(self, z: Array) -> Array:
        """``U(z) = -log p(x | z) - log p(z)``, ``(B,)``."""
        return -self.log_likelihood(z) - self.prior.log_prob(self.B, z)

    def metric(self, z: Array) -> LocalMetric:
        """``G⁻¹(z)``, the inverse of its Cholesky factor, ``log det G`` and the centroid weights."""
        return local_metric(self.B, z, self.metric_state, self.spec)

    def kinetic(self, z: Array, rho: Array, metric: LocalMetric | None = None) -> Array:
        """``κ(z, ρ) = ½ (d log 2π + log det G(z)) + ½ ρᵀ G⁻¹(z) ρ``, ``(B,)``."""
        return -momentum_log_prob(self.B, metric if metric is not None else self.metric(z), rho)

    def __call__(self, z: Array, rho: Array) -> Array:
        """``H(z, ρ) = U(z) + κ(z, ρ)``, ``(B,)``."""
        return self.potential(z) + self.kinetic(z, rho)
