"""Data sets read a batch at a time, so training and evaluation never hold more than a batch.

:class:`Rows` wraps an in-memory array, a memory-mapped ``.npy`` file (a path, or
``np.load(path, mmap_mode="r")``), any array-like with ``shape`` and row indexing (h5py, zarr)
or a sequence of such arrays (shards, concatenated without copying). An in-memory array is
checked in full when wrapped; anything else is checked batch by batch as it is read.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rhvae.errors import InputError, InputTypeError
from rhvae import validation


def _is_array_like(x: Any) -> bool:
    return hasattr(x, "shape") and hasattr(x, "__getitem__") and hasattr(x, "dtype")


def _in_memory(x: Any) -> bool:
    """Arrays already in memory (numpy, torch, jax, lists) are checked whole; others lazily."""
    return ((isinstance(x, np.ndarray) and not isinstance(x, np.memmap)) or hasattr(x, "detach")
            or type(x).__module__.startswith("jax") or not _is_array_like(x))


class _Shards:
    """Arrays with the same column count seen as one, row indices mapped to (shard, row)."""

    def __init__(self, shards: Sequence[Any]) -> None:
        self.shards = list(shards)
        widths = {tuple(s.shape[1:]) for s in self.shards}
        if len(widths) != 1:
            raise InputError(f"shards must have the same trailing shape; got {sorted(widths)}")
        self.offsets = np.cumsum([0] + [s.shape[0] for s in self.shards])
        self.shape = (int(self.offsets[-1]), *self.shards[0].shape[1:])
        self.dtype = np.result_type(*(s.dtype for s in self.shards))

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        which = np.searchsorted(self.offsets, idx, side="right") - 1
        out = np.empty((idx.size, *self.shape[1:]), dtype=self.dtype)
        for k in np.unique(which):
            mask = which == k
            out[mask] = self.shards[k][idx[mask] - self.offsets[k]]
        return out


def _load_npy(path: str | os.PathLike, name: str) -> np.ndarray:
    """The ``.npy`` file at ``path``, memory-mapped; a string that is no such file is an error that
    says so (a string is read as a path, never as data)."""
    if not str(path).endswith(".npy") or not os.path.isfile(path):
        raise InputError(f"{name}: a string or path is read as a .npy file of rows; {str(path)!r} is not an "
                         f"existing .npy file (pass an array for data)")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise InputError(f"{name}: cannot read {str(path)!r} as a .npy array without pickle: {exc}") from None


class Rows:
    """``n`` rows of ``features`` columns (or examples of shape ``features``), read on demand as
    ``dtype`` and checked as they are read."""

    def __init__(self, data: Any, name: str, features: int | tuple[int, ...], dtype: str, *, support: tuple[float, float] | None = None,
                 likelihood: object = None, feature_name: str = "features", expected_by: str = "the model") -> None:
        self.name, self.dtype, self.support, self.likelihood = name, dtype, support, likelihood
        if isinstance(data, (str, os.PathLike)):
            data = _load_npy(data, name)
        elif isinstance(data, (list, tuple)) and data and all(_is_array_like(s) for s in data):
            data = _Shards(data)
        if _in_memory(data):
            self.data, self.lazy = validation.check_array(data, name, features, dtype, feature_name=feature_name,
                                                          expected_by=expected_by), False
            self.check_support(self.data)
            return
        validation.check_shape(tuple(data.shape), name, features, feature_name=feature_name, expected_by=expected_by)
        if np.dtype(data.dtype).kind != "f":
            raise InputTypeError(f"{name} has dtype {data.dtype}; expected floating point data")
        self.data, self.lazy = data, True

    def check_support(self, arr: np.ndarray) -> None:
        """Raise when ``arr`` leaves the likelihood's support (when these rows are a target)."""
        if self.support is not None:
            validation.check_support(arr, self.name, self.support, self.likelihood)

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def all(self) -> np.ndarray:
        """Every row, checked: the array itself when it was checked on arrival."""
        return self.read(np.arange(len(self))) if self.lazy else self.data

    def as_target(self, support: tuple[float, float] | None, likelihood: object) -> Rows:
        """The same rows as the decoder's target: the same data, plus the likelihood's support check."""
        target = copy.copy(self)
        target.support, target.likelihood = support, likelihood
        if not target.lazy:
            target.check_support(target.data)
        return target

    def read(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (any order, repeats allowed), as a checked ``dtype`` array; a lazy source is
        read once per distinct row, in increasing order (as h5py requires)."""
        idx = np.asarray(idx)
        if not self.lazy:
            return self.data[idx]
        unique, inverse = np.unique(idx, return_inverse=True)
        rows = np.asarray(self.data[unique], dtype=self.dtype)
        if not np.all(np.isfinite(rows)):
            bad = unique[~np.all(np.isfinite(rows.reshape(len(rows), -1)), axis=1)]
            raise InputError(f"{self.name} contains NaN or infinite values in row(s) {bad[:5].tolist()}")
        self.check_support(rows)
        return rows[inverse]

    def read_as_target(self, idx: np.ndarray, read: np.ndarray, source: Rows) -> np.ndarray:
        """Rows ``idx`` of this target source, reusing ``read`` (rows ``idx`` of ``source``) when both
        wrap the same data: a lazy file is then read once per batch."""
        if source.data is not self.data:
            return self.read(idx)
        rows = read.astype(self.dtype, copy=False)
        self.check_support(rows)
        return rows


def padded_chunks(n: int, size: int) -> list[tuple[np.ndarray, int]]:
    """Row indices of ``n`` rows in chunks of ``min(size, n)``, the last padded by repeating its
    final row, with how many rows of each to keep: one compiled function serves every chunk."""
    size = min(size, n)
    return [(np.minimum(np.arange(i, i + size), n - 1), min(size, n - i)) for i in range(0, n, size)]
