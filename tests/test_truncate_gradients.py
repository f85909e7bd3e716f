"""``truncate_gradients=True`` (pythae's cheaper gradient) keeps the loss and changes only the
gradient, identically on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import small_model
from rhvae.state import Noise
from rhvae.testing import normwise_error
from rhvae.tree import flatten


def _loss_and_grad(backend: str, truncate: bool, rng_seed: int = 5):
    rng = np.random.default_rng(rng_seed)
    x = rng.uniform(0.05, 0.95, size=(6, 8))
    noise = Noise(rng.standard_normal((6, 2)), rng.standard_normal((6, 2)))
    model = small_model(backend, input_dim=8, latent_dim=2, hidden=10, dtype="float64", grad_h="analytic",
                        truncate_gradients=truncate, eps=0.1, K=2, steps=2, T=0.9, lam=0.05)
    state = model.init(seed=2, centroids=x[:4])
    loss, grads = model.loss_and_grad(state, x, noise=noise)
    return loss, dict(flatten(grads))


def test_truncation_keeps_the_loss_changes_the_gradient_and_agrees_across_backends():
    full_t, trunc_t, trunc_j = _loss_and_grad("torch", False), _loss_and_grad("torch", True), _loss_and_grad("jax", True)
    assert trunc_t[0] == pytest.approx(full_t[0], rel=1e-13)
    # the decoder and metric act inside the first two sub-steps, so their gradients change
    assert max(normwise_error(trunc_t[1][k], full_t[1][k]) for k in full_t[1]) > 1e-6
    for k in trunc_t[1]:
        assert normwise_error(np.asarray(trunc_j[1][k]), np.asarray(trunc_t[1][k])) < 1e-10, k


def test_truncate_gradients_must_be_a_bool():
    with pytest.raises(TypeError, match="truncate_gradients"):
        small_model("torch", truncate_gradients="yes")
