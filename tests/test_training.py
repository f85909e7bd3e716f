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
