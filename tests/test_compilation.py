"""Compiled JAX functions are traced once per shape: new data, a new state and a padded last
evaluation chunk reuse them."""

from __future__ import annotations

import numpy as np

from helpers import small_model


def _cache_sizes(model) -> dict[str, int]:
    return {name: fn._cache_size() for name, fn in model._compiled.items()}


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
