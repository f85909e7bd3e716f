"""Generation: the HMC sampler (on the aggregate posterior or the learned volume element, :mod:`rhvae.math.sampler`)
and the prior, decoded. Functions of a model and its state; :class:`rhvae.RHVAE` exposes each as a
method of the same name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from tqdm.auto import tqdm

from rhvae import seeds, validation
from rhvae.diagnostics import chain_diagnostics
from rhvae.errors import InputError
from rhvae.math import sampler as sampler_math
from rhvae.state import Samples

if TYPE_CHECKING:
    from rhvae.model import RHVAE
    from rhvae.state import TrainState

JITTER = 0.2
"""Each transition of each chain draws its step as ``ε·U(1 - 0.2, 1 + 0.2)``, independently of the
chain's state (so every transition is still exact): with a fixed step and trajectory length the
acceptance rate is not monotone in ``ε`` (trajectories that resonate with the target's scales),
and step-size adaptation could settle far from its target."""


def sample(model: RHVAE, state: TrainState, n: int, *, transitions: int = 100, warmup: int = 300,
           eps: float = 0.05, n_lf: int = 10, target_accept: float = 0.65, target: str = "posterior",
           beta0: float = 1.0, seed: int = 0, progress: bool = True) -> Samples:
    """``n`` draws from the HMC sampler on a target built from the frozen metric state.

    ``n`` chains start at centroids drawn from ``seed`` (``"posterior"``: at exact draws of the
    target, ``c_i + σ_i ⊙ ξ``). The first ``warmup`` transitions adapt
    the step size, shared by the chains, from ``eps`` toward the acceptance rate
    ``target_accept`` (dual averaging on the chains' mean acceptance probability), then freeze
    it; the next ``transitions`` are kept, and the final points are decoded (``warmup=0``: a
    fixed ``eps`` throughout). Each transition jitters the step by ±20 % (uniform, per chain).
    ``target``: ``"posterior"``, the aggregate posterior ``(1/N) Σ_i N(c_i, diag σ_i²)`` of the
    centroid data (proper; the best samples measured), ``"centroids"``, ``π ∝ √det(G⁻¹ - λI)``
    (the learned volume element, proper: it vanishes away from the data), or ``"volume"``,
    ``π ∝ √det G⁻¹`` (pythae's; improper, with a ``λ^{d/2}`` plateau).
    ``beta0 < 1`` tempers each trajectory, heating it to inverse temperature ``beta0`` at its
    middle (exact: the Metropolis step still applies). See :mod:`rhvae.math.sampler`.
    """
    n = validation.check_count("n", n)
    transitions = validation.check_count("transitions", transitions)
    warmup = validation.check_count("warmup", warmup, minimum=0)
    n_lf = validation.check_count("n_lf", n_lf)
    eps = validation.check_positive("eps", eps)
    beta0 = validation.check_positive("beta0", beta0)
    target_accept = validation.check_positive("target_accept", target_accept)
    if beta0 > 1:
        raise InputError(f"beta0 must lie in (0, 1]; got {beta0!r}")
    if target_accept >= 1:
        raise InputError(f"target_accept must lie in (0, 1); got {target_accept!r}")
    sampler_math.tempering_factors(n_lf, beta0)  # checks n_lf >= 2 when tempering
    metric, spec, B, d = model.frozen_metric(state), model.metric_spec, model.backend, model.config.latent_dim
    make_target = _target(metric, target)
    fn = model.compile_once(f"hmc:{target}:{n_lf}:{beta0!r}", lambda: lambda m, z, p, lu, e: sampler_math.hmc_transition(
        B, make_target(m, spec), z, p, lu, e, n_lf, beta0))
    rng = np.random.default_rng((validation.check_seed("seed", seed), seeds.SAMPLING))
    centroids = B.to_numpy(metric.centroids)
    start = rng.integers(centroids.shape[0], size=n)
    z = centroids[start]
    if target == "posterior":  # an exact draw of the target: the chains start in equilibrium
        z = z + np.exp(B.to_numpy(metric.log_sigma)[start]) * rng.standard_normal((n, d))
    z = model.to_backend(z)
    adapt = sampler_math.DualAveraging(eps, target_accept)
    step, accepted, trace = adapt.step, np.zeros(n), np.empty((transitions, n, d))
    for t in tqdm(range(warmup + transitions), desc="sampling", disable=not progress, leave=False):
        momentum, log_u = rng.standard_normal((n, d)), np.log(rng.uniform(size=n))
        jittered = step * rng.uniform(1.0 - JITTER, 1.0 + JITTER, size=n)
        z, acc, prob = fn(metric, z, *map(model.to_backend, (momentum, log_u, jittered)))
        if t < warmup:  # one step size for all chains, from their mean acceptance probability
            adapt.update(float(np.mean(B.to_numpy(prob))))
            step = adapt.step if t < warmup - 1 else adapt.final  # frozen for the kept transitions
        else:
            accepted += B.to_numpy(acc)
            trace[t - warmup] = B.to_numpy(z)
    z_np = trace[-1]
    per_chain = accepted / transitions
    return Samples(model.decode(state, z_np), z_np, float(per_chain.mean()), per_chain, float(step),
                   trace, chain_diagnostics(trace), target)


def log_target(model: RHVAE, state: TrainState, z: np.ndarray, target: str = "posterior") -> np.ndarray:
    """``log π(z)`` of the sampler's ``target`` under the frozen metric, up to a constant; ``(B,)``."""
    B, metric = model.backend, model.frozen_metric(state)
    make = _target(metric, target)
    fn = model.compile_once(f"log_target:{target}", lambda: lambda m, zb: make(m, model.metric_spec)(B, zb)[0])
    return B.to_numpy(fn(metric, model.to_backend(model.latent_points(z))))


def sample_prior(model: RHVAE, state: TrainState, n: int, *, seed: int = 0) -> Samples:
    """``n`` decoded draws ``z ~ N(0, I)``: the plain VAE generator, for comparison."""
    n = validation.check_count("n", n)
    rng = np.random.default_rng((validation.check_seed("seed", seed), seeds.SAMPLING))
    z = rng.standard_normal((n, model.config.latent_dim))
    return Samples(model.decode(state, z), z, float("nan"))


def _target(metric, target: str):
    """The target class named ``target``, checked against the frozen ``metric`` it will read."""
    if target not in sampler_math.TARGETS:
        raise InputError(f"target must be one of {tuple(sampler_math.TARGETS)}; got {target!r}")
    if target == "posterior" and metric.log_sigma is None:
        raise InputError("target='posterior' needs the encoder's scales in the frozen metric, which this state "
                         "(from a checkpoint written before they were kept) lacks: call refresh_metric(state, x) first")
    return sampler_math.TARGETS[target]
