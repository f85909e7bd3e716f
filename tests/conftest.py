"""Shared fixtures: backends (CPU always, CUDA when present, marked ``gpu``), float64 on JAX,
full-precision float32 matmuls on GPU, two threads, and hermetic registries."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=2")

import jax  # noqa: E402
import torch  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
torch.set_num_threads(2)
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False


def _has_gpu(name: str) -> bool:
    if name == "torch":
        return torch.cuda.is_available()
    try:
        return bool(jax.devices("gpu"))
    except RuntimeError:
        return False


BACKENDS = [
    pytest.param(("torch", "cpu"), id="torch"),
    pytest.param(("jax", "cpu"), id="jax"),
    pytest.param(("torch", "cuda"), id="torch:gpu", marks=pytest.mark.gpu),
    pytest.param(("jax", "gpu"), id="jax:gpu", marks=pytest.mark.gpu),
]
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("gpu", id="gpu", marks=pytest.mark.gpu),
]


def skip_without_gpu(backend: str, device: str) -> None:
    if device != "cpu" and not _has_gpu(backend):
        pytest.skip(f"no CUDA device available to {backend}")


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.slow_on("jax")``: the test joins the slow suite on that backend only (its
    ``backend`` parameter), where compiling it costs most and the other backend's run together
    with the parity suite already covers it."""
    for item in items:
        marker = item.get_closest_marker("slow_on")
        callspec = getattr(item, "callspec", None)
        if not (marker and callspec and "backend" in callspec.params):
            continue
        backend = callspec.params["backend"]  # "jax", or ("jax", "cpu") from the backend fixture
        if (backend if isinstance(backend, str) else backend[0]) in marker.args:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=BACKENDS)
def backend(request):
    """``(name, device)`` of a backend; the GPU variants skip cleanly without a device."""
    name, device = request.param
    skip_without_gpu(name, device)
    return name, device


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator per test, so draws do not depend on test order (or xdist workers)."""
    return np.random.default_rng(1234)
