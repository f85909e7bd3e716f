"""Compiled JAX functions are traced once per shape: new data, a new state and a padded last
evaluation chunk reuse them. ``torch.compile`` (opt-in) computes what eager torch computes,
and compiles once per shape too."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import avals, small_model
from rhvae.steps import make_train_step


def _cache_sizes(model) -> dict[str, int]:
    return {name: fn._cache_size() for name, fn in model.compiled_functions.items()}


def test_training_steps_and_chunked_evaluation_compile_once(rng):
    model = small_model("jax", input_dim=6, latent_dim=2, hidden=5, K=2, steps=2)
    x = rng.uniform(size=(23, 6))
    state = model.init(seed=0, centroids=x[:4])
    for b in range(3):
        state, _ = model.step(state, x[b * 5:(b + 1) * 5])
    state = model.refresh_metric(state)
    full = model.elbo(state, x, batch_size=10)             # chunks of 10, 10 and a padded 3
    assert _cache_sizes(model) == {"step": 1, "metric": 1, "elbo_terms": 1}
    per_row = model.elbo_terms(state, x).elbo
    np.testing.assert_allclose(full, np.mean(per_row), rtol=1e-5)


def test_the_training_step_never_materialises_a_batch_by_centroid_tensor(rng):
    """Memory stays O(B N + N d²): no intermediate has a (B, N, ...) block with anything after N
    (loop residuals stacked as (K, steps, B, N) are fine: still linear in B N)."""
    import jax

    batch, n_centroids, d = 5, 7, 3
    model = small_model("jax", input_dim=6, latent_dim=d, hidden=11, K=2, steps=2)
    x = rng.uniform(size=(batch, 6))
    state = model.init(seed=0, centroids=rng.uniform(size=(n_centroids, 6)))
    noise = model.draw_noise(batch, None, 0)
    jaxpr = jax.make_jaxpr(make_train_step(model.backend, model.components, model.flow, model.optimizer))(
        state.params, state.opt_state, *model.batch_arrays(state, x, x, noise))
    shapes = [tuple(a.shape) for a in avals(jaxpr.jaxpr) if hasattr(a, "shape")]
    assert any(s[:2] == (batch, n_centroids) for s in shapes)          # the (B, N) weights exist
    offending = [s for s in shapes
                 if any(s[i:i + 2] == (batch, n_centroids) and len(s) > i + 2 for i in range(len(s)))]
    assert not offending, offending


@pytest.mark.slow  # torch.compile of a training step takes 30-60 s on 2 cores
def test_torch_compile_trains_like_eager_and_compiles_once(rng):
    import torch._dynamo

    x = rng.uniform(0.05, 0.95, size=(12, 6))
    models = [small_model("torch", input_dim=6, latent_dim=2, hidden=5, K=2, steps=2, compile=flag)
              for flag in (False, True)]
    states = [m.init(seed=0, centroids=x[:4]) for m in models]
    losses = [[], []]
    for b in range(3):
        for i, m in enumerate(models):
            states[i], loss = m.step(states[i], x[b * 4:(b + 1) * 4])
            losses[i].append(loss)
        if b == 0:
            assert torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0  # the counter counts
            torch._dynamo.utils.counters.clear()  # the first step compiled; later ones must not
    assert not torch._dynamo.utils.counters["stats"]["unique_graphs"], "a step of the same shape recompiled"
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-5)
    eager, compiled = (m.elbo(s, x, seed=1) for m, s in zip(models, states))
    assert compiled == pytest.approx(eager, rel=1e-5)


@pytest.mark.parametrize("flush", [True, False])
def test_torch_functions_flush_subnormals_only_while_they_run(flush):
    """Like XLA, the torch backend's compiled (``B.jit``) functions compute with subnormals flushed
    to zero (a many-fold slowdown otherwise); the thread's mode outside them is left as it was."""
    import torch

    from rhvae_torch.backend import TorchBackend

    tiny = torch.tensor([1e-20], dtype=torch.float32)
    f = TorchBackend(flush_subnormals=flush).jit(lambda x: x * x)   # 1e-40: subnormal in float32
    assert (f(tiny).item() == 0.0) == flush
    assert (tiny * tiny).item() > 0.0                               # gradual underflow outside
