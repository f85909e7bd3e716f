"""The sampler: Hamiltonian Monte Carlo on the aggregate posterior or the learned metric's volume element.

Three targets (``target=`` of :meth:`rhvae.RHVAE.sample`), with ``A(z) = a Σ_i M_i w_i(z)``,
``G⁻¹ = A + λI`` and ``w_i = exp(-‖z - c_i‖²/T²)``:

- ``"volume"``, ``π(z) ∝ √det G⁻¹(z)`` (Chadebec & Allassonnière's data-augmentation sampler;
  pythae's ``RHVAESampler``). Far from every centroid ``G⁻¹ → λI``: the density tends to the
  constant ``λ^{d/2}`` and the target is improper; a chain that leaves the data drifts freely.
  With ``s_i = tr(G M_i) w_i``, ``∇ log π = -(a/T²) [z Σ_i s_i - Σ_i s_i c_i]``.
- ``"centroids"``, ``π(z) ∝ √det A(z)``: the same volume element without the
  regulariser ``λI``, which is there to keep ``G`` finite, not to describe the data. It is
  proper: ``det A ≤ (tr A / d)^d`` and ``(Σ_i x_i)^p ≤ N^{p-1} Σ_i x_i^p`` for ``p = d/2 ≥ 1``
  (``√`` of a sum below the sum of ``√`` for ``d = 1``) bound it by a sum of Gaussians in ``z``.
  It vanishes away from the centroids and equals the ``"volume"`` target up to ``O(λ/‖A‖)`` near
  them. Computed with the nearest centroid factored out: ``A = a e^{m} Ã``,
  ``m = max_i log w_i``, ``Ã = Σ_i M_i e^{log w_i - m}`` (``⪰ M_nearest``: never singular, never
  underflowing), ``log π = ½ (d m + log det Ã) + const`` and, with ``s̃_i = tr(Ã⁻¹ M_i) e^{log w_i - m}``,
  ``∇ log π = -(1/T²) [z Σ_i s̃_i - Σ_i s̃_i c_i]``.

- ``"posterior"`` (the default), ``π(z) = (1/N) Σ_i N(z; c_i, diag σ_i²)``: the aggregate
  posterior of the centroid data, ``c_i = μ(x_i)`` and ``σ_i = σ(x_i)`` from the encoder: where
  the decoder was trained to decode. Proper and data-concentrated by construction. The
  geometric targets above concentrate on the few centroids whose ``M_i`` is largest (a trained
  model's ``M_i`` span many orders of magnitude), which decode to atypical images
  (``docs/index.md``, "What the sampler buys"). With ``s_i = σ_i⁻²`` and responsibilities
  ``r_i(z) ∝ N(z; c_i, diag σ_i²)``: ``log π = logsumexp_i(-½ Σ_k s_ik (z_k - c_ik)² - Σ_k log σ_ik)
  - log N - (d/2) log 2π`` and ``∇ log π = Σ_i r_i s_i ⊙ (c_i - z)``, in ``O(B N d)`` time and
  memory. Its chains start at exact draws ``c_i + σ_i ⊙ ξ``, so they start in equilibrium,
  which the diagnostics then confirm.

One transition is ``n_lf`` Euclidean leapfrog steps of size ``ε`` on ``U = -log π`` with unit
momentum, then a Metropolis correction ``accept ⟺ log u < H(z, p) - H(z', p')``, per chain: the
chain is exactly invariant for ``π`` whatever ``ε`` (Neal 2011). ``ε`` may differ per chain.

Step-size adaptation (:class:`DualAveraging`; Hoffman & Gelman 2014, Alg. 5, as Stan and
BlackJAX do): during warm-up one ``ε``, shared by the chains, follows their mean acceptance
probability toward a target rate; then it is frozen at its averaged value, so the transitions
kept are those of a fixed, exact kernel. (One step size per chain, driven by that chain's own
acceptance probability, never settles: ``log ε`` keeps swinging by about ``σ_α/γ`` nats, with
``σ_α ≈ 0.3`` the spread of a single acceptance probability.)

Tempering (Neal 2011, "MCMC using Hamiltonian dynamics" §5.7): with ``h = ⌊n_lf/2⌋``, the
momentum is multiplied by ``√α`` before each of the first ``h`` steps and divided by ``√α``
after each of the last ``h``, ``α = β0^(-1/h)``: the chain is heated to inverse temperature
``β0`` mid-trajectory, which carries it across low-volume gaps between clusters. The map stays
volume-preserving and reversible, so the Metropolis step keeps the target exact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from rhvae.errors import InputError
from rhvae.interfaces import Array, Backend
from rhvae.math.metric import (MetricSpec, MetricState, centroid_log_weights, factorize, local_metric, metric_tensor,
                               packed_matrices, unpack_symmetric, weighted_gradient)

LogDensity = Callable[[Backend, Array], tuple[Array, Array]]
"""A target: ``(B, z (B, d)) -> (log π(z) (B,), ∇ log π(z) (B, d))``, up to a constant."""


class VolumeTarget(NamedTuple):
    """``π ∝ √det G⁻¹``: the frozen metric that defines it, and its settings (improper)."""

    state: MetricState
    spec: MetricSpec

    def __call__(self, B: Backend, z: Array) -> tuple[Array, Array]:
        return log_volume_and_grad(B, self, z)


class CentroidTarget(NamedTuple):
    """``π ∝ √det(G⁻¹ - λI)``, the volume the centroids support (proper); see the module notes."""

    state: MetricState
    spec: MetricSpec

    def __call__(self, B: Backend, z: Array) -> tuple[Array, Array]:
        return log_centroid_volume_and_grad(B, self, z)


class PosteriorTarget(NamedTuple):
    """``π(z) = (1/N) Σ_i N(z; c_i, diag σ_i²)``, the aggregate posterior of the centroid data (proper)."""

    state: MetricState
    spec: MetricSpec

    def __call__(self, B: Backend, z: Array) -> tuple[Array, Array]:
        return log_posterior_and_grad(B, self, z)


TARGETS = {"posterior": PosteriorTarget, "centroids": CentroidTarget, "volume": VolumeTarget}


def log_posterior_and_grad(B: Backend, target: PosteriorTarget, z: Array) -> tuple[Array, Array]:
    """``(log π(z), ∇ log π(z))`` of the aggregate posterior, ``(B,)`` and ``(B, d)``. The squared
    distances ``Σ_k s_ik (z_k - c_ik)²`` are formed from the differences, not expanded into
    ``z² · s - 2 z · (s c) + s · c²`` (which cancels catastrophically in float32 for small ``σ``);
    memory ``O(B N d)``."""
    xp, c, log_sigma = B.xp, target.state.centroids, target.state.log_sigma
    s = xp.exp(-2.0 * log_sigma)                                            # (N, d)
    sc = s * c
    diff = z[:, None, :] - c[None, :, :]                                    # (B, N, d)
    quad = xp.sum(diff * diff * s[None], axis=-1)
    log_comp = -0.5 * quad - xp.sum(log_sigma, axis=-1)                     # (B, N)
    d, n = z.shape[-1], c.shape[0]
    total = B.logsumexp(log_comp, axis=-1)                                  # (B,)
    r = xp.exp(log_comp - total[:, None])                                   # responsibilities
    return total - math.log(n) - 0.5 * d * math.log(2.0 * math.pi), xp.matmul(r, sc) - z * xp.matmul(r, s)


def log_volume_and_grad(B: Backend, target: VolumeTarget, z: Array) -> tuple[Array, Array]:
    """``(½ log det G⁻¹(z), its gradient)``, ``(B,)`` and ``(B, d)``."""
    metric = local_metric(B, z, target.state, target.spec)
    return -0.5 * metric.logdet_G, weighted_gradient(B, z, metric_tensor(B, metric), metric, target.state,
                                                     target.spec)


def log_centroid_volume_and_grad(B: Backend, target: CentroidTarget, z: Array) -> tuple[Array, Array]:
    """``(½ log det A(z) - (d/2) log a, its gradient)`` for ``A = a Σ_i M_i w_i``, ``(B,)`` and
    ``(B, d)``, with the nearest centroid factored out (module notes). Sums over all ``N``
    centroids at once (memory ``O(B N)``)."""
    xp, state, spec = B.xp, target.state, target.spec
    log_w = centroid_log_weights(B, z, state.centroids, spec.T)
    m = xp.amax(log_w, axis=-1, keepdims=True)
    w = xp.exp(log_w - m)  # the nearest centroid has weight 1
    d = z.shape[-1]
    factor = factorize(B, unpack_symmetric(B, xp.matmul(w, packed_matrices(B, state)), d), w)
    # ∇ ½ log det A = -(1/T²)[z Σ s̃_i - Σ s̃_i c_i], s̃_i = tr(Ã⁻¹ M_i) w̃_i: the volume gradient with a = 1
    # (the scale a and the factor e^m cancel), on the un-chunked weights w̃
    grad = weighted_gradient(B, z, metric_tensor(B, factor), factor, state, spec._replace(reduction="sum"))
    return 0.5 * (d * m[:, 0] - factor.logdet_G), grad  # logdet_G of the factor is log det Ã⁻¹


def tempering_factors(n_lf: int, beta0: float) -> tuple[np.ndarray, np.ndarray]:
    """Momentum factors before and after each leapfrog step: ``√α`` before steps ``< h``,
    ``1/√α`` after steps ``≥ n_lf - h``, 1 otherwise; ``h = ⌊n_lf/2⌋``, ``α = β0^(-1/h)``."""
    before, after = np.ones(n_lf), np.ones(n_lf)
    h = n_lf // 2
    if beta0 != 1.0:
        if h == 0:
            raise InputError(f"tempering (beta0={beta0}) needs n_lf >= 2 leapfrog steps; got n_lf={n_lf}")
        root_alpha = beta0 ** (-0.5 / h)
        before[:h], after[n_lf - h:] = root_alpha, 1.0 / root_alpha
    return before, after


def trajectory(B: Backend, target: LogDensity, z: Array, momentum: Array, eps: float | Array,
               before: Array, after: Array, start: tuple[Array, Array] | None = None) -> tuple[Array, Array, Array]:
    """``len(before)`` leapfrog steps on ``U = -log π``, momentum scaled by ``before[k]`` and ``after[k]``
    around step ``k``; ``eps`` a number or one step size per chain ``(B, 1)``; reversible: from
    ``(z', -p')`` it returns to ``(z, -p)``. ``start``: ``target(B, z)`` when known. Returns
    ``(z', p', log π(z'))``."""
    log_p, grad = target(B, z) if start is None else start

    def step(k, carry):
        zz, p, g, _ = carry
        p = p * before[k] + 0.5 * eps * g
        zz = zz + eps * p
        lp, g = target(B, zz)
        return zz, (p + 0.5 * eps * g) * after[k], g, lp

    z1, p1, _, log_p1 = B.fori_loop(0, before.shape[0], step, (z, momentum, grad, log_p))
    return z1, p1, log_p1


def hmc_transition(B: Backend, target: LogDensity, z: Array, momentum: Array, log_u: Array,
                   eps: float | Array, n_lf: int, beta0: float = 1.0) -> tuple[Array, Array, Array]:
    """One HMC transition per chain: ``(z (B, d), momentum (B, d) ~ N(0, I), log_u (B,) = log U(0, 1))``
    to ``(z_next, accepted, accept_prob)``: ``accepted`` 1.0 or 0.0 per chain and
    ``accept_prob = min(1, exp(H - H'))`` (0 where the trajectory is not finite), the statistic
    step-size adaptation follows. ``eps``: a number or ``(B,)``, one per chain; tempered when
    ``beta0 < 1``."""
    xp = B.xp
    if not isinstance(eps, (int, float)):
        eps = eps[:, None]
    before, after = (B.constant(f, z.dtype) for f in tempering_factors(n_lf, beta0))
    start = target(B, z)
    z1, p1, log_p1 = trajectory(B, target, z, momentum, eps, before, after, start)
    h0 = -start[0] + 0.5 * xp.sum(momentum * momentum, axis=-1)
    h1 = -log_p1 + 0.5 * xp.sum(p1 * p1, axis=-1)
    log_ratio = h0 - h1
    finite = xp.isfinite(log_ratio) & xp.all(xp.isfinite(z1), axis=-1)
    accept = finite & (log_u < log_ratio)
    ones, zeros = xp.ones_like(log_u), xp.zeros_like(log_u)
    prob = xp.where(finite, xp.exp(xp.clip(xp.where(finite, log_ratio, zeros), None, 0.0)), zeros)
    return xp.where(accept[:, None], z1, z), xp.where(accept, ones, zeros), prob


class DualAveraging:
    """A step size by dual averaging (Hoffman & Gelman 2014, Alg. 5), in numpy (any shape: one
    adaptation per entry).

    With ``μ = log(10 ε0)``, after the ``m``-th acceptance probabilities ``α_m``:
    ``H̄_m = (1 - 1/(m + t0)) H̄_{m-1} + (δ - α_m)/(m + t0)``, ``log ε_m = μ - √m H̄_m / γ``,
    ``log ε̄_m = m^{-κ} log ε_m + (1 - m^{-κ}) log ε̄_{m-1}``. ``step`` is the ``ε`` to use next;
    ``final`` the averaged ``ε̄`` to freeze after warm-up. Defaults ``γ = 0.05, t0 = 10, κ = 0.75``
    (Stan's).
    """

    def __init__(self, eps0: float | np.ndarray, target: float, gamma: float = 0.05, t0: float = 10.0,
                 kappa: float = 0.75) -> None:
        self.mu = np.log(10.0 * np.asarray(eps0, dtype=float))
        self.target, self.gamma, self.t0, self.kappa = float(target), gamma, t0, kappa
        self.m, self.h_bar = 0, np.zeros_like(self.mu)
        self.log_eps, self.log_eps_bar = np.log(np.asarray(eps0, dtype=float)), np.zeros_like(self.mu)

    @property
    def step(self) -> np.ndarray:
        return np.exp(self.log_eps)

    @property
    def final(self) -> np.ndarray:
        return np.exp(self.log_eps_bar) if self.m else self.step

    def update(self, accept_prob: float | np.ndarray) -> np.ndarray:
        """Take the acceptance probabilities of the transition just run; return the next ``ε``."""
        self.m += 1
        m, w = self.m, 1.0 / (self.m + self.t0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target - np.nan_to_num(accept_prob, nan=0.0))
        self.log_eps = self.mu - math.sqrt(m) / self.gamma * self.h_bar
        eta = m ** -self.kappa
        self.log_eps_bar = eta * self.log_eps + (1.0 - eta) * self.log_eps_bar
        return self.step
