"""Checkpoints are one file written whole or not at all, portable across backends, self-describing,
and refuse what is altered, corrupted, foreign or does not match, naming the file and the field."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest

import rhvae
from helpers import small_model
from rhvae.checkpoint import META_MEMBER, CheckpointError, _digest, read_metadata


def _trained(backend: str, rng):
    model = small_model(backend, dtype="float64", K=2, steps=2)
    x = rng.uniform(0.05, 0.95, size=(24, 10))
    state = model.init(seed=4, centroids=x[:6])
    state, _ = model.fit(state, x, epochs=1, batch_size=8, progress=False)
    return model, state, x


def _rewrite(path, meta=None, arrays=None, rehash=False) -> None:
    """Rewrite the checkpoint at ``path`` member by member, passing its description through
    ``meta(dict) -> dict`` and its arrays through ``arrays(dict) -> dict`` (valid zip, same layout);
    ``rehash``: record the new arrays' shapes and hashes, as a consistent writer would."""
    with zipfile.ZipFile(path) as archive:
        description = json.loads(archive.read(META_MEMBER))
        data = {name[:-4]: np.lib.format.read_array(archive.open(name)) for name in archive.namelist()
                if name.endswith(".npy")}
    description = meta(description) if meta else description
    data = arrays(data) if arrays else data
    if rehash:
        description["arrays"] = {k: {"shape": list(v.shape), "dtype": v.dtype.str, "sha256": _digest(v)}
                                 for k, v in data.items()}
    with zipfile.ZipFile(path, "w") as archive:
        for key, value in data.items():
            with archive.open(f"{key}.npy", "w") as member:
                np.lib.format.write_array(member, value)
        archive.writestr(META_MEMBER, json.dumps(description))


@pytest.mark.parametrize(("writer", "reader"), [("torch", "jax"), ("jax", "torch")])
def test_a_checkpoint_loads_on_the_other_backend_with_the_same_elbo(tmp_path, rng, writer, reader):
    model, state, x = _trained(writer, rng)
    path = model.save(state, tmp_path / "run" / "ckpt")
    assert path.name == "ckpt.npz" and sorted(p.name for p in path.parent.iterdir()) == ["ckpt.npz"]
    assert read_metadata(path)["backend"] == writer
    other = small_model(reader, dtype="float64", K=2, steps=2)
    loaded = other.load(tmp_path / "run" / "ckpt")
    assert (loaded.step, loaded.epoch, loaded.seed) == (state.step, state.epoch, state.seed)
    assert other.elbo(loaded, x, seed=1) == pytest.approx(model.elbo(state, x, seed=1), rel=1e-10)
    # training resumes identically: the optimiser state came along
    _, loss_a = model.step(state, x[:8])
    _, loss_b = other.step(loaded, x[:8])
    assert loss_b == pytest.approx(loss_a, rel=1e-10)


def test_the_file_alone_rebuilds_the_model_on_either_backend(tmp_path, rng):
    model, state, x = _trained("torch", rng)
    path = model.save(state, tmp_path / "ckpt")
    rebuilt, loaded = rhvae.load(path, backend="jax")
    assert repr(rebuilt.components) == repr(model.components) and rebuilt.config == model.config
    assert rebuilt.elbo(loaded, x, seed=2) == pytest.approx(model.elbo(state, x, seed=2), rel=1e-10)
    again, _ = rhvae.RHVAE.from_checkpoint(path)
    assert again.backend.name == "torch"


def test_a_component_built_outside_the_registry_cannot_be_rebuilt_and_says_what_to_do(tmp_path):
    from rhvae_builtins.nets import MLPEncoder

    model = rhvae.RHVAE("torch", input_dim=10, latent_dim=2, encoder=MLPEncoder(hidden=(5,)))
    path = model.save(model.init(seed=0), tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match=r"no registry recipe for encoder.*model\.load"):
        rhvae.load(path)
    assert model.load(path).step == 0


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
    path = model.save(state, tmp_path / "ckpt")
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    with pytest.raises(CheckpointError, match="truncated, corrupted"):
        model.load(tmp_path / "ckpt")
    np.savez(tmp_path / "foreign.npz", a=np.zeros(3))
    with pytest.raises(CheckpointError, match="not an rhvae checkpoint"):
        model.load(tmp_path / "foreign")
    with pytest.raises(CheckpointError, match="does not exist"):
        model.load(tmp_path / "nothing")


def test_an_altered_array_is_caught_by_its_hash(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    path = model.save(state, tmp_path / "ckpt")
    _rewrite(path, arrays=lambda a: {**a, "params/decoder/out0.b": a["params/decoder/out0.b"] + 1e-12})
    with pytest.raises(CheckpointError, match=r"params/decoder/out0\.b.*SHA-256"):
        model.load(path)


def test_non_finite_weights_and_wrong_shapes_are_named(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    bad = state.replace(params={**state.params, "metric": {**state.params["metric"],
                                                           "diag.b": state.params["metric"]["diag.b"] * np.nan}})
    with pytest.raises(CheckpointError, match=r"not saving .*params/metric/diag\.b hold non-finite"):
        model.save(bad, tmp_path / "nan")
    assert not (tmp_path / "nan.npz").exists()
    path = model.save(state, tmp_path / "nan")
    _rewrite(path, arrays=lambda a: {**a, "params/metric/diag.b": a["params/metric/diag.b"] * np.nan}, rehash=True)
    with pytest.raises(CheckpointError, match=r"params/metric/diag\.b holds 2 non-finite"):
        model.load(path)
    path = model.save(state, tmp_path / "shape")
    _rewrite(path, arrays=lambda a: {**a, "metric/M": a["metric/M"][1:]}, rehash=True)
    with pytest.raises(CheckpointError, match=r"metric/M has shape \(5, 2, 2\); the model needs \(6, 2, 2\)"):
        model.load(path)


@pytest.mark.parametrize(("field", "value"), [("step", -1), ("seed", "zero"), ("batch_centroids", 0),
                                              ("config", [1]), ("format_version", 99)])
def test_each_bad_description_field_is_named(tmp_path, rng, field, value):
    model, state, _ = _trained("torch", rng)
    path = model.save(state, tmp_path / "ckpt")
    _rewrite(path, meta=lambda m: {**m, field: value})
    with pytest.raises(CheckpointError, match=f"{field}|format version"):
        model.load(path)


def test_another_rhvae_version_is_refused_unless_allowed(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    path = model.save(state, tmp_path / "ckpt")
    _rewrite(path, meta=lambda m: {**m, "rhvae_version": "0.0.1"})
    with pytest.raises(CheckpointError, match="rhvae version: checkpoint '0.0.1'"):
        model.load(tmp_path / "ckpt")
    assert model.load(tmp_path / "ckpt", check_version=False).step == state.step


def test_saving_leaves_one_file_with_ordinary_permissions_and_clears_a_killed_writers_leftovers(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    (tmp_path / ".ckpt.npz.abc123.tmp").write_bytes(b"half a checkpoint")  # a writer killed mid-save
    model.save(state, tmp_path / "ckpt")
    model.save(state, tmp_path / "ckpt")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "ckpt.npz").stat().st_mode & 0o777 == 0o666 & ~mask


_WRITER = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
from helpers import small_model
model = small_model("torch", dtype="float64")
states = [model.init(seed=s) for s in (1, 2)]
print("ready", flush=True)
i = 0
while True:
    model.save(states[i % 2], {path!r})
    i += 1
"""


def test_a_kill_during_save_leaves_the_old_checkpoint_or_the_new_one_never_a_mix(tmp_path):
    """A writer alternates two states under one name; ``kill -9`` at arbitrary moments; every
    time, the file on disk loads and is exactly one of the two."""
    path = tmp_path / "ckpt.npz"
    script = _WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    model = small_model("torch", dtype="float64")
    expected = [model.init(seed=s).params["decoder"]["out0.w"].numpy() for s in (1, 2)]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env={**os.environ,
                                                                                          "RHVAE_NUM_THREADS": "1"})
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(0.05 + 0.3 * rng.uniform())
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not path.exists():
            continue
        loaded = model.load(path).params["decoder"]["out0.w"].numpy()
        match = [i for i, e in enumerate(expected) if np.array_equal(loaded, e)]
        assert len(match) == 1
        seen.add(match[0])
    assert seen  # at least one kill came after a complete save


def test_format_1_checkpoints_of_earlier_versions_still_load(tmp_path, rng):
    """rhvae 0.2.0 wrote ``PATH.npz`` arrays beside ``PATH.json``, without several later config fields."""
    model, state, x = _trained("torch", rng)
    path = model.save(state, tmp_path / "ck")
    with zipfile.ZipFile(path) as archive:
        meta = json.loads(archive.read(META_MEMBER))
        arrays = {n[:-4]: np.lib.format.read_array(archive.open(n)) for n in archive.namelist() if n.endswith(".npy")}
    np.savez(tmp_path / "old.npz", **arrays)
    for key in ("arrays", "recipes"):
        del meta[key]
    for new_field in ("integrator", "centroid_chunk", "weight_tol"):
        del meta["config"][new_field]
    meta["format_version"] = 1
    (tmp_path / "old.json").write_text(json.dumps(meta))
    chunked = small_model("torch", dtype="float64", K=2, steps=2, centroid_chunk=4)
    loaded = chunked.load(tmp_path / "old")
    assert chunked.elbo(loaded, x, seed=1) == pytest.approx(model.elbo(state, x, seed=1), rel=1e-10)
    with pytest.raises(Exception, match="weight_tol"):
        small_model("torch", dtype="float64", K=2, steps=2, weight_tol=0.1).load(tmp_path / "old")
    chunked.save(loaded, tmp_path / "old")  # rewritten as format 2: the stale description goes
    assert sorted(p.name for p in tmp_path.glob("old*")) == ["old.npz"]


def test_saving_next_to_a_users_json_of_the_same_name_leaves_it_alone(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    (tmp_path / "config.json").write_text('{"learning": "mine"}')
    model.save(state, tmp_path / "config")
    assert (tmp_path / "config.json").read_text() == '{"learning": "mine"}'


def test_a_checkpoint_whose_recipe_no_longer_builds_names_the_field(tmp_path, rng):
    model, state, _ = _trained("torch", rng)
    path = model.save(state, tmp_path / "ckpt")

    def bad_recipe(meta):
        meta["recipes"]["encoder"]["kwargs"] = {"hidden": [12], "wings": 2}
        return meta

    _rewrite(path, meta=bad_recipe)
    with pytest.raises(CheckpointError, match="field 'recipes.encoder' does not build a encoder"):
        rhvae.load(path)


def test_the_frozen_metric_keeps_the_encoder_scales_and_older_files_load_without_them(tmp_path, rng):
    """``metric/log_sigma`` round-trips; a file without it (rhvae 0.3.0) loads with ``None``."""
    import zipfile

    model = small_model("torch", dtype="float64")
    x = rng.uniform(size=(12, 10))
    state = model.refresh_metric(model.init(seed=0), x)
    path = model.save(state, tmp_path / "run")
    again = model.load(path)
    np.testing.assert_array_equal(model.backend.to_numpy(again.metric.log_sigma),
                                  model.backend.to_numpy(state.metric.log_sigma))
    old = model.save(state.replace(metric=state.metric._replace(log_sigma=None)), tmp_path / "old")
    with zipfile.ZipFile(old) as archive:
        assert "metric/log_sigma.npy" not in archive.namelist()
    assert model.load(old).metric.log_sigma is None
