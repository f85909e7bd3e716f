"""Training and evaluation read a memory-mapped ``.npy`` (or a list of shards) a batch at a time."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from helpers import small_model
from rhvae.data import Rows


def _memmap(path, rows: int, features: int, seed: int = 0) -> np.memmap:
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(rows, features))
    rng = np.random.default_rng(seed)
    for start in range(0, rows, 10_000):  # written in blocks: the test itself never holds the file
        stop = min(start + 10_000, rows)
        mm[start:stop] = rng.uniform(0.05, 0.95, size=(stop - start, features))
    mm.flush()
    return np.load(path, mmap_mode="r")


def test_fit_elbo_and_metric_refresh_on_a_file_larger_than_the_memory_limit(tmp_path):
    """A 12.8 MB file, a 3 MB limit on what numpy may allocate at once (tracemalloc sees numpy's
    buffers; the largest block read is 2,000 rows, 0.5 MB): an epoch of training, the ELBO over
    every row, and a metric built from every row."""
    path = tmp_path / "big.npy"
    x = _memmap(path, 50_000, 64)
    limit = 3 * 2**20
    assert x.nbytes > 4 * limit
    model = small_model("torch", input_dim=64, latent_dim=2, hidden=8, K=1, steps=1)
    state = model.init(seed=0, centroids=np.array(x[:128]))
    model.fit(state, np.array(x[:20]), batch_size=10, progress=False)  # first use imports torch.func's modules
    tracemalloc.start()
    try:
        state, history = model.fit(state, str(path), epochs=1, batch_size=1000, progress=False,
                                   validation_data=x[:3000])
        elbo = model.elbo(state, x, batch_size=2000)
        every_row = model.refresh_metric(state, x, batch_size=2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < limit, f"peak {peak / 2**20:.1f} MB"
    assert len(history["loss"]) == 50 and np.isfinite(elbo)
    assert every_row.metric.centroids.shape[0] == 50_000


def test_shards_and_lazy_checks(tmp_path):
    a = _memmap(tmp_path / "a.npy", 30, 5, seed=1)
    b = np.random.default_rng(2).uniform(size=(12, 5)).astype(np.float32)
    rows = Rows([a, b], "x", 5, "float64")
    idx = np.array([41, 3, 30, 29, 0])
    np.testing.assert_array_equal(rows.read(idx), np.concatenate([a, b])[idx])
    assert len(rows) == 42 and rows.read(idx).dtype == np.float64

    bad = np.lib.format.open_memmap(tmp_path / "bad.npy", mode="w+", dtype=np.float32, shape=(10, 5))
    bad[:] = 0.5
    bad[7, 2] = np.nan
    bad.flush()
    lazy = Rows(str(tmp_path / "bad.npy"), "x", 5, "float32")
    lazy.read(np.arange(5))  # rows 0-4 are fine
    with pytest.raises(ValueError, match=r"NaN or infinite values in row\(s\) \[7\]"):
        lazy.read(np.arange(5, 10))
    with pytest.raises(ValueError, match="expects 4"):
        Rows(str(tmp_path / "bad.npy"), "x", 4, "float32")
    with pytest.raises(ValueError, match="same trailing shape"):
        Rows([a, np.zeros((3, 4), np.float32)], "x", 5, "float32")


def test_training_on_shards_matches_training_on_their_concatenation(tmp_path):
    a = _memmap(tmp_path / "a.npy", 20, 6, seed=3)
    b = _memmap(tmp_path / "b.npy", 13, 6, seed=4)
    model = small_model("torch", input_dim=6, latent_dim=2, hidden=8)
    s1, h1 = model.fit(model.init(seed=1), [a, b], epochs=1, batch_size=10, progress=False)
    s2, h2 = model.fit(model.init(seed=1), np.concatenate([a, b]), epochs=1, batch_size=10, progress=False)
    np.testing.assert_allclose(h1["loss"], h2["loss"], rtol=1e-6)


def test_a_nan_row_mid_epoch_keeps_the_epochs_progress(tmp_path):
    """A memory-mapped file is checked as it is read: the bad batch stops fit with the state after
    the last good step, from which training continues once the row is fixed."""
    from helpers import small_model
    from rhvae.errors import BadBatchError

    path = tmp_path / "data.npy"
    x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(40, 10))
    x[:] = np.random.default_rng(3).uniform(0.05, 0.95, size=(40, 10))
    order = np.random.default_rng((0, 2, 0)).permutation(40)  # fit's shuffle of epoch 0, seed 0
    x[order[25], 4] = np.nan  # in the third batch of 10
    x.flush()
    model = small_model("torch")
    start = model.init(seed=0)
    with pytest.raises(BadBatchError, match=r"epoch 1, step 2: x contains NaN or infinite values in row\(s\) ") as info:
        model.fit(start, str(path), epochs=1, batch_size=10, progress=False)
    kept = info.value.state
    assert kept.step == 2 and len(info.value.history["loss"]) == 2
    assert not np.array_equal(model.backend.to_numpy(kept.params["decoder"]["out0.b"]),
                              model.backend.to_numpy(start.params["decoder"]["out0.b"]))
