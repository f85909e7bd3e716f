"""The sample-quality measure: its Fréchet distance against an independent computation, and its
ranking of a real sample above a degraded one."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from rhvae import datasets
from rhvae.sample_quality import FeatureSpace, frechet_distance, precision_recall


def test_the_frechet_distance_matches_scipys_matrix_square_root(rng):
    a = rng.normal(size=(400, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.5
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    expected = np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)


def test_precision_and_recall_of_a_set_against_itself_and_against_a_far_set(rng):
    a = rng.normal(size=(200, 4))
    assert precision_recall(a, a) == (1.0, 1.0)
    assert precision_recall(a, a + 100.0) == (0.0, 0.0)


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, _ = datasets.load("digits", n_test=600, seed=0)
    return FeatureSpace(x_train, y_train), x_test


def test_a_degraded_sample_ranks_below_a_real_one(digits):
    space, x_test = digits
    real, other = x_test[:300], x_test[300:600]
    noisy = np.clip(other + np.random.default_rng(0).normal(0, 0.3, other.shape), 0, 1)
    one_digit = np.repeat(other[:1], 300, axis=0)  # no diversity at all
    good, bad, collapsed = (space.compare(real, x) for x in (other, noisy, one_digit))
    assert good.frechet < bad.frechet and good.frechet < collapsed.frechet
    assert good.precision > bad.precision + 0.3  # noisy images do not look like digits
    assert good.recall > collapsed.recall + 0.5  # one repeated digit covers little of the data
    assert good.precision > 0.8 and good.recall > 0.8 and space.accuracy > 0.95
