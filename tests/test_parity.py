"""Parity of every registered backend with torch (DESIGN §5): same numpy parameters and noise,
normwise bounds. The backends are those of ``further_backend.REGISTRY``: jax, a backend
registered there from outside the core (``torch_exact``), and any installed plugin's.

float32: 1e-5 on forward values, 1e-4 on gradients and everything downstream of a gradient;
float64: 1e-10 on everything. For every ∇H method and every built-in likelihood, on CPU and
(marked ``gpu``) on CUDA.

One exception is derived, not tuned: a central difference ``[H(v+h) - H(v-h)] / 2h`` turns a
one-ulp disagreement of ``H`` between the backends into ``ulp(H) / 2h`` in the gradient (measured:
1 or 3 × 1.4667e-10 = ulp(13.6) / 1.21e-5 in the differing entries in float64). ``H`` sums a
handful of terms as large as itself, each rounded differently by the two backends, so the two
evaluations may differ by a few ulps each. The finite-difference ``grad_z``/``grad_rho`` must
therefore agree entry by entry to the larger of the normwise bound and :func:`difference_floor`,
``8 ulp(max|H|) / 2h``; the forward ``H`` itself still agrees to 1e-10, and every quantity
downstream of the gradient is checked at the usual bound.
"""

from __future__ import annotations

import functools

import pytest

from conftest import DEVICES, skip_without_gpu
import numpy as np

from rhvae.testing import normwise_error
from further_backend import PARITY_BACKENDS
from parity_cases import DECODERS, FORWARD, GRAD_H, GRADIENT, compute

BOUNDS = {("float32", "forward"): 1e-5, ("float32", "gradient"): 1e-4,
          ("float64", "forward"): 1e-10, ("float64", "gradient"): 1e-10}
DIFFERENCED = ("grad_z", "grad_rho")


def difference_floor(H: np.ndarray, dtype: str) -> float:
    """``8 ulp(max|H|) / 2h``: what a few ulps of disagreement in ``H`` become in a central
    difference with the finite method's default step ``h = ∛eps``."""
    h = float(np.cbrt(np.finfo(dtype).eps))
    return 8.0 * float(np.spacing(np.abs(H).astype(dtype).max())) / (2.0 * h)


def _failures(torch_out, jax_out, dtype: str, grad_h: str) -> list[str]:
    failures = []
    for group, names in (("forward", FORWARD), ("gradient", GRADIENT)):
        bound = BOUNDS[dtype, group]
        for name in names:
            a, b = torch_out[name], jax_out[name]
            if grad_h == "finite" and name in DIFFERENCED:
                allowed = max(bound * float(np.linalg.norm(a)), difference_floor(torch_out["H"], dtype))
                worst = float(np.abs(a - b).max())
                if not worst <= allowed:
                    failures.append(f"{name}: entrywise {worst:.2e} > {allowed:.2e}")
                continue
            err = normwise_error(a, b)
            if not err <= bound:
                failures.append(f"{name}: {err:.2e} > {bound:.0e}")
    return failures


@functools.lru_cache(maxsize=None)
def _torch(device: str, dtype: str, grad_h: str, decoder: str):
    return compute("torch", "cuda" if device == "gpu" else "cpu", dtype, grad_h, decoder)


def _pair(backend: str, device: str, dtype: str, grad_h: str, decoder: str):
    other = device if backend == "jax" else ("cuda" if device == "gpu" else "cpu")
    return _torch(device, dtype, grad_h, decoder), compute(backend, other, dtype, grad_h, decoder)


# The default suite checks the default method (analytic) in float64 for every decoder and in
# float32 for the Bernoulli decoder (the likelihoods differ only in their forward terms, which
# analytic float64 covers). The other methods run under -m slow (each JAX case compiles for
# 15-50 s on 2 cores); the default suite still ties them to analytic on every backend
# (tests/test_analytic_grad_h.py, tests/test_contracts.py).
DEFAULT_SUITE = {("analytic", "float64", decoder) for decoder in DECODERS} | {("analytic", "float32", "bernoulli_mlp")}
CASES = [pytest.param(decoder, dtype, grad_h, id=f"{decoder}-{grad_h}-{dtype}",
                      marks=[] if (grad_h, dtype, decoder) in DEFAULT_SUITE else [pytest.mark.slow])
         for decoder in DECODERS for grad_h in GRAD_H for dtype in ("float32", "float64")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("decoder, dtype, grad_h", CASES)
@pytest.mark.parametrize("backend", PARITY_BACKENDS)
def test_parity_with_torch(backend, device, dtype, grad_h, decoder):
    skip_without_gpu("torch", device)
    skip_without_gpu("jax" if backend == "jax" else "torch", device)
    torch_out, other_out = _pair(backend, device, dtype, grad_h, decoder)
    failures = _failures(torch_out, other_out, dtype, grad_h)
    assert not failures, "; ".join(failures)


def test_the_further_backend_passes_the_backend_contract():
    """``torch_exact``, registered from outside the core, passes ``check_component("backend")``
    like the built-in backends (``tests/test_contracts.py``)."""
    from further_backend import REGISTRY
    from rhvae.testing import check_component

    assert "torch_exact" in PARITY_BACKENDS
    check_component("backend", REGISTRY.create("backend", "torch_exact"))
