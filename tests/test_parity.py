"""torch ↔ jax parity (DESIGN §5): same numpy parameters and noise, normwise bounds.

float32: 1e-5 on forward values, 1e-4 on gradients and everything downstream of a gradient;
float64: 1e-10 on everything. For every ∇H method and every built-in likelihood, on CPU and
(marked ``gpu``) on CUDA.
"""

from __future__ import annotations

import functools

import pytest

from conftest import DEVICES, skip_without_gpu
from rhvae.testing import normwise_error
from parity_cases import DECODERS, FORWARD, GRAD_H, GRADIENT, compute

BOUNDS = {("float32", "forward"): 1e-5, ("float32", "gradient"): 1e-4,
          ("float64", "forward"): 1e-10, ("float64", "gradient"): 1e-10}


@functools.lru_cache(maxsize=None)
def _pair(device: str, dtype: str, grad_h: str, decoder: str):
    return (compute("torch", "cuda" if device == "gpu" else "cpu", dtype, grad_h, decoder),
            compute("jax", device, dtype, grad_h, decoder))


# The default suite checks the default method (analytic) in both precisions and autodiff in
# float64; the rest runs under -m slow (each finite-difference case compiles for ~50 s on 2 cores).
DEFAULT_SUITE = {("analytic", "float32"), ("analytic", "float64"), ("autodiff", "float64")}
METHOD_DTYPES = [pytest.param(dtype, grad_h, id=f"{grad_h}-{dtype}",
                              marks=[] if (grad_h, dtype) in DEFAULT_SUITE else [pytest.mark.slow])
                 for grad_h in GRAD_H for dtype in ("float32", "float64")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype, grad_h", METHOD_DTYPES)
@pytest.mark.parametrize("decoder", DECODERS)
def test_torch_jax_parity(device, dtype, grad_h, decoder):
    skip_without_gpu("torch", device)
    skip_without_gpu("jax", device)
    torch_out, jax_out = _pair(device, dtype, grad_h, decoder)
    failures = []
    for group, names in (("forward", FORWARD), ("gradient", GRADIENT)):
        bound = BOUNDS[dtype, group]
        for name in names:
            err = normwise_error(torch_out[name], jax_out[name])
            if not err <= bound:
                failures.append(f"{name}: {err:.2e} > {bound:.0e}")
    assert not failures, "; ".join(failures)
