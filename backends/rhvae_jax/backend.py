"""The JAX ``Backend``: ``jax.numpy`` as the array namespace, ``jax`` transforms, ``lax.fori_loop``.

float64 needs ``jax.config.update("jax_enable_x64", True)`` before any array is made; asking
for it without x64 raises instead of silently truncating to float32.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rhvae.errors import InputError
from rhvae.interfaces import BackendBase
from rhvae_jax import linalg

_ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "elu": jax.nn.elu,
    "softplus": jax.nn.softplus,
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "leaky_relu": jax.nn.leaky_relu,
    "identity": lambda x: x,
}


def _patch_conv(x: jax.Array, w: jax.Array, stride: int, padding: int) -> jax.Array:
    """``conv2d`` of ``x (B, C, H, W)`` with ``w (O, C, k, k)`` as patches ``(B, C, k², H', W')``
    contracted with ``w`` in one ``einsum``.

    The padded input is split into its ``s²`` phases (rows and columns ``≡ r, q (mod s)``, each
    ``(B, C, H' + ⌊(k-1)/s⌋, W' + ⌊(k-1)/s⌋)``), and tap ``(i, j)`` of the kernel is a unit-stride slice of phase
    ``(i mod s, j mod s)`` at offset ``(⌊i/s⌋, ⌊j/s⌋)``. Autodiff transposes the slices into pads
    of one phase and the split into a concatenation, so the gradient (and the transposed
    convolution, its adjoint) sums each tap's contribution at a phase's size; strided slices
    would transpose into full-size pads with holes, one per tap: the conv training step on
    pythae's MNIST architecture took 4.7 s that way against 3.0 s (``docs/performance.md``).

    XLA's CPU convolution takes a slow generic path for strided, dilated and many-channel
    convolutions (and their gradients, which are dilated): measured 16–55× slower than patches at
    256 to 1024 channels (``docs/performance.md``). Used on CPU only; other platforms keep XLA's
    convolution (cuDNN).
    """
    b, c, h, wd = x.shape
    out_ch, k, s = w.shape[0], w.shape[-1], stride
    ho, wo = (h + 2 * padding - k) // s + 1, (wd + 2 * padding - k) // s + 1
    hs, ws = ho + (k - 1) // s, wo + (k - 1) // s  # phase sides: every tap's slice fits
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (0, 0, 0), (padding, s * hs - h - padding, 0),
                                                 (padding, s * ws - wd - padding, 0)))  # negative: crop
    grid = xp.reshape(b, c, hs, s, ws, s)
    phases = [[p.reshape(b, c, hs, ws) for p in jnp.split(row, s, axis=5)] for row in jnp.split(grid, s, axis=3)]
    patches = jnp.stack([phases[i % s][j % s][:, :, i // s:i // s + ho, j // s:j // s + wo]
                         for i in range(k) for j in range(k)], axis=2)
    return jnp.einsum("bcnhw,ocn->bohw", patches, w.reshape(out_ch, c, k * k))


_NCHW = ("NCHW", "OIHW", "NCHW")
"""Images channels first, kernels ``(out, in, kh, kw)``: torch's layout, so both backends share
one checkpoint layout and one data convention."""


def _xla_conv(x: jax.Array, w: jax.Array, stride: int, padding: int) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (stride, stride), [(padding, padding)] * 2, dimension_numbers=_NCHW)


class JaxBackend(BackendBase):
    """JAX on ``device`` (``"cpu"``, ``"gpu"`` or ``"cuda"``, optionally ``":index"``);
    ``compile=False`` runs every function op by op (for debugging)."""

    name = "jax"
    xp = jnp

    def __init__(self, device: str = "cpu", compile: bool = True) -> None:
        platform, _, index = device.partition(":")
        platform = "gpu" if platform == "cuda" else platform
        try:
            self.device = jax.local_devices(backend=platform)[int(index or 0)]
        except (RuntimeError, IndexError) as exc:
            raise InputError(f"device {device!r} requested but jax has none: {exc}") from None
        self.compile = compile
        self.version = jax.__version__
        self._conv = _patch_conv if self.device.platform == "cpu" else _xla_conv

    def __repr__(self) -> str:
        return f"JaxBackend(device={str(self.device)!r})"

    def asarray(self, x: Any, dtype: str) -> jax.Array:
        if dtype == "float64" and not jax.config.jax_enable_x64:
            raise InputError(
                "dtype 'float64' on the jax backend needs x64: call "
                "jax.config.update('jax_enable_x64', True) before creating arrays"
            )
        if not isinstance(x, jax.Array):
            x = np.asarray(x)
        arr = jnp.asarray(x, dtype=dtype)
        # Leave arrays on the default device uncommitted, like the outputs of a jitted step:
        # committed inputs would make every compiled function compile a second time.
        return arr if self.device == jax.local_devices()[0] else jax.device_put(arr, self.device)

    def to_numpy(self, x: jax.Array) -> np.ndarray:
        return np.asarray(x)

    def constant(self, value: np.ndarray, dtype) -> jax.Array:
        return jnp.asarray(value, dtype=dtype)

    def grad(self, f: Callable, argnums: int = 0, has_aux: bool = False) -> Callable:
        return jax.grad(f, argnums=argnums, has_aux=has_aux)

    def value_and_grad(self, f: Callable, argnums: int = 0, has_aux: bool = False) -> Callable:
        return jax.value_and_grad(f, argnums=argnums, has_aux=has_aux)

    def vjp(self, f: Callable, *primals: jax.Array):
        return jax.vjp(f, *primals)

    def fori_loop(self, lower: int, upper: int, body: Callable, init: Any, unroll: bool = False) -> Any:
        """``lax.fori_loop``; ``unroll``: fully unrolled, so the backward pass reads no stacked loop
        residuals (the leapfrog loops of the closed-form ∇H: training step about 6 % faster)."""
        return jax.lax.fori_loop(lower, upper, body, init, unroll=True if unroll else 1)

    def jit(self, f: Callable) -> Callable:
        return jax.jit(f) if self.compile else f

    def cond(self, pred: jax.Array, true_fn: Callable, false_fn: Callable) -> Any:
        # both branches and a select, which XLA fuses into the branches' last operations: the
        # reference training step takes 22 ms this way, 24 ms with lax.cond (one branch run)
        return jax.tree.map(lambda a, b: jnp.where(pred, a, b), true_fn(), false_fn())

    def stop_gradient(self, x: jax.Array) -> jax.Array:
        return jax.lax.stop_gradient(x)

    def eval_shape(self, f: Callable, *args: Any) -> Any:
        """The shapes and dtypes ``f(*args)`` would have, by tracing alone (no computation, no
        compilation): the model's build-time probe of its components."""
        return jax.eval_shape(f, *args)

    def remat(self, f: Callable) -> Callable:
        """``f`` recomputed in the backward pass instead of storing its intermediates."""
        return jax.checkpoint(f)

    def inverse_cholesky(self, a: jax.Array) -> jax.Array:
        # On CPU, jaxlib's LAPACK kernels can deadlock inside a compiled step (see linalg.py)
        if self.device.platform == "cpu":
            return linalg.inverse_cholesky_cpu(a)
        return linalg.inverse_cholesky_accelerator(a)

    def conv2d(self, x: jax.Array, w: jax.Array, stride: int = 1, padding: int = 0) -> jax.Array:
        """torch's ``conv2d``: on CPU one matrix product over patches sliced from the input's phases
        (:func:`_patch_conv`)."""
        return self._conv(x, w, stride, padding)

    def conv_transpose2d(self, x: jax.Array, w: jax.Array, stride: int = 1, padding: int = 0,
                         output_padding: int | tuple[int, int] = 0) -> jax.Array:
        """torch's ``conv_transpose2d``: the adjoint of ``conv2d(·, w, stride, padding)`` on inputs of
        side ``(n - 1)·stride - 2·padding + k + output_padding``, applied to ``x`` (a ``jax.vjp``
        of ``conv2d``; on CPU pads, a concatenation of phases and matrix products, no dilated
        convolution)."""
        extra = (output_padding, output_padding) if isinstance(output_padding, int) else output_padding
        k = w.shape[-1]
        side = [(n - 1) * stride - 2 * padding + k + e for n, e in zip(x.shape[2:], extra)]
        _, adjoint = jax.vjp(lambda u: self._conv(u, w, stride, padding),
                             jnp.zeros((x.shape[0], w.shape[1], *side), x.dtype))
        return adjoint(x)[0]

    def logsumexp(self, x: jax.Array, axis: int) -> jax.Array:
        return jax.nn.logsumexp(x, axis=axis)

    def softplus(self, x: jax.Array) -> jax.Array:
        return jax.nn.softplus(x)

    def activation(self, name: str) -> Callable:
        try:
            return _ACTIVATIONS[name]
        except KeyError:
            raise InputError(f"unknown activation {name!r}; choose from {sorted(_ACTIVATIONS)}") from None

    def synchronize(self, x: Any) -> Any:
        return jax.block_until_ready(x)

    def devices(self) -> list[str]:
        return [str(d) for d in jax.devices()]

    @classmethod
    def join_processes(cls, coordinator: str, num_processes: int, process_id: int) -> None:
        """``jax.distributed.initialize`` (:func:`rhvae_jax.parallel.initialize`)."""
        from rhvae_jax.parallel import initialize

        initialize(coordinator, num_processes, process_id)

    def data_parallel(self):
        """A mesh over every device of this backend's platform, on every host."""
        from rhvae_jax.parallel import DeviceMesh

        return DeviceMesh(jax.devices(self.device.platform))
