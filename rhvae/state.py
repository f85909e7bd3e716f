"""The values a model hands back and forth: its training state, the noise of one ELBO evaluation,
generated samples and geodesics. Plain containers, so the modules that train, check-point and
evaluate a model share them without importing the model."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np

from rhvae.interfaces import Array
from rhvae.math.metric import MetricState


class Samples(NamedTuple):
    """Generated data ``x (n, *output_shape)`` (the decoder's mean), their latent points ``z (n, d)``
    and the sampler's acceptance rate over all chains and kept transitions (``nan`` for the
    prior). From the HMC sampler also: ``acceptance_per_chain (n,)``, the frozen
    ``step_size``, the ``trace (transitions, n, d)`` of kept points, and
    ``diagnostics`` (:func:`rhvae.diagnostics.chain_diagnostics`: ESS and R-hat per
    coordinate; ``None`` without ArviZ) and the name of the ``target`` sampled."""

    x: np.ndarray
    z: np.ndarray
    acceptance: float
    acceptance_per_chain: np.ndarray | None = None
    step_size: float | None = None
    trace: np.ndarray | None = None
    diagnostics: dict | None = None
    target: str | None = None


class Geodesic(NamedTuple):
    """A minimal-energy path ``z (n + 1, d)`` between two latent points, its metric ``length`` and
    ``energy``, the metric length of the straight segment, and the decoded path ``x (n + 1, D)``."""

    z: np.ndarray
    length: float
    energy: float
    straight_length: float
    x: np.ndarray


class Noise(NamedTuple):
    """The standard normal draws of one ELBO evaluation: ``eps`` for ``z0``, ``xi`` for ``γ``; ``(B, d)``."""

    eps: np.ndarray
    xi: np.ndarray


@dataclass(frozen=True)
class TrainState:
    """Everything that changes during training, as backend arrays.

    ``params``: ``{"encoder": {...}, "decoder": {...}, "metric": {...}}``; ``opt_state``: Adam's;
    ``metric``: the frozen ``MetricState`` used for evaluation and sampling (``None`` until first
    computed); ``centroid_data``: the fixed centroid inputs, or ``None`` for the current batch;
    ``batch_centroids``: with ``centroid_data=None``, how many centroids each training step
    summed over (the batch size :meth:`RHVAE.fit` used; see :meth:`RHVAE.refresh_metric`).
    """

    params: dict
    opt_state: dict
    metric: MetricState | None
    centroid_data: Array | None
    seed: int
    step: int = 0
    epoch: int = 0
    batch_centroids: int | None = None

    def replace(self, **changes: Any) -> TrainState:
        return replace(self, **changes)
