"""Convergence diagnostics of sampler chains, from ArviZ (``pip install 'rhvae[diagnostics]'``).

For a trace of ``n`` chains, each of ``T`` draws of a ``d``-dimensional point, per coordinate:
the bulk and tail effective sample sizes (rank-normalised, Vehtari et al. 2021) and the
rank-normalised split R-hat (≈ 1 when the chains agree; well above 1 when chains started at
different centroids have stayed in different modes).
"""

from __future__ import annotations

import warnings

import numpy as np


def chain_diagnostics(trace: np.ndarray) -> dict[str, np.ndarray] | None:
    """``{"ess_bulk", "ess_tail", "r_hat"}``, each ``(d,)``, for ``trace (T, n, d)`` (draw, chain,
    coordinate); ``None`` without ArviZ or with fewer than 2 chains or 4 draws."""
    trace = np.asarray(trace, dtype=float)
    if trace.ndim != 3 or trace.shape[0] < 4 or trace.shape[1] < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ArviZ's notice of its coming refactor
        warnings.simplefilter("ignore", UserWarning)  # "more chains than draws": many short chains is the design
        try:
            import arviz
        except ImportError:
            return None
        data = arviz.convert_to_dataset({"z": np.transpose(trace, (1, 0, 2))})  # (chain, draw, d)
        return {"ess_bulk": arviz.ess(data, method="bulk")["z"].values,
                "ess_tail": arviz.ess(data, method="tail")["z"].values,
                "r_hat": arviz.rhat(data)["z"].values}
