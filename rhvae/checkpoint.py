"""Checkpoints: one file, ``PATH.npz``, written whole or not at all, that describes itself.

The file is a zip of ``.npy`` arrays (so ``numpy.load`` reads it) plus ``rhvae.json``: the format
version, the rhvae version, the writing backend, the full configuration, the ``repr`` and the
registry recipe of every component, the training counters, the shape, dtype and SHA-256 of every
array, and any caller ``metadata``. It is written to a temporary file, ``fsync``-ed and renamed
into place (:mod:`rhvae.atomic`), so a reader sees the previous checkpoint or the new one, never
a mix. :func:`load` verifies every hash, every shape against the model, every JSON field and the
finiteness of every array, and names the file and the field at fault. :func:`model_arguments`
gives what rebuilds the model itself from the file (:meth:`rhvae.RHVAE.from_checkpoint`). The arrays are backend-neutral: a checkpoint written on
torch loads on jax and back.

Checkpoints of rhvae 0.1 and 0.2 (format 1: ``PATH.npz`` arrays beside a ``PATH.json``) still load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rhvae.atomic import write_atomic
from rhvae.config import RHVAEConfig
from rhvae.errors import RhvaeError
from rhvae.math.metric import MetricState
from rhvae.registry import recipe
from rhvae.state import TrainState
from rhvae.tree import flatten, unflatten

if TYPE_CHECKING:
    from rhvae.model import RHVAE

FORMAT = "rhvae-checkpoint"
FORMAT_VERSION = 2
META_MEMBER = "rhvae.json"
"""The zip member holding the description (format 2)."""
_EXECUTION_ONLY = {"centroid_chunk"}
"""Config fields that change how sums run, not the numbers: a checkpoint loads whatever their value."""
_BEFORE_FIELD = {"M_max": None, "guard_fixed_point": False, "reweight_frozen_metric": False}
"""What the code did before these config fields existed, which a checkpoint without them had."""
COMPONENTS = ("encoder", "decoder", "metric", "prior", "grad_h", "tempering")
_CONSTRUCTOR = {"prior": "position_prior"}
"""The :class:`~rhvae.RHVAE` argument of each component whose name differs."""


class CheckpointError(RhvaeError, ValueError):
    """A checkpoint is missing, truncated, corrupted, foreign, or does not match the model loading it."""


def checkpoint_path(path: str | os.PathLike) -> Path:
    """``PATH.npz`` for ``PATH``, ``PATH.npz`` or (format 1) ``PATH.json``."""
    base = Path(path)
    if base.suffix in (".npz", ".json"):
        base = base.with_suffix("")
    return base.with_suffix(".npz")


def _components(model: RHVAE) -> dict[str, Any]:
    return {**model.components._asdict(), "tempering": model.tempering}


def describe(model: RHVAE) -> dict[str, Any]:
    """The JSON-able identity of ``model``: configuration, component ``repr``s and recipes."""
    parts = _components(model)
    return {
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(model.config).items()},
        "components": {k: repr(v) for k, v in parts.items()},
        "recipes": {k: recipe(v) for k, v in parts.items()},
    }


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _state_arrays(model: RHVAE, state: TrainState) -> dict[str, np.ndarray]:
    to_np = model.backend.to_numpy
    arrays = {f"params/{k}": to_np(v) for k, v in flatten(state.params)}
    arrays.update({f"opt_state/{k}": to_np(v) for k, v in flatten(state.opt_state)})
    if state.metric is not None:
        arrays.update({f"metric/{k}": to_np(v) for k, v in state.metric._asdict().items() if v is not None})
    if state.centroid_data is not None:
        arrays["centroid_data"] = to_np(state.centroid_data)
    return {k: np.asarray(v) for k, v in arrays.items()}


def save(model: RHVAE, state: TrainState, path: str | os.PathLike, metadata: dict | None = None) -> Path:
    """Write ``state`` to the single file ``PATH.npz`` atomically; returns its path.

    ``metadata``: any JSON-able dict stored as is (``rhvae train`` keeps its arguments there).
    """
    from rhvae import __version__

    target = checkpoint_path(path)
    arrays = _state_arrays(model, state)
    bad = [k for k, a in arrays.items() if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all()]
    if bad:  # load would refuse it: do not replace a good checkpoint with one that cannot be read back
        raise CheckpointError(f"not saving {target}: {', '.join(bad[:5])} hold non-finite values")
    target.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "rhvae_version": __version__,
        "backend": model.backend.name, "seed": state.seed, "step": state.step, "epoch": state.epoch,
        "batch_centroids": state.batch_centroids, **describe(model),
        "arrays": {k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _digest(a)} for k, a in arrays.items()},
        "metadata": metadata or {},
    }
    text = json.dumps(meta, indent=2)  # fails here, before any file is touched, on non-JSON metadata

    def write(handle) -> None:
        with zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            for key, array in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
            archive.writestr(META_MEMBER, text)

    write_atomic(target, write)
    sidecar = target.with_suffix(".json")
    if _is_format_1_description(sidecar):  # the description of an older checkpoint at this path: now stale
        sidecar.unlink()
    return target


def _is_format_1_description(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT and meta.get("format_version") == 1


# ---------------------------------------------------------------------------------- reading


class Saved(NamedTuple):
    """A checkpoint read and verified: its ``file``, its description ``meta`` and its ``arrays``."""

    file: Path
    meta: dict
    arrays: dict[str, np.ndarray]


def read(path: str | os.PathLike) -> Saved:
    """The checkpoint at ``path``, every field and (format 2) every hash verified."""
    return Saved(*_read(path))


def _read(path: str | os.PathLike, arrays: bool = True) -> tuple[Path, dict, dict[str, np.ndarray]]:
    """``(file, description, arrays)`` of the checkpoint at ``path``, every hash verified (format 2);
    ``arrays=False`` reads the description alone (and returns no arrays)."""
    file = checkpoint_path(path)
    if not file.is_file():
        raise CheckpointError(f"checkpoint file {file} does not exist")
    try:
        with zipfile.ZipFile(file) as archive:
            embedded = META_MEMBER in archive.namelist()
            if embedded:
                meta = _parse_meta(archive.read(META_MEMBER), f"{file}:{META_MEMBER}")
            else:  # format 1: the description is the JSON file beside the arrays
                sidecar = file.with_suffix(".json")
                if not sidecar.is_file():
                    raise CheckpointError(f"{file} holds no {META_MEMBER} and has no {sidecar.name} beside it: "
                                          f"not an rhvae checkpoint")
                meta = _parse_meta(sidecar.read_bytes(), str(sidecar))
            data = _npy_members(archive) if arrays else {}
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(f"{file} is truncated, corrupted or not an rhvae checkpoint: {exc}") from None
    if arrays and embedded:
        _check_arrays_against_description(file, meta, data)
    return file, meta, data


def _npy_members(archive: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """Every ``KEY.npy`` member as ``{KEY: array}`` (never unpickling)."""
    return {name[:-4]: np.lib.format.read_array(archive.open(name), allow_pickle=False)
            for name in archive.namelist() if name.endswith(".npy")}


def _parse_meta(raw: bytes, where: str) -> dict:
    try:
        meta = json.loads(raw.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where} is not a JSON rhvae checkpoint description: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{where} is not an rhvae checkpoint (no \"format\": \"{FORMAT}\")")
    if meta.get("format_version") not in (1, FORMAT_VERSION):
        raise CheckpointError(f"{where} has checkpoint format version {meta.get('format_version')!r}; "
                              f"this rhvae reads versions 1 and {FORMAT_VERSION}")
    _check_fields(meta, where)
    return meta


def _check_fields(meta: dict, where: str) -> None:
    """Every field :func:`load` uses has its type, else a :class:`CheckpointError` naming it."""
    def bad(field: str, expected: str) -> CheckpointError:
        return CheckpointError(f"{where}: field {field!r} must be {expected}; got {meta.get(field)!r}")

    for field in ("seed", "step", "epoch"):
        value = meta.get(field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(field, "an integer >= 0")
    value = meta.get("batch_centroids")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise bad("batch_centroids", "null or an integer >= 1")
    for field in ("config", "components"):
        if not isinstance(meta.get(field), dict):
            raise bad(field, "an object")
    if not isinstance(meta.get("backend"), str):
        raise bad("backend", "a backend name")
    for field in ("metadata", "recipes", "arrays"):
        if field in meta and not isinstance(meta[field], dict):
            raise bad(field, "an object")


def _check_arrays_against_description(file: Path, meta: dict, arrays: dict[str, np.ndarray]) -> None:
    listed = meta.get("arrays")
    if listed is None:
        raise CheckpointError(f"{file}: field 'arrays' is missing from {META_MEMBER}")
    if set(listed) != set(arrays):
        missing, extra = sorted(set(listed) - set(arrays)), sorted(set(arrays) - set(listed))
        raise CheckpointError(f"{file}: the arrays differ from its description: missing {missing}, unlisted {extra}")
    for key, array in arrays.items():
        entry = listed[key]
        if not isinstance(entry, dict) or entry.get("sha256") != _digest(array) \
                or entry.get("shape") != list(array.shape) or entry.get("dtype") != array.dtype.str:
            raise CheckpointError(f"{file}: array {key!r} does not match its recorded shape, dtype and "
                                  f"SHA-256 (the file was altered or corrupted)")


def read_metadata(path: str | os.PathLike) -> dict:
    """The description of the checkpoint at ``path``, its fields checked; the arrays are not read
    (:func:`load` reads them and verifies their hashes)."""
    return _read(path, arrays=False)[1]


def saved_config(meta: dict) -> dict[str, Any]:
    """The full configuration a checkpoint's description records: fields it predates read as the
    behaviour it was written with (``_BEFORE_FIELD``, else the field's default)."""
    defaults = {f.name: f.default for f in dataclasses.fields(RHVAEConfig) if f.default is not dataclasses.MISSING}
    return {**defaults, **_BEFORE_FIELD, **meta.get("config", {})}


def _expect_shapes(file: Path, arrays: dict[str, np.ndarray], config: RHVAEConfig) -> None:
    d, example = config.latent_dim, config.input_shape
    if "metric/centroids" in arrays:
        n = arrays["metric/centroids"].shape[0] if arrays["metric/centroids"].ndim else -1
        want = {"metric/centroids": (n, d), "metric/M": (n, d, d), "metric/M_packed": (n, d * (d + 1) // 2),
                "metric/log_sigma": (n, d)}
        for key, shape in want.items():
            if key in arrays and arrays[key].shape != shape:
                raise CheckpointError(f"{file}: {key} has shape {arrays[key].shape}; the model needs {shape}")
    elif any(k.startswith("metric/") for k in arrays):
        raise CheckpointError(f"{file}: metric arrays without metric/centroids")
    data = arrays.get("centroid_data")
    if data is not None and tuple(data.shape[1:]) != example:
        raise CheckpointError(f"{file}: centroid_data has shape {data.shape}; the model needs "
                              f"(N, {', '.join(map(str, example))})")
    for key, array in arrays.items():
        if not np.issubdtype(array.dtype, np.floating):
            raise CheckpointError(f"{file}: {key} has dtype {array.dtype}; expected floating point")
        if not np.isfinite(array).all():
            raise CheckpointError(f"{file}: {key} holds {int(np.size(array) - np.isfinite(array).sum())} "
                                  f"non-finite value(s)")


def load(model: RHVAE, path: str | os.PathLike, *, check_version: bool = True) -> TrainState:
    """The :class:`TrainState` saved at ``path``, as arrays of ``model``'s backend.

    Raises :class:`CheckpointError` naming every difference when the checkpoint's configuration
    or components differ from ``model``'s, when it was written by another rhvae version
    (``check_version=False`` accepts that), or when the file is missing, truncated, altered
    (a hash differs), holds a non-finite array or an array of the wrong shape.
    """
    return state_from(model, read(path), check_version=check_version)


def state_from(model: RHVAE, saved: Saved, *, check_version: bool = True) -> TrainState:
    """:func:`load`'s checks and conversion, on a checkpoint already :func:`read`."""
    from rhvae import __version__

    file, meta, arrays = saved

    problems = []
    if check_version and meta.get("rhvae_version") != __version__:
        problems.append(f"rhvae version: checkpoint {meta.get('rhvae_version')!r}, installed {__version__!r}")
    expected = describe(model)
    for section in ("config", "components"):
        saved, ours = meta[section], expected[section]
        if section == "config":  # fields added later read as what older checkpoints did
            saved = saved_config(meta)
        else:
            saved = {k: v for k, v in saved.items() if k in ours}  # format 1 had no tempering entry
        for key in sorted((set(saved) | set(ours)) - _EXECUTION_ONLY):
            if key in saved and saved.get(key) != ours.get(key):
                problems.append(f"{section}.{key}: checkpoint {saved.get(key)!r}, model {ours.get(key)!r}")
    if problems:
        raise CheckpointError(f"checkpoint {file} does not match the model:\n  " + "\n  ".join(problems))
    _expect_shapes(file, arrays, model.config)

    as_array = model.to_backend

    def group(prefix: str) -> dict:
        return unflatten({k[len(prefix):]: as_array(v) for k, v in arrays.items() if k.startswith(prefix)})

    params, opt_state = group("params/"), group("opt_state/")
    fresh = model.init(seed=meta["seed"])
    for name, tree, reference in (("params", params, fresh.params), ("opt_state", opt_state, fresh.opt_state)):
        want = {k: tuple(v.shape) for k, v in flatten(reference)}
        got = {k: tuple(v.shape) for k, v in flatten(tree)}
        if want != got:
            diff = sorted(set(want.items()) ^ set(got.items()))
            raise CheckpointError(f"checkpoint {file}: {name} arrays differ from the model's: {diff[:6]}")
    metric = None
    if "metric/centroids" in arrays:
        metric = MetricState(*(as_array(arrays[f"metric/{f}"]) if f"metric/{f}" in arrays else None
                               for f in MetricState._fields))
    centroid_data = as_array(arrays["centroid_data"]) if "centroid_data" in arrays else None
    return TrainState(params, opt_state, metric, centroid_data, meta["seed"], meta["step"], meta["epoch"],
                      meta.get("batch_centroids"))


def model_arguments(saved: Saved, backend: str | None = None, registry=None) -> dict[str, Any]:
    """The keyword arguments of :class:`rhvae.RHVAE` that rebuild the model of a checkpoint: its
    configuration, and every component from the registry recipe it was created with, on ``backend``
    (default: the one that wrote it). A component built without the registry cannot be rebuilt:
    then build the model as before and call :meth:`RHVAE.load`.
    """
    from rhvae.registry import get_registry

    file, meta, _ = saved
    recipes = meta.get("recipes") or {}
    missing = [k for k in COMPONENTS if not isinstance(recipes.get(k), dict)]
    if missing:
        raise CheckpointError(
            f"{file} cannot rebuild its model: no registry recipe for {', '.join(missing)} (components built "
            f"directly, not by name or Registry.create, or a checkpoint of rhvae 0.2 or older); build the model "
            f"yourself and call model.load({str(file)!r})")
    reg = registry if registry is not None else get_registry()
    backend = backend or meta["backend"]
    built = {}
    for kind in COMPONENTS:
        entry = recipes[kind]
        kwargs = entry.get("kwargs") or {}
        if not isinstance(kwargs, dict) or not isinstance(entry.get("name"), str):
            raise CheckpointError(f"{file}: field 'recipes.{kind}' must be {{\"name\": str, \"kwargs\": object}}; "
                                  f"got {entry!r}")
        try:
            built[_CONSTRUCTOR.get(kind, kind)] = reg.create(kind, entry["name"], backend=backend, **kwargs)
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RhvaeError):
                raise
            raise CheckpointError(f"{file}: field 'recipes.{kind}' does not build a {kind}: {exc}") from exc
    hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in saved_config(meta).items()}
    return {"backend": backend, "registry": reg, **built, **hyper}
