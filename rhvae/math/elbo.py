"""The tempered Hamiltonian ELBO of the RHVAE (DESIGN §2).

``log p̄ = p1 log p(x|z_K) + p2 log N(ρ_K; 0, G(z_K)) + p3 log p(z_K)``
``log q̄ = q1 log q(z0|x) + q2 log N(ρ0; 0, G(z0)/β0) - q3 (d/2) log(β0/β_K)``
``ELBO = mean_b(log p̄ - log q̄)``

with ``z0 = μ + σ ⊙ ε``, ``ρ0 = γ/√β0``, ``γ ~ N(0, G(z0))``. The last term is the log-Jacobian
of the tempering rescalings (``Π_k √(β_{k-1}/β_k) = √(β0/β_K)``; the leapfrog preserves
volume), so with unit prefactors ``log q̄ = log q(z0|x) + log N(γ; 0, G(z0))``.

The flow from ``z0`` to ``z_K`` and its ρ0 term come from the model's :class:`Integrator`
component: the paper's (:class:`rhvae.math.leapfrog.GeneralizedLeapfrog`, ``"implicit"``) or
AutoEncoderToolkit.jl's (:class:`rhvae.math.aetk.FrozenLeapfrog`, ``"aetk"``: ``log N(ρ0; 0,
G(z0))`` as the ρ0 term and ``(d/2) log β0`` as the last one).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from rhvae.interfaces import Array, Backend, Decoder, Encoder, GradH, Integrator, LogPrior, MetricNet, Params
from rhvae.math.hamiltonian import Hamiltonian
from rhvae.math.metric import bounded_factor, MetricSpec, MetricState, metric_state, momentum_log_prob


class Components(NamedTuple):
    """The networks and pieces one RHVAE is made of."""

    encoder: Encoder
    decoder: Decoder
    metric: MetricNet
    prior: LogPrior
    grad_h: GradH
    integrator: Integrator


class Flow(NamedTuple):
    """Static settings of the flow: leapfrog, tempering, metric and ELBO weights.

    ``log_beta_ratio`` is the log-Jacobian factor of the last ``log q̄`` term, as the integrator
    defines it (:meth:`Integrator.log_beta_ratio`: ``log(β0/β_K)`` for the paper's).
    """

    eps: float
    steps: int
    beta0: float
    momentum_scales: tuple[float, ...]
    log_beta_ratio: float
    metric: MetricSpec
    logp_prefactor: tuple[float, float, float]
    logq_prefactor: tuple[float, float, float]
    truncate_gradients: bool = False
    guard_fixed_point: bool = True


def momentum_scales(betas: np.ndarray) -> tuple[float, ...]:
    """``s_k = √(β_{k-1} / β_k)``, ``k = 1..K``: the momentum rescaling after each leapfrog step
    (plain floats, so compiled steps see constants, not arrays captured from numpy)."""
    return tuple(float(s) for s in np.sqrt(betas[:-1] / betas[1:]))


def encoder_log_prob(B: Backend, z: Array, mu: Array, log_sigma: Array) -> Array:
    """``log q(z | x) = -½ Σ ((z-μ)/σ)² - Σ log σ - (d/2) log 2π``, ``(B,)``."""
    xp = B.xp
    u = (z - mu) * xp.exp(-log_sigma)
    d = z.shape[-1]
    return -0.5 * xp.sum(u * u, axis=-1) - xp.sum(log_sigma, axis=-1) - 0.5 * d * math.log(2 * math.pi)


def metric_from_data(B: Backend, parts: Components, params: Params, x: Array,
                     mu: Array | None = None, M_max: float | None = None) -> MetricState:
    """Centroids ``c_i = μ(x_i)`` and ``M_i = L(x_i) L(x_i)ᵀ`` for centroid data ``x (N, D)``.

    ``mu``: the encoder means of ``x`` when the caller has them already.
    """
    if mu is None:
        mu, _ = parts.encoder(B, params["encoder"], x)
    diag, lower = parts.metric(B, params["metric"], x)
    return metric_state(B, mu, bounded_factor(B, diag, lower, M_max))


class ElboTerms(NamedTuple):
    """Per-sample terms of the ELBO, each ``(B,)``, and the endpoints of the flow."""

    elbo: Array
    log_px: Array
    log_p_rho: Array
    log_pz: Array
    log_qz: Array
    log_q_rho: Array
    z0: Array
    rho0: Array
    zK: Array
    rhoK: Array


def elbo_terms(B: Backend, parts: Components, flow: Flow, params: Params, metric: MetricState,
               x_in: Array, x_out: Array, eps_noise: Array, xi_noise: Array,
               encoded: tuple[Array, Array] | None = None) -> ElboTerms:
    """Run encoder, initial momentum and tempered flow; return every ELBO term per sample.

    The flow targets ``p(z | x_out)`` (the Hamiltonian's likelihood uses ``x_out``); the encoder
    sees ``x_in`` (``encoded``: its ``(μ, log σ)`` when already computed). ``eps_noise`` and
    ``xi_noise`` are the ``N(0, I)`` draws for ``z0`` and ``γ``.
    """
    xp = B.xp
    mu, log_sigma = parts.encoder(B, params["encoder"], x_in) if encoded is None else encoded
    z0 = mu + xp.exp(log_sigma) * eps_noise
    H = Hamiltonian(B, x_out, parts.decoder, params["decoder"], parts.prior, metric, flow.metric)
    ends = parts.integrator.flow(B, H, parts.grad_h, flow, z0, xi_noise, B.constant(flow.momentum_scales, z0.dtype))

    d = z0.shape[-1]
    log_p_rho = momentum_log_prob(B, ends.metricK, ends.rhoK)
    log_pz = parts.prior.log_prob(B, ends.zK)
    log_qz = encoder_log_prob(B, z0, mu, log_sigma)
    p1, p2, p3 = flow.logp_prefactor
    q1, q2, q3 = flow.logq_prefactor
    log_p = p1 * ends.log_px + p2 * log_p_rho + p3 * log_pz
    log_q = q1 * log_qz + q2 * ends.log_q_rho - q3 * 0.5 * d * flow.log_beta_ratio
    return ElboTerms(log_p - log_q, ends.log_px, log_p_rho, log_pz, log_qz, ends.log_q_rho, z0, ends.rho0,
                     ends.zK, ends.rhoK)


def log_importance_weight(terms: ElboTerms, flow: Flow) -> Array:
    """``log p(x, z_K, ρ_K) - log q(z_K, ρ_K | x)`` per sample: the ELBO terms with every prefactor 1,
    ``log p(x|z_K) + log N(ρ_K|z_K) + log p(z_K) - log q(z0|x) - log q(ρ0) + (d/2) log(β0/β_K)``."""
    d = terms.z0.shape[-1]
    return (terms.log_px + terms.log_p_rho + terms.log_pz - terms.log_qz - terms.log_q_rho
            + 0.5 * d * flow.log_beta_ratio)


def loss(B: Backend, parts: Components, flow: Flow, params: Params, centroid_x: Array | None,
         x_in: Array, x_out: Array, eps_noise: Array, xi_noise: Array) -> Array:
    """``-ELBO`` with the metric built from ``centroid_x`` under the current parameters.

    ``centroid_x=None`` is pythae's "batch" mode: the batch ``x_in`` is its own centroid set, and
    its encoder pass serves both the centroids and ``z0``. Gradients flow through the whole
    flow, the centroids ``μ(x_i)`` and the ``M_i``.
    """
    if centroid_x is None:
        encoded = parts.encoder(B, params["encoder"], x_in)
        metric = metric_from_data(B, parts, params, x_in, mu=encoded[0], M_max=flow.metric.M_max)
    else:
        encoded, metric = None, metric_from_data(B, parts, params, centroid_x, M_max=flow.metric.M_max)
    terms = elbo_terms(B, parts, flow, params, metric, x_in, x_out, eps_noise, xi_noise, encoded)
    return -B.xp.mean(terms.elbo)
