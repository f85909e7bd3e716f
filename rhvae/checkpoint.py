"""Portable checkpoints: ``PATH.npz`` (every array, as numpy) and ``PATH.json`` (what made them).

The arrays are backend-neutral, so a checkpoint written on torch loads on jax and back. The JSON
holds the format version, the rhvae version, the writing backend, the full configuration and
the ``repr`` of every component; :func:`load` checks them against the model it loads into and
names every difference. Each file is written to a temporary name and renamed into place, so an
interrupted save never leaves a half-written checkpoint behind.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rhvae.config import RHVAEConfig
from rhvae.errors import RhvaeError
from rhvae.math.metric import MetricState
from rhvae.tree import flatten, unflatten

if TYPE_CHECKING:
    from rhvae.model import RHVAE, TrainState

FORMAT = "rhvae-checkpoint"
FORMAT_VERSION = 1
_EXECUTION_ONLY = {"centroid_chunk"}
"""Config fields that change how sums run, not the numbers: a checkpoint loads whatever their value."""
_BEFORE_FIELD = {"M_max": None, "guard_fixed_point": False, "reweight_frozen_metric": False}
"""What the code did before these config fields existed, which a checkpoint without them had."""


class CheckpointError(RhvaeError, ValueError):
    """A checkpoint is missing, truncated, foreign, or does not match the model loading it."""


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".npz"), base.with_suffix(".json")


def describe(model: RHVAE) -> dict[str, Any]:
    """The JSON-able identity of ``model``: configuration and component ``repr``s."""
    parts = model.components._asdict()
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model.config).items()},
        "components": {**{k: repr(v) for k, v in parts.items()}, "tempering": repr(model.tempering)},
    }


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model: RHVAE, state: TrainState, path: str | os.PathLike,
         metadata: dict | None = None) -> tuple[Path, Path]:
    """Write ``state`` to ``PATH.npz`` and ``PATH.json``; returns both paths.

    ``metadata``: any JSON-able dict stored as is (``rhvae train`` keeps its arguments there).
    """
    from rhvae import __version__

    npz_path, json_path = _paths(path)
    npz_path.parent.mkdir(parents=True, exist_ok=True)
    to_np = model.backend.to_numpy
    arrays = {f"params/{k}": to_np(v) for k, v in flatten(state.params)}
    arrays.update({f"opt_state/{k}": to_np(v) for k, v in flatten(state.opt_state)})
    if state.metric is not None:
        arrays.update({f"metric/{k}": to_np(v) for k, v in state.metric._asdict().items() if v is not None})
    if state.centroid_data is not None:
        arrays["centroid_data"] = to_np(state.centroid_data)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rhvae_version": __version__,
        "backend": model.backend.name, "seed": state.seed, "step": state.step, "epoch": state.epoch,
        "batch_centroids": state.batch_centroids,
        **describe(model), "metadata": metadata or {},
    }
    _atomic_write(npz_path, lambda handle: np.savez(handle, **arrays))
    _atomic_write(json_path, lambda handle: handle.write(json.dumps(meta, indent=2).encode()))
    return npz_path, json_path


def _read_meta(json_path: Path) -> dict:
    if not json_path.is_file():
        raise CheckpointError(f"checkpoint file {json_path} does not exist")
    try:
        meta = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{json_path} is not a JSON rhvae checkpoint description: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{json_path} is not an rhvae checkpoint (no \"format\": \"{FORMAT}\")")
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{json_path} has checkpoint format version {meta.get('format_version')!r}; "
                              f"this rhvae reads version {FORMAT_VERSION}")
    return meta


def _read_arrays(npz_path: Path) -> dict[str, np.ndarray]:
    if not npz_path.is_file():
        raise CheckpointError(f"checkpoint file {npz_path} does not exist")
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CheckpointError(f"{npz_path} is truncated or not an .npz archive: {exc}") from None


def saved_config(meta: dict) -> dict[str, Any]:
    """The full configuration a checkpoint's description records: fields it predates read as the
    behaviour it was written with (``_BEFORE_FIELD``, else the field's default)."""
    defaults = {f.name: f.default for f in dataclasses.fields(RHVAEConfig) if f.default is not dataclasses.MISSING}
    return {**defaults, **_BEFORE_FIELD, **meta.get("config", {})}


def read_metadata(path: str | os.PathLike) -> dict:
    """The JSON description of the checkpoint at ``path`` (checked to be an rhvae checkpoint)."""
    return _read_meta(_paths(path)[1])


def load(model: RHVAE, path: str | os.PathLike, *, check_version: bool = True) -> TrainState:
    """The :class:`TrainState` saved at ``path``, as arrays of ``model``'s backend.

    Raises :class:`CheckpointError` naming every difference when the checkpoint's configuration
    or components differ from ``model``'s, when it was written by another rhvae version
    (``check_version=False`` accepts that), or when the files are missing, truncated or foreign.
    """
    from rhvae import __version__
    from rhvae.model import TrainState

    npz_path, json_path = _paths(path)
    meta, arrays = _read_meta(json_path), _read_arrays(npz_path)
    problems = []
    if check_version and meta.get("rhvae_version") != __version__:
        problems.append(f"rhvae version: checkpoint {meta.get('rhvae_version')!r}, installed {__version__!r}")
    expected = describe(model)
    for section in ("config", "components"):
        saved, ours = meta.get(section, {}), expected[section]
        if section == "config":  # fields added later read as what older checkpoints did
            saved = saved_config(meta)
        for key in sorted((set(saved) | set(ours)) - _EXECUTION_ONLY):
            if saved.get(key) != ours.get(key):
                problems.append(f"{section}.{key}: checkpoint {saved.get(key)!r}, model {ours.get(key)!r}")
    if problems:
        raise CheckpointError(f"checkpoint {npz_path} does not match the model:\n  " + "\n  ".join(problems))

    as_array = model._array

    def group(prefix: str) -> dict:
        return unflatten({k[len(prefix):]: as_array(v) for k, v in arrays.items() if k.startswith(prefix)})

    params, opt_state = group("params/"), group("opt_state/")
    fresh = model.init(seed=int(meta["seed"]))
    for name, tree, reference in (("params", params, fresh.params), ("opt_state", opt_state, fresh.opt_state)):
        want = {k: tuple(v.shape) for k, v in flatten(reference)}
        got = {k: tuple(v.shape) for k, v in flatten(tree)}
        if want != got:
            diff = sorted(set(want.items()) ^ set(got.items()))
            raise CheckpointError(f"checkpoint {npz_path}: {name} arrays differ from the model's: {diff[:6]}")
    metric = None
    if "metric/centroids" in arrays:
        metric = MetricState(*(as_array(arrays[f"metric/{f}"]) if f"metric/{f}" in arrays else None
                               for f in MetricState._fields))
    centroid_data = as_array(arrays["centroid_data"]) if "centroid_data" in arrays else None
    batch_centroids = meta.get("batch_centroids")
    return TrainState(params, opt_state, metric, centroid_data, int(meta["seed"]),
                      int(meta["step"]), int(meta["epoch"]), None if batch_centroids is None else int(batch_centroids))
