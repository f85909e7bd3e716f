"""The training loop: shuffled batches, Adam steps, a progress bar, metric refresh each epoch."""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from rhvae import seeds
from rhvae.errors import BadBatchError, InputError, TrainingDivergedError, TrainingInterrupted
from rhvae.state import Noise

if TYPE_CHECKING:
    from rhvae.interfaces import DataParallel
    from rhvae.model import RHVAE
    from rhvae.state import TrainState


def fit(model: RHVAE, state: TrainState, x: Any, *, epochs: int = 1, batch_size: int = 100,
        x_out: Any | None = None, validation_data: Any | None = None,
        progress: bool = True, distributed: bool = False) -> tuple[TrainState, dict]:
    """Train ``model`` from ``state`` on ``x`` (targets ``x_out``, default ``x``).

    ``x`` is anything :class:`rhvae.data.Rows` reads: an array, a memory-mapped ``.npy`` (or its
    path), an h5py/zarr array, or a list of such shards; only the current batch is ever read.
    Each epoch shuffles with a generator seeded by ``(state.seed, 2, epoch)``, takes one Adam step
    per batch (noise seeded by ``(state.seed, 1, step)``), then refreshes the frozen metric state:
    from the fixed centroid data, or from all of ``x`` when ``centroids="batch"``.
    ``validation_data`` (``x`` or ``(x, x_out)``) adds the held-out ELBO per epoch to the history.

    ``distributed=True`` splits every global batch of ``batch_size`` rows over the backend's
    :class:`~rhvae.interfaces.DataParallel` (torch: the ``torchrun`` processes, each reading
    only its rows, gradients summed with weights ``n_local / n``; JAX: the batch sharded over
    every device): the parameters after each step are those of a single-process step on the
    same global batch. A final batch with fewer rows than processes is skipped. Only the main
    process shows progress.

    Returns the new state and ``history = {"loss": per step, "epoch_loss", "epoch_seconds",
    "val_elbo", "skipped_steps"}``. A step with a finite loss but a non-finite gradient is not
    applied; its step number goes to ``skipped_steps`` and ``fit`` warns. A non-finite loss raises
    :class:`TrainingDivergedError`, naming the epoch and step and carrying the last state whose
    loss was measured finite (its loss is ``history["loss"][-1]``). A bad row met in a lazily
    read source (NaN, or outside the likelihood's support) raises
    :class:`~rhvae.errors.BadBatchError` carrying the state after the last good step, and Ctrl-C
    :class:`~rhvae.errors.TrainingInterrupted` (a ``KeyboardInterrupt``) carrying the state after
    the last completed step.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InputError(f"epochs must be an integer >= 1; got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    rows_in, rows_out = model.data_pair(x, x_out)
    val = None
    if validation_data is not None:
        val = validation_data if isinstance(validation_data, tuple) else (validation_data, None)
        val = model.data_pair(*val)
    parallel = model.data_parallel() if distributed else None
    progress = progress and (parallel is None or parallel.is_main)
    n = len(rows_in)
    n_batches = math.ceil(n / batch_size)
    history: dict[str, list] = {"loss": [], "epoch_loss": [], "epoch_seconds": [], "val_elbo": [], "skipped_steps": []}
    last_finite: TrainState | None = None  # the last state whose loss was measured finite
    for _ in range(epochs):
        epoch = state.epoch
        order = np.random.default_rng((state.seed, seeds.SHUFFLE, epoch)).permutation(n)
        start, losses = time.perf_counter(), []
        bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}", disable=not progress, leave=False)
        stepped = state
        try:
            stepped, last_finite = _steps(model, state, last_finite, bar, order, batch_size, rows_in, rows_out,
                                          parallel, losses, history)
            bar.close()
            state = _local(stepped, parallel).replace(
                epoch=epoch + 1,
                batch_centroids=min(batch_size, n) if stepped.centroid_data is None else stepped.batch_centroids)
            state = model.refresh_metric(state, rows_in if state.centroid_data is None else None, parallel=parallel)
        except KeyboardInterrupt as exc:  # Ctrl-C: hand back what was done; still a KeyboardInterrupt
            if isinstance(exc, TrainingInterrupted):
                raise
            done = exc.state if isinstance(exc, _Interrupted) else stepped
            bar.close()
            history["loss"].extend(losses)
            raise TrainingInterrupted(epoch, done.step, _local(done, parallel), history) from None
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
    if history["skipped_steps"]:
        warnings.warn(f"{len(history['skipped_steps'])} step(s) had a finite loss but a non-finite gradient and "
                      f"were skipped (steps {history['skipped_steps'][:10]}); history['skipped_steps'] lists them",
                      RuntimeWarning, stacklevel=3)
    return state, history


def _steps(model: RHVAE, state: TrainState, last_finite: TrainState | None, bar, order: np.ndarray,
           batch_size: int, rows_in, rows_out, parallel: DataParallel | None, losses: list,
           history: dict) -> tuple[TrainState, TrainState | None]:
    """One epoch's Adam steps over the batches ``order`` splits into; appends each loss to
    ``losses``; returns the state after them and the last state whose loss was measured finite.
    A bad batch or a non-finite loss raises with the state worth keeping (and the epoch's losses
    so far moved into ``history``); Ctrl-C leaves ``state`` as the last completed step (the
    caller raises :class:`TrainingInterrupted` with it)."""
    epoch = state.epoch
    try:
        for b in bar:
            idx = order[b * batch_size:(b + 1) * batch_size]
            noise = model.draw_noise(idx.size, None, model.step_seed(state))
            share = slice(0, idx.size)
            if parallel is not None:
                if idx.size < parallel.world_size:
                    if not bar.disable:
                        tqdm.write(f"skipped the last batch: {idx.size} row(s) for {parallel.world_size} processes")
                    continue
                share = parallel.local_rows(idx.size)
            rows = idx[share]
            try:
                x_batch = rows_in.read(rows)
                x_target = rows_out.read_as_target(rows, x_batch, rows_in)
            except ValueError as exc:  # a lazy source checks rows as they are read
                history["loss"].extend(losses)
                raise BadBatchError(epoch, state.step, str(exc), _local(state, parallel), history) from None
            new_state, value, skipped = model.train_step(
                state, x_batch, x_target, Noise(noise.eps[share], noise.xi[share]), parallel, idx.size)
            if not math.isfinite(value):
                history["loss"].extend(losses)
                kept = last_finite if last_finite is not None else state
                raise TrainingDivergedError(epoch, state.step, value, _local(kept, parallel), history,
                                            finite=last_finite is not None)
            if skipped:  # a finite loss with a non-finite gradient: the update was not applied
                history["skipped_steps"].append(state.step)
            last_finite, state = state, new_state
            losses.append(value)
            bar.set_postfix(loss=f"{value:.3f}")
    except KeyboardInterrupt as exc:
        raise _Interrupted(state) from exc
    return state, last_finite


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C inside :func:`_steps`, carrying the state after the last completed step to :func:`fit`."""

    def __init__(self, state: TrainState) -> None:
        super().__init__()
        self.state = state


def _local(state: TrainState, parallel: DataParallel | None) -> TrainState:
    """The state with parameters and optimiser state as this process uses them outside the step."""
    if parallel is None:
        return state
    return state.replace(params=parallel.local(state.params), opt_state=parallel.local(state.opt_state))
