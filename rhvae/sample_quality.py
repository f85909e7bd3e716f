"""How good are generated samples? Distances in the feature space of a small classifier trained on
the data itself (no download): a Fréchet distance and k-NN precision/recall.

The features are the hidden activations ``relu(x W + b)`` of a one-hidden-layer scikit-learn
``MLPClassifier`` trained on labelled rows. This is the recipe of the Fréchet Inception Distance
(Heusel et al. 2017) and of improved precision/recall (Kynkäänniemi et al. 2019) with a tiny
in-domain network in place of Inception: the numbers rank samplers of the same data against
each other, and are **not comparable to published FID values**.

- Fréchet distance between Gaussians fitted to two feature sets:
  ``FD = ‖μ_r - μ_g‖² + tr Σ_r + tr Σ_g - 2 tr (Σ_r^{½} Σ_g Σ_r^{½})^{½}``.
- Precision: the fraction of generated points inside the union of the real points' k-NN balls
  (how many samples look like data); recall: the fraction of real points inside the generated
  points' k-NN balls (how much of the data the samples cover).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rhvae.errors import InputError, RhvaeError


def _sym_sqrt(a: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((a + a.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(real: np.ndarray, generated: np.ndarray) -> float:
    """The Fréchet distance between Gaussians fitted to the rows of ``real`` and ``generated``."""
    mu_r, mu_g = real.mean(axis=0), generated.mean(axis=0)
    cov_r, cov_g = np.cov(real, rowvar=False), np.cov(generated, rowvar=False)
    root = _sym_sqrt(cov_r)
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root @ cov_g @ root), 0.0, None)).sum()
    return float(np.sum((mu_r - mu_g) ** 2) + np.trace(cov_r) + np.trace(cov_g) - 2.0 * cross)


def _knn_radii(points: np.ndarray, k: int) -> np.ndarray:
    d2 = np.sum((points[:, None, :] - points[None, :, :]) ** 2, axis=-1)
    return np.sqrt(np.sort(d2, axis=1)[:, k])  # column 0 is the point itself


def _covered(queries: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    d2 = np.sum((queries[:, None, :] - centres[None, :, :]) ** 2, axis=-1)
    return float(np.mean(np.any(d2 <= radii[None, :] ** 2, axis=1)))


def precision_recall(real: np.ndarray, generated: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s precision and recall with ``k``-nearest-neighbour balls."""
    precision = _covered(generated, real, _knn_radii(real, k))
    recall = _covered(real, generated, _knn_radii(generated, k))
    return precision, recall


@dataclass(frozen=True)
class SampleQuality:
    """Fréchet distance (lower is better), precision and recall (higher is better) in the feature
    space of a classifier trained on the data; ``n`` rows on each side."""

    frechet: float
    precision: float
    recall: float
    n: int


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    return x.reshape(len(x), -1)


class FeatureSpace:
    """The hidden layer of a one-hidden-layer MLP classifier trained on ``(x, y)`` (scikit-learn,
    ``random_state=seed``), and the distances between sample sets in it. Shaped examples
    (``(n, C, H, W)`` images) are flattened."""

    def __init__(self, x: np.ndarray, y: np.ndarray, *, hidden: int = 128, seed: int = 0, max_iter: int = 60):
        try:
            from sklearn.neural_network import MLPClassifier
        except ImportError as exc:
            raise RhvaeError("sample quality needs scikit-learn: pip install 'rhvae[data]'") from exc
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ConvergenceWarning: a few dozen passes are enough for features
            x = _rows(x)
            clf = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=max_iter, random_state=seed).fit(x, y)
        self.weights, self.bias = clf.coefs_[0], clf.intercepts_[0]
        self.accuracy = float(clf.score(x, y))

    def features(self, x: np.ndarray) -> np.ndarray:
        """``relu(x W + b)``, ``(n, hidden)``."""
        return np.maximum(_rows(x) @ self.weights + self.bias, 0.0)

    def compare(self, real: np.ndarray, generated: np.ndarray, k: int = 3) -> SampleQuality:
        """:class:`SampleQuality` of ``generated`` against ``real`` (the first ``min`` rows of each)."""
        n = min(len(real), len(generated))
        if n < 2:
            raise InputError(f"sample quality needs at least 2 rows on each side; got {len(real)} and {len(generated)}")
        f_real, f_gen = self.features(real[:n]), self.features(generated[:n])
        precision, recall = precision_recall(f_real, f_gen, k)
        return SampleQuality(frechet_distance(f_real, f_gen), precision, recall, n)
