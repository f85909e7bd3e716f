"""Evaluation under the frozen metric: the ELBO's terms, the held-out ELBO and the importance-sampled
negative log-likelihood. Functions of a model and its state; :class:`rhvae.RHVAE` exposes each as
a method of the same name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from rhvae import seeds, steps, validation
from rhvae.data import padded_chunks
from rhvae.math import elbo as elbo_math
from rhvae.state import Noise

if TYPE_CHECKING:
    from rhvae.model import RHVAE
    from rhvae.state import TrainState


def elbo_terms(model: RHVAE, state: TrainState, x: Any, x_out: Any | None = None, *,
               noise: Noise | None = None, seed: int = 0) -> elbo_math.ElboTerms:
    """Every per-sample ELBO term and the flow's endpoints, as numpy, under the frozen metric."""
    x_in, x_o = model.data_arrays(x, x_out)
    return _terms(model, state, x_in, x_o, model.draw_noise(x_in.shape[0], noise, (seed, seeds.EVALUATION)))


def _terms(model: RHVAE, state: TrainState, x_in: np.ndarray, x_o: np.ndarray, noise: Noise) -> elbo_math.ElboTerms:
    """:func:`elbo_terms` on rows and noise already checked."""
    B = model.backend
    fn = model.compile_once("elbo_terms", lambda: steps.make_elbo_terms(B, model.components, model.flow))
    terms = fn(state.params, model.frozen_metric(state), *map(model.to_backend, (x_in, x_o, noise.eps, noise.xi)))
    return elbo_math.ElboTerms(*(B.to_numpy(t) for t in terms))


def elbo(model: RHVAE, state: TrainState, x: Any, x_out: Any | None = None, *, noise: Noise | None = None,
         seed: int = 0, batch_size: int = 500) -> float:
    """The held-out ELBO ``mean_b(log p̄ - log q̄)`` under the frozen metric, ``batch_size`` rows
    at a time: ``x`` may be any source :class:`rhvae.data.Rows` reads (a memory-mapped ``.npy``).
    Row ``i``'s noise does not depend on ``batch_size``."""
    batch_size = validation.check_count("batch_size", batch_size)
    rows_in, rows_out = model.data_pair(x, x_out)
    n, d = len(rows_in), model.config.latent_dim
    noise = model.draw_noise(n, noise, ()) if noise is not None else None
    streams = seeds.noise_streams((seed, seeds.EVALUATION))  # row i gets the draws draw_noise would give it
    total = 0.0
    for idx, kept in padded_chunks(n, batch_size):
        chunk = (Noise(noise.eps[idx], noise.xi[idx]) if noise is not None
                 else Noise(*(rng.standard_normal((idx.size, d)) for rng in streams)))
        x_chunk = rows_in.read(idx)
        terms = _terms(model, state, x_chunk, rows_out.read_as_target(idx, x_chunk, rows_in), chunk)
        total += float(np.sum(terms.elbo[:kept], dtype=np.float64))
    return total / n


def nll(model: RHVAE, state: TrainState, x: Any, x_out: Any | None = None, *, n_samples: int = 500,
        batch_size: int = 5000, seed: int = 0, progress: bool = True) -> np.ndarray:
    """Importance-sampled ``-log p(x)`` per row, the RHVAE's own flow as the proposal.

    Each ELBO term ``log p̄ - log q̄`` is the log-weight ``log p(x, z_K, ρ_K) - log q(z_K, ρ_K | x)``
    of an importance sample on the extended space (the flow preserves volume up to the
    tempering Jacobian that ``log q̄`` carries), so
    ``log p(x) ≈ logsumexp_s(log w_s) - log S``; biased low by ``O(Var w / S)``. The weights
    take every term with prefactor 1 whatever the model's ``logp_prefactor``/``logq_prefactor``
    (:func:`rhvae.math.elbo.log_importance_weight`): with other prefactors the training
    objective is not a bound, and its terms are not a density ratio.
    ``batch_size`` bounds the rows × samples evaluated at once.
    """
    x_in, x_o = model.data_arrays(x, x_out)
    n_samples = validation.check_count("n_samples", n_samples)
    rows = max(1, validation.check_count("batch_size", batch_size) // n_samples)
    rng = np.random.default_rng((validation.check_seed("seed", seed), seeds.NLL))
    d = model.config.latent_dim
    out = []
    chunks = padded_chunks(x_in.shape[0], rows)
    for idx, kept in tqdm(chunks, total=len(chunks), desc="NLL", disable=not progress, leave=False):
        idx = np.repeat(idx, n_samples)
        noise = Noise(rng.standard_normal((idx.size, d)), rng.standard_normal((idx.size, d)))
        terms = _terms(model, state, x_in[idx], x_o[idx], noise)
        log_w = elbo_math.log_importance_weight(terms, model.flow).astype(np.float64)
        log_w = log_w.reshape(-1, n_samples)[:kept]
        top = log_w.max(axis=1, keepdims=True)
        out.append(-(top[:, 0] + np.log(np.mean(np.exp(log_w - top), axis=1))))
    return np.concatenate(out)
