"""Data-parallel training equals single-process training: torch with 2 gloo processes under
``torchrun``, JAX with the batch sharded over 2 host devices and over 2 processes
(``jax.distributed``). A failing rank fails the run."""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rhvae.testing import normwise_error

HERE = Path(__file__).parent
WORKER = HERE / "distributed_worker.py"
sys.path.insert(0, str(HERE))
import distributed_worker  # noqa: E402

# One worker runs this module, so the single-process references below are computed once for it.
pytestmark = pytest.mark.xdist_group("distributed")


@functools.lru_cache(maxsize=None)
def _single_process(backend: str, mode: str, dtype: str) -> dict[str, np.ndarray]:
    """The arrays of the same training in one process, on one device: the reference."""
    return distributed_worker.arrays(*distributed_worker.train(backend, mode, False, dtype))


def _run(cmd: list[str], env_extra: dict | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=HERE.parent)


def _torchrun(mode: str, out: Path, dtype: str = "float32") -> subprocess.CompletedProcess:
    return _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                 str(WORKER), "torch", mode, str(out), dtype])


def _jax_processes(mode: str, out: Path, dtype: str, timeout: int = 240) -> list[tuple[int, str]]:
    """Two JAX processes of one run (one CPU device each), joined through a coordinator on a
    free local port: ``(returncode, output)`` per process."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("XLA_FLAGS", None)
    procs = [subprocess.Popen([sys.executable, str(WORKER), "jax", mode, str(out), dtype, f"localhost:{port}",
                               "2", str(i)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=env, cwd=HERE.parent) for i in range(2)]
    try:
        outputs = [p.communicate(timeout=timeout)[0] for p in procs]
        return [(p.returncode, out) for p, out in zip(procs, outputs)]
    finally:
        for p in procs:
            p.kill()


def _errors(out: Path, backend: str, mode: str, dtype: str) -> dict[str, float]:
    """Normwise error per parameter, metric array and the loss history; in float32 the parameters
    are compared as one vector (see TOLERANCE)."""
    got = np.load(out)
    assert int(got["devices"]) == 2 and len(got["loss"]) == 3
    expected = _single_process(backend, mode, dtype)
    errors = {k: normwise_error(got[k], v) for k, v in expected.items() if not k.startswith("param:")}
    params = sorted(k for k in expected if k.startswith("param:"))
    if dtype == "float64":
        errors.update({k: normwise_error(got[k], expected[k]) for k in params})
    else:
        flat = [np.concatenate([a[k].ravel() for k in params]) for a in (got, expected)]
        errors["params"] = normwise_error(*flat)
    return errors


# float64 shows the split is exact (only the summation order differs). In float32, Adam's first
# steps (m/√v ≈ sign g) turn round-off in near-zero gradient entries (e.g. a zero-initialised
# bias) into full-size updates, so single parameters can differ by ~lr; the whole vector cannot.
TOLERANCE = {"float64": 1e-10, "float32": 1e-4}


@pytest.mark.parametrize("mode, dtype", [("fixed", "float64"), ("batch", "float64"), ("fixed", "float32")])
def test_two_torch_processes_train_like_one(tmp_path, mode, dtype):
    out = tmp_path / "params.npz"
    done = _torchrun(mode, out, dtype)
    assert done.returncode == 0, done.stderr[-3000:]
    errors = _errors(out, "torch", mode, dtype)
    assert max(errors.values()) < TOLERANCE[dtype], errors


@pytest.mark.parametrize("dtype", ["float64", pytest.param("float32", marks=pytest.mark.slow)])
def test_jax_sharded_over_two_devices_trains_like_one(tmp_path, dtype):
    out = tmp_path / "params.npz"
    done = _run([sys.executable, str(WORKER), "jax", "fixed", str(out), dtype],
                {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(np.load(out)["shard_rows"]) == 4  # each device holds half of a batch of 8
    errors = _errors(out, "jax", "fixed", dtype)
    assert max(errors.values()) < TOLERANCE[dtype], errors


@pytest.mark.parametrize("mode", ["fixed", pytest.param("batch", marks=pytest.mark.slow)])
def test_two_jax_processes_train_like_one(tmp_path, mode):
    out = tmp_path / "params.npz"
    results = _jax_processes(mode, out, "float64")
    assert all(code == 0 for code, _ in results), results[0][1][-3000:] + results[1][1][-3000:]
    assert int(np.load(out)["shard_rows"]) == 4  # each process's device holds half of a batch of 8
    errors = _errors(out, "jax", mode, "float64")
    assert max(errors.values()) < TOLERANCE["float64"], errors


def test_a_failing_jax_process_fails_every_process_without_hanging(tmp_path):
    results = _jax_processes("fail", tmp_path / "never.npz", "float64", timeout=120)
    assert all(code != 0 for code, _ in results)
    assert "rank 1 failed on purpose" in results[1][1]
    assert not (tmp_path / "never.npz").exists()


def test_a_failing_rank_fails_the_whole_run_without_hanging(tmp_path):
    done = _torchrun("fail", tmp_path / "never.npz")  # the timeout of _run is the no-hang check
    assert done.returncode != 0
    assert "rank 1 failed on purpose" in done.stderr + done.stdout
    assert not (tmp_path / "never.npz").exists()


def test_distributed_without_a_process_group_is_a_clear_error():
    from helpers import small_model
    from rhvae.errors import RhvaeError

    model = small_model("torch")
    env = {k: os.environ.pop(k) for k in ("RANK", "WORLD_SIZE") if k in os.environ}
    try:
        with pytest.raises(RhvaeError, match="torchrun"):
            model.fit(model.init(seed=0), np.full((4, 10), 0.5), distributed=True, progress=False)
    finally:
        os.environ.update(env)
