"""Print the worst torch↔jax normwise error per parity quantity (f32, f64), over every ∇H
method and likelihood: ``python tests/parity_table.py`` (about 4 minutes on 2 cores)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import conftest  # noqa: E402,F401  (x64, full-precision matmuls, 2 threads)
from rhvae.testing import normwise_error  # noqa: E402
from parity_cases import DECODERS, FORWARD, GRAD_H, GRADIENT, compute  # noqa: E402

worst: dict[tuple[str, str], float] = {}
for dtype in ("float32", "float64"):
    for grad_h in GRAD_H:
        for decoder in DECODERS:
            a, b = compute("torch", "cpu", dtype, grad_h, decoder), compute("jax", "cpu", dtype, grad_h, decoder)
            for k in a:
                worst[k, dtype] = max(worst.get((k, dtype), 0.0), normwise_error(a[k], b[k]))
for k in FORWARD + GRADIENT:
    print(f"{k:22s} f32 {worst[k, 'float32']:.1e}  f64 {worst[k, 'float64']:.1e}")
