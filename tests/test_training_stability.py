"""Training is stable where rhvae 0.1 was not (docs/stability.md): 40 steps at latent 2 on the MNIST
sample, with the networks, bound and guard of the defaults, end without a spike and above a
stated held-out ELBO, on both backends; the same run under rhvae 0.1's numerics does not."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from rhvae.datasets import load
from rhvae.errors import TrainingDivergedError
from rhvae.presets import rhvae_0_1

HELD_OUT_ELBO_BOUND = -235.0
"""Measured after these 40 steps, seeds 0-2: the defaults reach -202.7 to -208.7 on both backends;
rhvae 0.1's numerics end between -262 and -841, with loss spikes up to 2e32 in 3 of the 6 runs."""


def _spikes(losses: np.ndarray, factor: float = 10.0) -> int:
    return sum(int(losses[i] > factor * np.median(losses[:i])) for i in range(1, len(losses)))


def _forty_steps(backend, init: str = "fan_in", **hyper):
    name, device = backend
    reg = rhvae.get_registry()
    x_train, _, x_test, _ = load("mnist", n_test=200, seed=0)
    model = rhvae.RHVAE(name, device=device, input_dim=784, latent_dim=2, T=0.4,
                        encoder=reg.create("encoder", "mlp", init=init),
                        decoder=reg.create("decoder", "bernoulli_mlp", init=init),
                        metric=reg.create("metric", "mlp", init=init), **hyper)
    state = model.init(seed=0, centroids=256, data=x_train)
    return model.fit(state, x_train[:4000], epochs=1, batch_size=100, validation_data=x_test, progress=False)


def test_forty_steps_at_latent_2_have_no_spike_and_a_bounded_held_out_elbo(backend):
    _, history = _forty_steps(backend)
    losses = np.asarray(history["loss"])
    assert losses.shape == (40,) and np.all(np.isfinite(losses))
    assert _spikes(losses) == 0, losses
    assert history["val_elbo"][-1] > HELD_OUT_ELBO_BOUND


@pytest.mark.slow
def test_the_same_steps_under_rhvae_0_1_numerics_diverge_or_spike(backend):
    """The failure the first test guards against, reproduced: without the bound and the guard,
    and from Glorot weights, the metric grows about 25-fold per step until the flow blows up."""
    try:
        _, history = _forty_steps(backend, init="glorot", **rhvae_0_1())
    except TrainingDivergedError:
        return
    losses = np.asarray(history["loss"])
    assert _spikes(losses) > 0 or history["val_elbo"][-1] < HELD_OUT_ELBO_BOUND
