"""Benchmark settings (torch on 2 threads like XLA on this 2-core machine, DESIGN §6) and the summary table printed after the run.

Each benchmark goes through ``measure``, which records ``(group, label, samples per call, median
seconds, compile seconds)``;
the summary prints throughput, the torch/jax ratio, the multiple of pythae's throughput, the
fraction of the compute floor for training steps, and the fitted scaling exponents.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

torch.set_num_threads(2)

_RESULTS: list[dict] = []


@pytest.fixture
def measure(benchmark):
    """``measure(group, label, call, samples, **extra)``: one warm-up call (compilation, timed
    separately as ``compile_seconds``), then ``benchmark(call)`` in ``group``, recorded for the
    summary table with ``samples`` per call."""
    def _measure(group: str, label: str, call, samples: int, **extra) -> None:
        start = time.perf_counter()
        call()
        compile_seconds = time.perf_counter() - start
        benchmark.group = group
        benchmark.extra_info["compile_seconds"] = compile_seconds
        benchmark(call)
        if benchmark.stats is None:  # --benchmark-disable
            return
        median = benchmark.stats.stats.median
        benchmark.extra_info["samples_per_s"] = samples / median
        _RESULTS.append(dict(group=group, label=label, samples=samples, seconds=median,
                             compile=compile_seconds, **extra))
    return _measure


def record_extra(label: str, n_centroids: int, **extra) -> None:
    """Add ``extra`` to the recorded large-N result of ``label`` at ``n_centroids``."""
    for r in _RESULTS:
        if r["group"] == "large-N" and r["label"] == label and r.get("N") == n_centroids:
            r.update(extra)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]


def _exponent(xs: list[float], ts: list[float]) -> float:
    return float(np.polyfit(np.log(xs), np.log(ts), 1)[0])


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _RESULTS:
        return
    from workload import FLOP_PER_SAMPLE, matmul_gflops

    gflops = matmul_gflops()
    write = terminalreporter.write_line
    terminalreporter.section(f"rhvae benchmark summary (matmul {gflops:.0f} GFLOP/s, float32, 2 threads)")
    by_key = {(r["group"], r["label"]): r for r in _RESULTS}
    rows = [["group", "method", "torch /s", "jax /s", "torch/jax", "pythae /s", "torch÷pythae", "jax÷pythae",
             "floor % torch/jax", "compile s torch/jax"]]
    groups = sorted({r["group"] for r in _RESULTS if not r["group"].startswith(("scaling", "large-N"))})
    for group in groups:
        pythae = by_key.get((group, "pythae"))
        p_rate = pythae["samples"] / pythae["seconds"] if pythae else math.nan
        methods = sorted({r["label"].split(":")[1] for r in _RESULTS if r["group"] == group and ":" in r["label"]})
        for method in methods:
            # JAX always compiles: "analytic+compile" (torch.compile) sits beside JAX's "analytic"
            t, j = by_key.get((group, f"torch:{method}")), by_key.get((group, f"jax:{method.removesuffix('+compile')}"))
            rate = {k: (v["samples"] / v["seconds"] if v else math.nan) for k, v in (("t", t), ("j", j))}
            floor = [100 * FLOP_PER_SAMPLE / (gflops * 1e9) * rate[k] for k in ("t", "j")]
            rows.append([group, method, f"{rate['t']:.0f}", f"{rate['j']:.0f}", f"{rate['t'] / rate['j']:.2f}",
                         f"{p_rate:.0f}", f"{rate['t'] / p_rate:.2f}", f"{rate['j'] / p_rate:.2f}",
                         f"{floor[0]:.0f}/{floor[1]:.0f}" if group == "train" else "",
                         f"{(t or {}).get('compile', math.nan):.1f}/{(j or {}).get('compile', math.nan):.1f}"])
    if groups:
        for line in _table(rows):
            write(line)
    for axis in ("N", "K"):
        for backend in ("torch", "jax"):
            pts = sorted((r[axis], r["seconds"]) for r in _RESULTS
                         if r["group"] == f"scaling-{axis}" and r["label"].startswith(backend))
            if len(pts) >= 2:
                xs, ts = zip(*pts)
                write(f"scaling in {axis} ({backend}, analytic): time ∝ {axis}^{_exponent(xs, ts):.2f} over "
                      f"{axis} = {', '.join(str(x) for x in xs)}; seconds {', '.join(f'{t:.4f}' for t in ts)}")
    large = [r for r in _RESULTS if r["group"] == "large-N"]
    if large:
        sizes = sorted({r["N"] for r in large})
        rows = [["large N: ELBO, batch " + str(large[0]["samples"]), *(f"N={n}: ms / MB" for n in sizes),
                 "time ∝ N^"]]
        for label in sorted({r["label"] for r in large}):
            pts = {r["N"]: r for r in large if r["label"] == label}
            cells = [f"{1e3 * pts[n]['seconds']:.1f} / {pts[n].get('transient_mb', math.nan):.0f}" if n in pts else ""
                     for n in sizes]
            xs = sorted(pts)
            slope = _exponent(xs, [pts[n]["seconds"] for n in xs]) if len(xs) >= 2 else math.nan
            rows.append([label, *cells, f"{slope:.2f}"])
        for line in _table(rows):
            write(line)
