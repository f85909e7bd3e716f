"""The training loop: shuffled batches, Adam steps, a progress bar, metric refresh each epoch."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from rhvae.errors import TrainingDivergedError

if TYPE_CHECKING:
    from rhvae.model import RHVAE, TrainState

_SHUFFLE_STREAM = 2


def fit(model: RHVAE, state: TrainState, x: Any, *, epochs: int = 1, batch_size: int = 100,
        x_out: Any | None = None, validation_data: Any | None = None,
        progress: bool = True) -> tuple[TrainState, dict]:
    """Train ``model`` from ``state`` on ``x`` (targets ``x_out``, default ``x``).

    Each epoch shuffles with a generator seeded by ``(state.seed, 2, epoch)``, takes one Adam step
    per batch (noise seeded by ``(state.seed, 1, step)``), then refreshes the frozen metric state:
    from the fixed centroid data, or from all of ``x`` when ``centroids="batch"``.
    ``validation_data`` (``x`` or ``(x, x_out)``) adds the held-out ELBO per epoch to the history.

    Returns the new state and ``history = {"loss": per step, "epoch_loss", "epoch_seconds",
    "val_elbo"}``. A non-finite loss raises :class:`TrainingDivergedError`, naming the epoch and
    step and carrying the last state whose loss was finite.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1; got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    x_in, x_o = model._pair(x, x_out)
    val = None
    if validation_data is not None:
        val = validation_data if isinstance(validation_data, tuple) else (validation_data, None)
        val = model._pair(*val)
    n = x_in.shape[0]
    n_batches = math.ceil(n / batch_size)
    history: dict[str, list] = {"loss": [], "epoch_loss": [], "epoch_seconds": [], "val_elbo": []}
    for _ in range(epochs):
        epoch = state.epoch
        order = np.random.default_rng((state.seed, _SHUFFLE_STREAM, epoch)).permutation(n)
        start, losses = time.perf_counter(), []
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}", disable=not progress, leave=False)
        for b in bar:
            idx = order[b * batch_size:(b + 1) * batch_size]
            new_state, value = model.step(state, x_in[idx], x_o[idx])
            if not math.isfinite(value):
                history["loss"].extend(losses)
                raise TrainingDivergedError(epoch, state.step, value, state, history)
            state = new_state
            losses.append(value)
            bar.set_postfix(loss=f"{value:.3f}")
        bar.close()
        state = state.replace(epoch=epoch + 1)
        state = model.refresh_metric(state, x_in if state.centroid_data is None else None)
        history["loss"].extend(losses)
        history["epoch_loss"].append(float(np.mean(losses)))
        history["epoch_seconds"].append(time.perf_counter() - start)
        if val is not None:
            history["val_elbo"].append(model.elbo(state, *val, seed=state.seed))
        if progress:
            msg = f"epoch {epoch + 1}: loss {history['epoch_loss'][-1]:.3f}"
            if val is not None:
                msg += f", held-out ELBO {history['val_elbo'][-1]:.3f}"
            tqdm.write(msg + f" ({history['epoch_seconds'][-1]:.1f} s)")
    return state, history
