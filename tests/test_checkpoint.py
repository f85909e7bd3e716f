"""Checkpoints are portable across backends, atomic, and refuse what does not match."""

from __future__ import annotations

import json

import numpy as np
import pytest

from helpers import small_model
from rhvae.checkpoint import CheckpointError


def _trained(backend: str, rng):
    model = small_model(backend, dtype="float64", K=2, steps=2)
    x = rng.uniform(0.05, 0.95, size=(24, 10))
    state = model.init(seed=4, centroids=x[:6])
    state, _ = model.fit(state, x, epochs=1, batch_size=8, progress=False)
    return model, state, x


@pytest.mark.parametrize(("writer", "reader"), [("torch", "jax"), ("jax", "torch")])
def test_a_checkpoint_loads_on_the_other_backend_with_the_same_elbo(tmp_path, rng, writer, reader):
    model, state, x = _trained(writer, rng)
    npz, meta = model.save(state, tmp_path / "run" / "ckpt")
    assert npz.name == "ckpt.npz" and json.loads(meta.read_text())["backend"] == writer
    other = small_model(reader, dtype="float64", K=2, steps=2)
    loaded = other.load(tmp_path / "run" / "ckpt")
    assert (loaded.step, loaded.epoch, loaded.seed) == (state.step, state.epoch, state.seed)
    assert other.elbo(loaded, x, seed=1) == pytest.approx(model.elbo(state, x, seed=1), rel=1e-10)
    # training resumes identically: the optimiser state came along
    _, loss_a = model.step(state, x[:8])
    _, loss_b = other.step(loaded, x[:8])
    assert loss_b == pytest.approx(loss_a, rel=1e-10)


def test_a_mismatching_model_is_refused_naming_each_difference(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    model.save(state, tmp_path / "ckpt")
    other = small_model("torch", dtype="float64", K=3, steps=2, hidden=7)
    with pytest.raises(CheckpointError) as info:
        other.load(tmp_path / "ckpt")
    message = str(info.value)
    assert "config.K: checkpoint 2, model 3" in message
    assert "components.encoder" in message and "hidden=(7,)" in message


def test_truncated_foreign_and_missing_files_give_clear_errors(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    npz, meta = model.save(state, tmp_path / "ckpt")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        model.load(tmp_path / "ckpt")
    meta.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CheckpointError, match="not an rhvae checkpoint"):
        model.load(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        model.load(tmp_path / "nothing")


def test_another_rhvae_version_is_refused_unless_allowed(tmp_path, rng):
    model, state, x = _trained("torch", rng)
    _, meta = model.save(state, tmp_path / "ckpt")
    data = json.loads(meta.read_text())
    data["rhvae_version"] = "0.0.1"
    meta.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="rhvae version: checkpoint '0.0.1'"):
        model.load(tmp_path / "ckpt")
    assert model.load(tmp_path / "ckpt", check_version=False).step == state.step


def test_saving_leaves_no_temporary_files(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    model.save(state, tmp_path / "ckpt")
    model.save(state, tmp_path / "ckpt")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json", "ckpt.npz"]


def test_older_checkpoints_and_another_centroid_chunk_still_load(tmp_path):
    """A checkpoint written before a config field existed reads it as its default; the block size
    of the centroid sums is not part of a model's identity."""
    model = small_model("torch")
    x = np.random.default_rng(0).uniform(size=(6, 10))
    state = model.init(seed=1, centroids=x)
    model.save(state, tmp_path / "ck")
    meta = json.loads((tmp_path / "ck.json").read_text())
    for new_field in ("integrator", "centroid_chunk", "weight_tol"):
        del meta["config"][new_field]
    (tmp_path / "ck.json").write_text(json.dumps(meta))
    chunked = small_model("torch", centroid_chunk=4)
    loaded = chunked.load(tmp_path / "ck")
    np.testing.assert_allclose(chunked.G_inv(loaded, x[:, :2] * 0), model.G_inv(state, x[:, :2] * 0), rtol=1e-6)
    with pytest.raises(Exception, match="weight_tol"):
        small_model("torch", weight_tol=0.1).load(tmp_path / "ck")
