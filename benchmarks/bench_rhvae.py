"""Cross-backend benchmarks on the reference workload (``workload.py``), pythae beside them.

Run: ``python -m pytest benchmarks/`` (add ``--benchmark-disable`` for a smoke run, with
``RHVAE_BENCH_SMOKE=1`` for tiny sizes). Compilation (jit tracing, first calls) happens in a
warm-up call outside the timed rounds and is recorded as ``compile_seconds``; every timed call
synchronises (``float(loss)`` waits for the device). pythae cases skip when it is not installed.
"""

from __future__ import annotations

import time

import pytest

import workload as W

BACKENDS = ["torch", "jax"]
METHODS = ["autodiff", "finite", "analytic"]
N_EVAL = [1000, 4000]
N_SCALING = [500, 1000] if W.SMOKE else [500, 1000, 2000, 4000, 8000]
K_SCALING = [1, 2] if W.SMOKE else [1, 2, 5, 10]


def _warm(call) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def _train_step(backend: str, grad_h: str, K: int = 3):
    model = W.model(backend, grad_h, K)
    x = W.data(W.BATCH)
    state = model.init(seed=0)
    return lambda: model.step(state, x)


def _eval_elbo(backend: str, grad_h: str, n_centroids: int):
    model = W.model(backend, grad_h)
    state = model.refresh_metric(model.init(seed=0, centroids=n_centroids, data=W.data(n_centroids, seed=1)))
    x = W.data(W.BATCH, seed=2)
    return lambda: model.elbo(state, x)


@pytest.mark.parametrize("grad_h", METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step(benchmark, record, backend, grad_h):
    step = _train_step(backend, grad_h)
    compile_s = _warm(step)
    benchmark.group = "train"
    benchmark(step)
    record("train", f"{backend}:{grad_h}", W.BATCH, compile_s)


@pytest.mark.parametrize("n_centroids", N_EVAL)
@pytest.mark.parametrize("grad_h", METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_elbo(benchmark, record, backend, grad_h, n_centroids):
    elbo = _eval_elbo(backend, grad_h, n_centroids)
    compile_s = _warm(elbo)
    benchmark.group = f"eval-N{n_centroids}"
    benchmark(elbo)
    record(f"eval-N{n_centroids}", f"{backend}:{grad_h}", W.BATCH, compile_s)


@pytest.mark.parametrize("n_centroids", N_SCALING)
@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_in_centroids(benchmark, record, backend, n_centroids):
    elbo = _eval_elbo(backend, "analytic", n_centroids)
    compile_s = _warm(elbo)
    benchmark.group = "scaling-N"
    benchmark(elbo)
    record("scaling-N", f"{backend}:analytic", W.BATCH, compile_s, N=n_centroids)


@pytest.mark.parametrize("K", K_SCALING)
@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_in_leapfrog_steps(benchmark, record, backend, K):
    step = _train_step(backend, "analytic", K)
    compile_s = _warm(step)
    benchmark.group = "scaling-K"
    benchmark(step)
    record("scaling-K", f"{backend}:analytic", W.BATCH, compile_s, K=K)


# ---------------------------------------------------------------- pythae 0.1.2, same workload


@pytest.fixture
def pythae_rhvae():
    pytest.importorskip("pythae")
    import torch

    torch.manual_seed(0)
    return W.pythae_model()


def test_pythae_train_step(benchmark, record, pythae_rhvae):
    import torch
    from pythae.data.datasets import DatasetOutput

    model, x = pythae_rhvae, DatasetOutput(data=torch.as_tensor(W.data(W.BATCH)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        loss = model(x).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    compile_s = _warm(step)
    benchmark.group = "train"
    benchmark(step)
    record("train", "pythae", W.BATCH, compile_s)


@pytest.mark.parametrize("n_centroids", N_EVAL)
def test_pythae_eval_elbo(benchmark, record, pythae_rhvae, n_centroids):
    """pythae evaluates with the metric its ``update()`` builds from what training stored
    (``M`` and ``centroids``, here the ``N`` centroid rows); its ``G_inv`` forms ``(B, N, d, d)``."""
    import torch
    from pythae.data.datasets import DatasetOutput

    model = pythae_rhvae
    centroid_x = torch.as_tensor(W.data(n_centroids, seed=1))
    with torch.no_grad():
        L = model.metric(centroid_x)["L"]
        model.M.append(L @ L.transpose(1, 2))
        model.centroids.append(model.encoder(centroid_x).embedding)
    model.update()
    assert model.M_tens.shape[0] == n_centroids
    model.eval()
    x = DatasetOutput(data=torch.as_tensor(W.data(W.BATCH, seed=2)))
    elbo = lambda: float(model(x).loss)  # noqa: E731
    compile_s = _warm(elbo)
    benchmark.group = f"eval-N{n_centroids}"
    benchmark(elbo)
    record(f"eval-N{n_centroids}", "pythae", W.BATCH, compile_s)
