"""Cross-backend benchmarks on the reference workload (``workload.py``), pythae beside them.

Run: ``python -m pytest benchmarks/bench_rhvae.py`` (add ``--benchmark-disable`` for a smoke run, with
``RHVAE_BENCH_SMOKE=1`` for tiny sizes). Compilation (jit tracing, first calls) happens in a
warm-up call outside the timed rounds and is recorded as ``compile_seconds``; every timed call
synchronises (``float(loss)`` waits for the device). pythae cases skip when it is not installed.
"""

from __future__ import annotations

import pytest

import workload as W

BACKENDS = ["torch", "jax"]
METHODS = ["autodiff", "finite", "analytic"]
N_EVAL = [1000, 4000]
N_SCALING = [500, 1000] if W.SMOKE else [500, 1000, 2000, 4000, 8000]
K_SCALING = [1, 2] if W.SMOKE else [1, 2, 5, 10]


def _train_step(backend: str, grad_h: str, K: int = 3, compile: bool | None = None):
    model = W.model(backend, grad_h, K, compile=compile)
    x = W.data(W.BATCH)
    state = model.init(seed=0)
    return lambda: model.step(state, x)


def _eval_elbo(backend: str, grad_h: str, n_centroids: int, compile: bool | None = None):
    model = W.model(backend, grad_h, compile=compile)
    state = model.refresh_metric(model.init(seed=0, centroids=n_centroids, data=W.data(n_centroids, seed=1)))
    x = W.data(W.BATCH, seed=2)
    return lambda: model.elbo(state, x)


@pytest.mark.parametrize("grad_h", METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_train_step(measure, backend, grad_h):
    measure("train", f"{backend}:{grad_h}", _train_step(backend, grad_h), W.BATCH)


@pytest.mark.parametrize("n_centroids", N_EVAL)
@pytest.mark.parametrize("grad_h", METHODS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_eval_elbo(measure, backend, grad_h, n_centroids):
    measure(f"eval-N{n_centroids}", f"{backend}:{grad_h}", _eval_elbo(backend, grad_h, n_centroids), W.BATCH)


# torch.compile (opt-in on torch; JAX always compiles): the analytic step and evaluation


def test_train_step_torch_compiled(measure):
    measure("train", "torch:analytic+compile", _train_step("torch", "analytic", compile=True), W.BATCH)


@pytest.mark.parametrize("n_centroids", N_EVAL)
def test_eval_elbo_torch_compiled(measure, n_centroids):
    measure(f"eval-N{n_centroids}", "torch:analytic+compile",
            _eval_elbo("torch", "analytic", n_centroids, compile=True), W.BATCH)


@pytest.mark.parametrize("n_centroids", N_SCALING)
@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_in_centroids(measure, backend, n_centroids):
    measure("scaling-N", f"{backend}:analytic", _eval_elbo(backend, "analytic", n_centroids), W.BATCH, N=n_centroids)


@pytest.mark.parametrize("K", K_SCALING)
@pytest.mark.parametrize("backend", BACKENDS)
def test_scaling_in_leapfrog_steps(measure, backend, K):
    measure("scaling-K", f"{backend}:analytic", _train_step(backend, "analytic", K), W.BATCH, K=K)


# ---------------------------------------------------------------- pythae 0.1.2, same workload


@pytest.fixture
def pythae_rhvae():
    pytest.importorskip("pythae")
    import torch

    torch.manual_seed(0)
    return W.pythae_model()


def test_pythae_train_step(measure, pythae_rhvae):
    measure("train", "pythae", W.pythae_step(pythae_rhvae, W.data(W.BATCH)), W.BATCH)


@pytest.mark.parametrize("n_centroids", N_EVAL)
def test_pythae_eval_elbo(measure, pythae_rhvae, n_centroids):
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
    measure(f"eval-N{n_centroids}", "pythae", lambda: float(model(x).loss), W.BATCH)
