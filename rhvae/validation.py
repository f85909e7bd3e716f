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


def _shape_text(shape: tuple[int, ...]) -> str:
    return f"(batch, {', '.join(map(str, shape))})"


def check_shape(shape: tuple[int, ...], name: str, example: int | tuple[int, ...], *,
                feature_name: str = "features", expected_by: str = "the model") -> None:
    """``shape`` is ``(B, *example)`` with ``B >= 1``; else an error naming ``name``, what the model
    expects and, when only the layout differs, the reshape that fixes it."""
    want = (example,) if isinstance(example, int) else tuple(example)
    if len(want) == 1 and len(shape) == 2 and shape[0] > 0 and shape[1] != want[0]:
        raise InputError(f"{name} has {shape[1]} {feature_name}; {expected_by} expects {want[0]}")
    if shape[1:] != want or shape[0] == 0:
        if len(shape) == len(want) + 1 and shape[0] == 0:
            raise InputError(f"{name} is empty (shape {shape}); need at least one row")
        hint = ""
        if len(shape) >= 1 and shape[0] > 0 and math.prod(shape[1:]) == math.prod(want):
            hint = f" (the same number of values: x.reshape(len(x), {', '.join(map(str, want))}))"
        if len(want) == 1:
            raise InputError(f"{name} must have 2 dimensions {_shape_text(want)}; got shape {shape}{hint}")
        raise InputError(f"{name} must have shape {_shape_text(want)} for {expected_by}; got {shape}{hint}")


def check_array(x: Any, name: str, features: int | tuple[int, ...], dtype: str, *, feature_name: str = "features",
                expected_by: str = "the model") -> np.ndarray:
    """``x`` as a finite float array ``(B, *features)`` of ``dtype``, ``B >= 1``; else a clear error.

    ``features``: the size of one row, or the shape of one example (``(C, H, W)`` for images)."""
    want = (features,) if isinstance(features, int) else tuple(features)
    try:
        arr = to_numpy(x)
    except Exception as exc:
        raise InputTypeError(f"{name} must be an array of shape {_shape_text(want)}; got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise InputTypeError(f"{name} must be a numeric array; got dtype object")
    if arr.dtype.kind != "f":
        raise InputTypeError(
            f"{name} has dtype {arr.dtype}; expected floating point data "
            f"(convert it, e.g. x.astype('float32') / 255 for 8-bit images)"
        )
    check_shape(arr.shape, name, want, feature_name=feature_name, expected_by=expected_by)
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
