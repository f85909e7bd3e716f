"""The decoder's pull-back metric ``JᵀJ`` against central differences of ``decode``, on both backends."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import small_model


def _numeric_jacobian(model, state, z, h=1e-5):
    columns = []
    for i in range(z.shape[1]):
        e = np.zeros_like(z)
        e[:, i] = h
        columns.append((model.decode(state, z + e) - model.decode(state, z - e)) / (2 * h))
    return np.stack(columns, axis=-1)


@pytest.mark.parametrize("decoder", ["bernoulli_mlp", "gaussian_logscale_mlp"])
def test_pullback_is_the_gram_matrix_of_the_decoder_mean_jacobian(backend, decoder):
    model = small_model(*backend, input_dim=7, latent_dim=3, decoder=decoder, dtype="float64")
    state = model.init(seed=2)
    z = np.random.default_rng(3).standard_normal((5, 3))
    J = _numeric_jacobian(model, state, z)
    G = model.pullback_metric(state, z)
    assert G.shape == (5, 3, 3)
    np.testing.assert_allclose(G, np.einsum("bDi,bDj->bij", J, J), rtol=1e-7, atol=1e-10)
    assert np.all(np.linalg.eigvalsh(G) > -1e-12)


def test_pullback_agrees_across_backends():
    z = np.random.default_rng(4).standard_normal((6, 2))
    out = []
    for name in ("torch", "jax"):
        model = small_model(name, input_dim=9, latent_dim=2, dtype="float64")
        out.append(model.pullback_metric(model.init(seed=5), z))
    np.testing.assert_allclose(out[0], out[1], rtol=1e-12, atol=1e-15)


def test_pullback_checks_the_latent_shape():
    model = small_model("torch", latent_dim=2)
    with pytest.raises(ValueError, match="dimensions"):
        model.pullback_metric(model.init(seed=0), np.zeros((3, 4)))
