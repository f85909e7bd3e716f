"""Evaluation with many centroids: time and transient memory of the held-out ELBO for
N = 1,000, 10,000 and 100,000 centroids, dense sums against sums in blocks of 1,000
(``centroid_chunk``), on both backends (the reference model, latent 16, batch 100).

The metric state is synthetic (random centroids and factors ``L_i``) so that building it does
not dominate the run. Transient memory is the peak resident size during one call (after a
warm-up call) above the size before it, sampled every 0.2 ms by a thread (the numerical
libraries release the GIL), in a fresh process whose glibc returns every freed block over
64 kB to the system (``MALLOC_MMAP_THRESHOLD_``), so resident size follows live memory.
Run one point alone with ``python benchmarks/bench_large_n.py BACKEND N CHUNK|dense``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import workload as W

from rhvae.math.metric import metric_state

SIZES = (100, 1000) if W.SMOKE else (1000, 10_000, 100_000)
CHUNK = 100 if W.SMOKE else 1000


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def transient_memory(call) -> int:
    """Peak resident bytes above the starting size while ``call()`` runs."""
    start, peak, done = _rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    thread = threading.Thread(target=sample)
    thread.start()
    try:
        call()
    finally:
        done.set()
        thread.join()
    return max(peak[0], _rss_bytes()) - start


def _eval(backend: str, n_centroids: int, chunk: int | None):
    model = W.model(backend, "analytic", centroid_chunk=chunk)
    rng = np.random.default_rng(0)
    d = W.LATENT
    L = np.tril(rng.normal(scale=0.3, size=(n_centroids, d, d)), -1) + np.eye(d)
    B = model.backend
    state = model.init(seed=0).replace(metric=metric_state(
        B, B.asarray(rng.normal(size=(n_centroids, d)), "float32"), B.asarray(L, "float32")))
    x = W.data(W.BATCH, seed=2)
    return lambda: model.elbo(state, x)


def transient_memory_in_fresh_process(backend: str, n_centroids: int, chunk: int | None) -> float:
    """MB, from ``python bench_large_n.py`` in a subprocess with ``MALLOC_MMAP_THRESHOLD_=65536``."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    done = subprocess.run([sys.executable, __file__, backend, str(n_centroids), str(chunk or "dense")],
                          capture_output=True, text=True, env=env, timeout=600, check=True)
    return float(done.stdout.split()[-1])


@pytest.mark.parametrize("chunk", [None, CHUNK], ids=["dense", "chunked"])
@pytest.mark.parametrize("n_centroids", SIZES)
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_eval_with_many_centroids(measure, benchmark, backend, n_centroids, chunk):
    label = f"{backend}:{'dense' if chunk is None else f'chunk{chunk}'}"
    measure("large-N", label, _eval(backend, n_centroids, chunk), W.BATCH, N=n_centroids)
    if benchmark.stats is not None:
        from conftest import record_extra

        megabytes = transient_memory_in_fresh_process(backend, n_centroids, chunk)
        benchmark.extra_info["transient_mb"] = megabytes
        record_extra(label, n_centroids, transient_mb=megabytes)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    import torch

    torch.set_num_threads(2)
    name, n, chunk = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    call = _eval(name, n, None if chunk == "dense" else int(chunk))
    call()
    print(f"{transient_memory(call) / 2**20:.1f}")
