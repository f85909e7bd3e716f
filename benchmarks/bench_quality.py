"""Model quality targets (``-m slow``; ``python -m pytest benchmarks/bench_quality.py -m slow -s``).

- ``test_nll_at_least_as_good_as_pythae``: pythae's protocol (:mod:`quality`), latent 2 and 16,
  3 seeds; rhvae on both backends and pythae 0.1.2 (when installed) side by side, every model
  scored by the same importance-sampled NLL (500 held-out rows, 200 samples), with pythae's
  plain VAE of the same networks for reference. Target: rhvae's mean NLL at most pythae's
  RHVAE's, per latent dimension and backend.
- ``test_no_divergence_at_the_defaults``: the library's defaults, ``T ∈ {0.4, 0.8, 1.5}``, latent
  2 and 16, batch and 256 fixed centroids, 3 seeds, both backends. Target: no NaN, no step whose
  loss exceeds 10× the running median, and the ELBO under the frozen metric within a few nats of
  the training-time one.

Runs go two at a time in subprocesses with one thread each (about 20 s of training per model).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from quality import PYTHAE_PROTOCOL

pytestmark = pytest.mark.slow
HERE = Path(__file__).parent
SEEDS = (0, 1, 2)


def _run_all(specs: list[dict]) -> list[dict]:
    """Each spec in its own process (``quality.py``), two at a time."""
    env = {**os.environ, "RHVAE_NUM_THREADS": "1",
           "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}

    def one(spec):
        done = subprocess.run([sys.executable, str(HERE / "quality.py"), json.dumps(spec)], env=env,
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{spec} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, specs))


def _print(capsys, lines: list[str]) -> None:
    with capsys.disabled():
        print("\n" + "\n".join(lines))


def test_nll_at_least_as_good_as_pythae(capsys):
    specs = [dict(who="rhvae", backend=b, latent_dim=d, seed=s, nll_rows=500, **PYTHAE_PROTOCOL)
             for b, d, s in itertools.product(("torch", "jax"), (2, 16), SEEDS)]
    try:
        import pythae  # noqa: F401
        specs += [dict(who=who, latent_dim=d, seed=s, nll_rows=500)
                  for who, d, s in itertools.product(("pythae", "pythae_vae"), (2, 16), SEEDS)]
    except ImportError:
        pass
    results = _run_all(specs)
    table: dict[tuple, list[float]] = {}
    for r in results:
        table.setdefault((r["who"] if r["who"] != "rhvae" else f"rhvae {r['backend']}", r["latent_dim"]), []).append(
            r.get("nll", math.nan))
    lines = ["held-out NLL (nats; 500 rows, 200 importance samples), pythae's protocol, seeds 0 1 2",
             f"{'model':14s} {'latent 2':>28s} {'latent 16':>28s}"]
    for who in sorted({k[0] for k in table}):
        cells = []
        for d in (2, 16):
            v = table[(who, d)]
            cells.append(f"{np.mean(v):7.2f} ({' / '.join(f'{x:.1f}' for x in v)})")
        lines.append(f"{who:14s} {cells[0]:>28s} {cells[1]:>28s}")
    _print(capsys, lines)
    for (who, d), values in table.items():
        assert np.all(np.isfinite(values)), (who, d, values)
        if who.startswith("rhvae") and ("pythae", d) in table:
            assert np.mean(values) <= np.mean(table[("pythae", d)]), (who, d)


def test_no_divergence_at_the_defaults(capsys):
    specs = [dict(who="rhvae", backend=b, latent_dim=d, seed=s, T=t, centroids=c)
             for b, t, d, c, s in itertools.product(("torch", "jax"), (0.4, 0.8, 1.5), (2, 16), ("batch", 256), SEEDS)]
    results = _run_all(specs)
    lines = ["library defaults; per cell: diverged runs, spiking steps, mean held-out ELBO, "
             "worst |frozen - training ELBO| on 1,000 training rows (3 seeds)",
             f"{'backend':7s} {'T':>4s} {'d':>3s} {'centroids':>9s} {'NaN':>4s} {'spikes':>6s} {'held-out':>9s} {'gap':>6s}"]
    for key, group in itertools.groupby(results, key=lambda r: (r["backend"], r["T"], r["latent_dim"], r["centroids"])):
        group = list(group)
        nan = sum(r["diverged"] is not None for r in group)
        gaps = [abs(r["train_elbo_frozen"] - r["train_elbo"]) for r in group if r["diverged"] is None]
        held = np.mean([r["heldout_elbo"] for r in group if r["diverged"] is None] or [math.nan])
        lines.append(f"{key[0]:7s} {key[1]:4.1f} {key[2]:3d} {str(key[3]):>9s} {nan:4d} "
                     f"{sum(r['spikes'] for r in group):6d} {held:9.2f} {max(gaps, default=math.nan):6.2f}")
    _print(capsys, lines)
    for r in results:
        assert r["diverged"] is None and r["spikes"] == 0, r
        assert np.isfinite(r["heldout_elbo"]), r
        assert abs(r["train_elbo_frozen"] - r["train_elbo"]) < 5.0, r
