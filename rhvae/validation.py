"""Checks of user input at the API boundary, before any computation.

Each error names the argument, what was expected and what arrived.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from rhvae.errors import InputError, InputTypeError


def to_numpy(x: Any) -> np.ndarray:
    """A numpy view of ``x`` (numpy, list, torch tensor on any device, jax array)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x)


def check_array(x: Any, name: str, features: int, dtype: str, *, feature_name: str = "features",
                expected_by: str = "the model") -> np.ndarray:
    """``x`` as a finite float array ``(B, features)`` of ``dtype``, ``B >= 1``; else a clear error."""
    try:
        arr = to_numpy(x)
    except Exception as exc:
        raise InputTypeError(f"{name} must be an array of shape (batch, {features}); got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise InputTypeError(f"{name} must be a numeric array; got dtype object")
    if arr.dtype.kind != "f":
        raise InputTypeError(
            f"{name} has dtype {arr.dtype}; expected floating point data "
            f"(convert it, e.g. x.astype('float32') / 255 for 8-bit images)"
        )
    if arr.ndim != 2:
        raise InputError(f"{name} must have 2 dimensions (batch, {features}); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name} is empty (shape {arr.shape}); need at least one row")
    if arr.shape[1] != features:
        raise InputError(f"{name} has {arr.shape[1]} {feature_name}; {expected_by} expects {features}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise InputError(f"{name} contains {bad} NaN or infinite value(s)")
    return arr.astype(dtype, copy=False)


def check_support(x: np.ndarray, name: str, support: tuple[float, float], likelihood: object) -> None:
    """Values of ``x`` inside the likelihood's ``support`` (e.g. ``[0, 1]`` for Bernoulli)."""
    lo, hi = support
    xmin, xmax = float(x.min()), float(x.max())
    if xmin < lo or xmax > hi:
        raise InputError(
            f"{name} has values in [{xmin:g}, {xmax:g}]; the {likelihood!r} likelihood expects [{lo:g}, {hi:g}]"
        )


def check_positive(name: str, value: Any) -> float:
    """``value`` as a finite float ``> 0``; ``TypeError``/``ValueError`` naming ``name`` otherwise."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be a real number; got {value!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a finite number > 0; got {value!r}")
    return value


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum`` (bools refused); ``TypeError``/``ValueError`` naming ``name``."""
    try:
        if isinstance(value, bool):
            raise TypeError
        value = operator.index(value)
    except TypeError:
        raise InputTypeError(f"{name} must be an integer; got {value!r}") from None
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}; got {value}")
    return value


def check_seed(name: str, value: Any) -> int:
    """``value`` as an int ``>= 0``, what ``numpy.random.default_rng`` takes; naming ``name`` otherwise."""
    return check_count(name, value, minimum=0)
