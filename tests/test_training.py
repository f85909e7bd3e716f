"""Training lowers the held-out negative ELBO on embedded data, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from rhvae.datasets import load
from rhvae.model import RHVAE


def _model(backend, input_dim, latent_dim, hidden):
    reg = rhvae.get_registry()
    name, device = backend
    return RHVAE(name, device=device, input_dim=input_dim, latent_dim=latent_dim,
                 encoder=reg.create("encoder", "mlp", hidden=(hidden,)),
                 decoder=reg.create("decoder", "bernoulli_mlp", hidden=(hidden,)),
                 metric=reg.create("metric", "mlp", hidden=(hidden,)))


def test_held_out_negative_elbo_falls_on_digits(backend):
    x_train, _, x_test, _ = load("digits", n_test=300, seed=0)
    model = _model(backend, 64, 2, 64)
    state = model.init(seed=0)
    state = model.refresh_metric(state, x_train)
    before = -model.elbo(state, x_test)
    state, history = model.fit(state, x_train[:1400], epochs=3, batch_size=100, validation_data=x_test,
                               progress=False)
    after = [-e for e in history["val_elbo"]]
    assert np.all(np.isfinite(history["loss"]))
    assert after[-1] < after[0] < before


@pytest.mark.slow
def test_held_out_negative_elbo_falls_over_5_epochs_on_the_mnist_sample(backend):
    x_train, _, x_test, _ = load("mnist", n_test=1000, seed=0)
    model = _model(backend, 784, 16, 256)
    state, history = model.fit(model.init(seed=0), x_train, epochs=5, batch_size=100,
                               validation_data=x_test, progress=False)
    neg = [-e for e in history["val_elbo"]]
    assert np.all(np.isfinite(history["loss"]))
    assert neg[-1] < neg[0]


def test_a_step_with_a_non_finite_loss_or_gradient_changes_nothing(backend):
    from helpers import small_model
    from rhvae.state import Noise
    from rhvae.tree import flatten

    model = small_model(*backend, input_dim=6, latent_dim=2, hidden=5)
    x = np.random.default_rng(0).uniform(0.1, 0.9, size=(4, 6))
    state = model.init(seed=0, centroids=x)
    bad = Noise(np.full((4, 2), np.nan), np.zeros((4, 2)))
    after, loss = model.step(state, x, noise=bad)
    assert np.isnan(loss)
    to_np = model.backend.to_numpy
    before = dict(flatten(state.params))
    for k, a in flatten(after.params):
        np.testing.assert_array_equal(to_np(a), to_np(before[k]), err_msg=k)
    assert float(to_np(after.opt_state["count"])) == float(to_np(state.opt_state["count"]))
    good, _ = model.step(state, x)
    assert float(to_np(good.opt_state["count"])) == float(to_np(state.opt_state["count"])) + 1


@pytest.mark.parametrize("pred", [True, False])
def test_backend_cond_returns_the_branch_its_predicate_picks(backend, pred):
    """``B.cond`` as the training step uses it: a scalar boolean array, branches returning a
    tuple of a parameter tree and an array."""
    name, device = backend
    B = rhvae.get_registry().create("backend", name, device=device)
    a, b = np.arange(3.0), -np.arange(3.0)
    branch = lambda v: ({"net": {"w": B.asarray(v, "float64")}}, B.asarray(2 * v, "float64"))  # noqa: E731
    tree, array = B.cond(B.xp.asarray(pred), lambda: branch(a), lambda: branch(b))
    expected = a if pred else b
    np.testing.assert_array_equal(B.to_numpy(tree["net"]["w"]), expected)
    np.testing.assert_array_equal(B.to_numpy(array), 2 * expected)
