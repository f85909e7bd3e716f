"""The seed streams: every random draw of a model comes from ``numpy.random.default_rng((seed, STREAM, ...))``
with its own stream number, so changing how one part draws never shifts another's numbers, and
both backends see the same draws."""

from __future__ import annotations

import numpy as np

from rhvae import validation

NOISE, SHUFFLE, EVALUATION, CENTROIDS, SAMPLING, NLL = 1, 2, 3, 4, 5, 6
"""Training noise, epoch shuffles, evaluation noise, centroid draws, the samplers, importance sampling."""


def noise_streams(seed: int | tuple) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for ``eps`` and ``xi`` under ``seed`` (an int or a tuple starting with
    one): drawing rows in blocks gives the same rows as drawing them at once."""
    seed = seed if isinstance(seed, tuple) else (seed,)
    if seed:
        seed = (validation.check_seed("seed", seed[0]), *seed[1:])
    return np.random.default_rng((*seed, 0)), np.random.default_rng((*seed, 1))
