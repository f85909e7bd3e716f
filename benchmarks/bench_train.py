"""Training-step throughput per backend and ∇H method (samples/s in ``extra_info``).

Run: ``python -m pytest benchmarks/bench_train.py`` (``--benchmark-disable`` for a smoke run).
Compilation happens in the warm-up call, outside the timed rounds; the timed call synchronises
(``float(loss)`` waits for the device).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import rhvae

BATCH, INPUT, LATENT, HIDDEN = 100, 784, 2, 128


@pytest.mark.parametrize("grad_h", ["autodiff", "finite"])
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_training_step(benchmark, backend, grad_h):
    reg = rhvae.get_registry()
    model = rhvae.RHVAE(backend, input_dim=INPUT, latent_dim=LATENT, grad_h=grad_h,
                        encoder=reg.create("encoder", "mlp", hidden=(HIDDEN,)),
                        decoder=reg.create("decoder", "bernoulli_mlp", hidden=(HIDDEN,)),
                        metric=reg.create("metric", "mlp", hidden=(HIDDEN,)))
    x = np.random.default_rng(0).uniform(size=(BATCH, INPUT)).astype(np.float32)
    state = model.init(seed=0)
    start = time.perf_counter()
    state, _ = model.step(state, x)
    benchmark.extra_info["compile_seconds"] = time.perf_counter() - start
    benchmark.group = f"train/{grad_h}"
    benchmark(lambda: model.step(state, x))
    if benchmark.stats is not None:
        benchmark.extra_info["samples_per_s"] = BATCH / benchmark.stats.stats.mean
