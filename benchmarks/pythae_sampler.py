"""pythae 0.1.2's ``RHVAESampler`` run on an rhvae model, for comparisons on the same trained model.

The rhvae model's decoder weights go into pythae's default MLP decoder (``Decoder_AE_MLP``: one
hidden layer of 512, sigmoid output: the same network as rhvae's ``bernoulli_mlp`` with
``hidden=(512,)``), and its frozen metric state (centroids ``c_i`` and matrices ``M_i``, the
same ``G⁻¹`` that rhvae samples from) into pythae's ``M``/``centroids`` queues, so pythae's
``update()`` builds exactly rhvae's ``G⁻¹(z) = Σ_i M_i exp(-‖z - c_i‖²/T²) + λI``. pythae's
sampler then runs with its own defaults: chains started on random centroids, 100 transitions of
15 leapfrog steps of 0.03 on ``log √det G⁻¹`` (the improper volume target), no warm-up.
"""

from __future__ import annotations

import numpy as np


def _writable(model, array) -> np.ndarray:
    """A float32 numpy copy of a backend array (JAX hands out read-only views, which torch warns about)."""
    return np.array(model.backend.to_numpy(array), dtype=np.float32)


def pythae_rhvae_sampler(model, state, n: int, seed: int = 0) -> np.ndarray:
    """``n`` images ``(n, D)`` from pythae's ``RHVAESampler`` on ``model``'s decoder and frozen metric."""
    import torch
    from pythae.models import RHVAE, RHVAEConfig
    from pythae.samplers import RHVAESampler

    c = model.config
    params = {k: _writable(model, v) for k, v in state.params["decoder"].items()}
    if repr(model.components.decoder) != "MLPDecoder(Bernoulli(), hidden=(512,), activation='relu')":
        raise ValueError(f"pythae's default decoder is a ReLU MLP with one hidden layer of 512 and a sigmoid output; "
                         f"this model's is {model.components.decoder!r}: build it with decoder='bernoulli_mlp', "
                         f"hidden=(512,)")
    torch.manual_seed(seed)
    net = RHVAE(RHVAEConfig(input_dim=(c.input_size,), latent_dim=c.latent_dim, temperature=c.T,
                            regularization=c.lam, reconstruction_loss="bce"))
    hidden, out = net.decoder.layers[0][0], net.decoder.layers[1][0]
    with torch.no_grad():
        for layer, w, b in ((hidden, "hidden0.w", "hidden0.b"), (out, "out0.w", "out0.b")):
            layer.weight.copy_(torch.from_numpy(params[w].T))
            layer.bias.copy_(torch.from_numpy(params[b]))
    metric = state.metric
    net.M.clear()
    net.centroids.clear()
    centroids = _writable(model, metric.centroids)
    net.M.append(torch.from_numpy(_writable(model, metric.M)))
    net.centroids.append(torch.from_numpy(centroids))
    net.update()
    net.eval()
    probe = centroids[:16] + 0.1
    theirs = net.G_inv(torch.as_tensor(probe)).numpy()
    ours = model.G_inv(state, probe)
    if not np.allclose(theirs, ours, rtol=1e-4, atol=1e-5 * np.abs(ours).max()):
        raise AssertionError(f"pythae's G_inv differs from rhvae's by {np.abs(theirs - ours).max():.2e}")
    return RHVAESampler(net).sample(num_samples=n, batch_size=min(n, 500)).reshape(n, -1).numpy()
