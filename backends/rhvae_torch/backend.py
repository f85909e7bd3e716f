"""The torch ``Backend``: ``torch`` as the array namespace and ``torch.func`` as the transforms.

``torch.func.grad(f, argnums)`` takes partial derivatives exactly as ``jax.grad`` does, which is
what the generalized leapfrog needs (``autograd.grad(..., create_graph=True)`` silently takes a
total derivative once the momentum depends on z). Loops are plain Python loops; ``jit`` is the
identity, or ``torch.compile`` when asked for (compilation costs minutes on small CPUs).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils._pytree import tree_map
from rhvae.errors import InputError
from rhvae.interfaces import BackendBase

_ACTIVATIONS: dict[str, Callable] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "elu": F.elu,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
    "identity": lambda x: x,
}


def default_threads() -> int:
    """Intra-op threads for one process: ``RHVAE_NUM_THREADS`` when set, else the CPUs this process
    may run on divided by the processes that share them here (pytest-xdist's workers, torchrun's
    local world size), at least 1.

    torch's own default is one thread per physical core in every process: two xdist workers or
    two torchrun ranks on 2 cores then run 4 threads that spin-wait on each other, and a step of the
    reference workload took 420–2,086 ms instead of 105 ms.
    """
    if os.environ.get("RHVAE_NUM_THREADS"):
        return max(1, int(os.environ["RHVAE_NUM_THREADS"]))
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    sharing = max(int(os.environ.get(name, 1)) for name in ("PYTEST_XDIST_WORKER_COUNT", "LOCAL_WORLD_SIZE"))
    return max(1, cpus // sharing)


def _flushing_subnormals() -> bool:
    """Whether this thread flushes subnormal floats to zero now (torch has no getter for it)."""
    return bool(torch.tensor(1e-39, dtype=torch.float32).mul(1.0) == 0)


def _with_subnormals_flushed(f: Callable) -> Callable:
    """``f`` run with this thread's subnormals flushed to zero, the previous mode restored after."""
    @functools.wraps(f)
    def run(*args: Any, **kwargs: Any) -> Any:
        if _flushing_subnormals():
            return f(*args, **kwargs)
        torch.set_flush_denormal(True)
        try:
            return f(*args, **kwargs)
        finally:
            torch.set_flush_denormal(False)

    return run


class TorchBackend(BackendBase):
    """PyTorch on ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"gpu"`` for the first CUDA device).

    ``flush_subnormals`` (CPU): the model's functions run with subnormal numbers (below 1.2e-38
    in float32) flushed to zero, as XLA always computes; restored on return. Centroid weights
    ``exp(-‖z - c‖²/T²)`` and their products reach that range at small ``T``, where x86 CPUs slow
    down many-fold: the training step at the default ``T = 0.8`` took 72 ms with them and 56 ms
    without (reference networks, latent 16, batch 100).

    ``threads`` (CPU): torch's intra-op thread count, set process-wide on construction; ``None``
    lowers it to :func:`default_threads` when it is above that (a count set with
    ``torch.set_num_threads`` below it is kept).
    """

    name = "torch"
    xp = torch

    def __init__(self, device: str = "cpu", compile: bool = False, flush_subnormals: bool = True,
                 threads: int | None = None) -> None:
        if device == "gpu":
            device = "cuda"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise InputError(f"device {device!r} requested but torch sees no CUDA device")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive integer or None; got {threads!r}")
        self.device = torch.device(device)
        if self.device.type == "cpu":
            wanted = threads if threads is not None else min(torch.get_num_threads(), default_threads())
            if wanted != torch.get_num_threads():
                torch.set_num_threads(wanted)
        self.compile = compile
        self.flush_subnormals = flush_subnormals and self.device.type == "cpu"
        self.version = torch.__version__

    def __repr__(self) -> str:
        return f"TorchBackend(device={str(self.device)!r})"

    def asarray(self, x: Any, dtype: str) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            x = np.asarray(x)
        return torch.as_tensor(x, dtype=getattr(torch, dtype), device=self.device)

    def to_numpy(self, x: torch.Tensor) -> np.ndarray:
        return x.detach().cpu().numpy()

    def constant(self, value: np.ndarray, dtype: torch.dtype | None) -> torch.Tensor:
        return torch.as_tensor(value, dtype=dtype, device=self.device)

    def grad(self, f: Callable, argnums: int = 0, has_aux: bool = False) -> Callable:
        return torch.func.grad(f, argnums=argnums, has_aux=has_aux)

    def value_and_grad(self, f: Callable, argnums: int = 0, has_aux: bool = False) -> Callable:
        g = torch.func.grad_and_value(f, argnums=argnums, has_aux=has_aux)

        def value_and_grad(*args, **kwargs):
            grads, value = g(*args, **kwargs)
            return value, grads

        return value_and_grad

    def vjp(self, f: Callable, *primals: torch.Tensor):
        return torch.func.vjp(f, *primals)

    def fori_loop(self, lower: int, upper: int, body: Callable, init: Any, unroll: bool = False) -> Any:
        val = init
        for i in range(lower, upper):
            val = body(i, val)
        return val

    def jit(self, f: Callable) -> Callable:
        f = torch.compile(f) if self.compile else f
        return _with_subnormals_flushed(f) if self.flush_subnormals else f

    def cond(self, pred: torch.Tensor, true_fn: Callable, false_fn: Callable) -> Any:
        if torch.compiler.is_compiling():  # both branches and a select: no graph break
            return tree_map(lambda a, b: torch.where(pred, a, b), true_fn(), false_fn())
        return true_fn() if bool(pred) else false_fn()

    def stop_gradient(self, x: torch.Tensor) -> torch.Tensor:
        return x.detach()

    def inverse_cholesky(self, a: torch.Tensor) -> torch.Tensor:
        # cholesky_ex does not raise on a non-positive-definite input: log det is then NaN, as
        # in jax, so a diverging run is caught by the finite-loss check of fit, with its epoch and step
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand(a.shape)
        return torch.linalg.solve_triangular(torch.linalg.cholesky_ex(a).L, eye, upper=False)

    def conv2d(self, x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
        return F.conv2d(x, w, stride=stride, padding=padding)

    def conv_transpose2d(self, x: torch.Tensor, w: torch.Tensor, stride: int = 1, padding: int = 0,
                         output_padding: int | tuple[int, int] = 0) -> torch.Tensor:
        return F.conv_transpose2d(x, w, stride=stride, padding=padding, output_padding=output_padding)

    def logsumexp(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.logsumexp(x, dim=axis)

    def softplus(self, x: torch.Tensor) -> torch.Tensor:
        return F.softplus(x)

    def activation(self, name: str) -> Callable:
        try:
            return _ACTIVATIONS[name]
        except KeyError:
            raise InputError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None

    def synchronize(self, x: Any) -> Any:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return x

    def devices(self) -> list[str]:
        return ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]

    def data_parallel(self):
        """This process's place in the ``torch.distributed`` group (``torchrun``)."""
        from rhvae_torch.parallel import ProcessGroup

        return ProcessGroup(self.device)
