"""One process of a distributed run, launched by tests/test_distributed.py (torchrun, or JAX with
several host devices): trains 3 steps and, on the main process, saves parameters and metric.

``python distributed_worker.py BACKEND MODE OUT DTYPE [COORDINATOR PROCESSES PROCESS_ID]`` with
MODE ``fixed`` (fixed centroids), ``batch`` (the batch is the centroid set) or ``fail`` (rank 1
raises at its second step); the last three join a multi-process JAX run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from helpers import small_model  # noqa: E402
from rhvae.tree import flatten  # noqa: E402

N_ROWS, BATCH = 23, 8  # global batches of 8, 8 and 7 rows: uneven shares on two processes


def data() -> np.ndarray:
    return np.random.default_rng(0).uniform(0.05, 0.95, size=(N_ROWS, 8)).astype(np.float32)


def train(backend: str, mode: str, distributed: bool, dtype: str = "float32"):
    x = data()
    model = small_model(backend, input_dim=8, latent_dim=3, hidden=16, dtype=dtype, K=2, steps=2)
    state = model.init(seed=3, centroids="batch" if mode == "batch" else x[:6])
    if mode == "fail":
        step = model.train_step

        def failing(state, *args, **kwargs):
            if state.step == 1 and model.data_parallel().rank == 1:
                raise RuntimeError("rank 1 failed on purpose")
            return step(state, *args, **kwargs)

        model.train_step = failing
    state, history = model.fit(state, x, epochs=1, batch_size=BATCH, progress=False, distributed=distributed)
    return model, state, history


def arrays(model, state, history) -> dict[str, np.ndarray]:
    out = {f"param:{k}": np.asarray(model.backend.to_numpy(v)) for k, v in flatten(state.params)}
    out["metric:centroids"] = model.backend.to_numpy(state.metric.centroids)
    out["metric:M"] = model.backend.to_numpy(state.metric.M)
    out["loss"] = np.asarray(history["loss"])
    return out


if __name__ == "__main__":
    backend, mode, out, dtype = sys.argv[1:5]
    if backend == "jax":
        import jax

        jax.config.update("jax_enable_x64", dtype == "float64")
        if len(sys.argv) > 5:
            from rhvae_jax.parallel import initialize

            initialize(sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), timeout_s=4 if mode == "fail" else 10)
    model, state, history = train(backend, mode, distributed=True, dtype=dtype)
    parallel = model.data_parallel()
    if parallel.is_main:
        extra = {"devices": np.asarray(len(getattr(parallel, "devices", [])) or parallel.world_size)}
        if backend == "jax":  # rows per device of a placed batch of 8: 4 when it is really sharded
            placed = parallel.place(model.to_backend(data()[parallel.local_rows(BATCH)]), BATCH)
            extra["shard_rows"] = np.asarray(placed.addressable_shards[0].data.shape[0])
        np.savez(out, **arrays(model, state, history), **extra)
    parallel.barrier()  # as rhvae train does: no process exits while another still works
    if hasattr(parallel, "exit"):
        parallel.exit(0)
