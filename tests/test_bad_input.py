"""Every bad argument gets one clear, early error naming the argument (or, on the command line,
the flag) and what was expected; never a raw numpy/range message or a traceback."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae.cli as cli
from helpers import small_model


@pytest.fixture(scope="module", params=["torch", "jax"])
def trained(request):
    model = small_model(request.param)
    x = np.random.default_rng(0).uniform(0.05, 0.95, size=(12, 10))
    return model, model.init(seed=0, centroids=x[:4]), x


@pytest.mark.parametrize(("call", "error", "text"), [
    (lambda m, s, x: m.elbo(s, x, batch_size=0), ValueError, "batch_size must be >= 1; got 0"),
    (lambda m, s, x: m.elbo(s, x, batch_size=2.5), TypeError, "batch_size must be an integer; got 2.5"),
    (lambda m, s, x: m.refresh_metric(s, x, batch_size=-3), ValueError, "batch_size must be >= 1"),
    (lambda m, s, x: m.fit(s, x, batch_size=0, progress=False), ValueError, "batch_size must be an integer >= 1"),
    (lambda m, s, x: m.elbo(s, x, seed=-1), ValueError, "seed must be >= 0; got -1"),
    (lambda m, s, x: m.loss(s, x, seed="zero"), TypeError, "seed must be an integer; got 'zero'"),
    (lambda m, s, x: m.init(seed=1.5), TypeError, "seed must be an integer; got 1.5"),
    (lambda m, s, x: m.sample(s, 2, seed=-4, progress=False), ValueError, "seed must be >= 0"),
    (lambda m, s, x: m.sample_prior(s, 2, seed=-4), ValueError, "seed must be >= 0"),
    (lambda m, s, x: m.nll(s, x, seed=-1, progress=False), ValueError, "seed must be >= 0"),
    (lambda m, s, x: m.geodesic(s, np.zeros(2), np.zeros(3), progress=False), ValueError,
     r"z1 must be a latent point of shape \(2,\); got shape \(3,\)"),
    (lambda m, s, x: m.geodesic(s, "origin", np.zeros(2), progress=False), TypeError, "z0 must be a latent point"),
    (lambda m, s, x: m.elbo(s, "hello"), ValueError, "'hello' is not an existing .npy file"),
    (lambda m, s, x: m.encode(s, x[:, :3]), ValueError, "x has 3 features; the encoder expects 10"),
])
def test_bad_arguments_are_named(trained, call, error, text):
    model, state, x = trained
    with pytest.raises(error, match=text):
        call(model, state, x)


@pytest.fixture
def bad_files(tmp_path):
    np.savez(tmp_path / "no_x.npz", images=np.zeros((5, 4)))
    np.save(tmp_path / "strings.npy", np.array(["a", "b", "c"]))
    np.save(tmp_path / "scalar.npy", np.array(3.0))
    np.save(tmp_path / "nan.npy", np.array([[0.0, 1.0], [np.nan, 0.5], [0.2, 0.3]]))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return tmp_path


@pytest.mark.parametrize(("argv", "text"), [
    (["train", "--data", "{dir}/no_x.npz"], "the .npz holds ['images']; expected an array 'x'"),
    (["train", "--data", "{dir}/strings.npy"], "expected real numbers; got an array of dtype <U1"),
    (["train", "--data", "{dir}/scalar.npy"], "expected rows of features, shape (N >= 2, D, ...); got shape ()"),
    (["train", "--data", "{dir}/nan.npy", "--n-test", "1"], "1 row(s) hold NaN or infinite values (first: row 1)"),
    (["train", "--data", "{dir}/objects.npy"], "cannot read it as .npy without pickle"),
    (["train", "--data", "digits", "--n-test", "5000"], "n_test (--n-test) must be an integer in [1, 1796]"),
    (["train", "--data", "digits", "--seed", "-2"], "--seed must be an integer >= 0; got -2"),
    (["train", "--data", "digits", "--batch-size", "0"], "--batch-size must be an integer >= 1; got 0"),
    (["train", "--data", "digits", "--centroids", "many"], "--centroids must be 'batch' or a number"),
    (["train", "--data", "digits", "--beta0", "2"], "--beta0: beta0 must lie in (0, 1]; got 2.0"),
    (["train", "--data", "digits", "--lr", "-1"], "--lr: learning_rate must be a finite number > 0; got -1.0"),
    (["train", "--data", "digits", "--K", "0"], "--K: K must be >= 1; got 0"),
    (["train", "--data", "digits", "--hidden", "0"], "--hidden/--metric-hidden: hidden sizes must be positive"),
    (["evaluate", "--run", "{dir}/none"], "run folder {dir}/none does not exist"),
    (["sample", "--run", "{dir}", "--n", "0"], "--n must be an integer >= 1; got 0"),
])
def test_bad_command_lines_give_one_line_naming_the_flag(bad_files, capsys, argv, text):
    argv = [a.format(dir=bad_files) for a in argv]
    argv += ["--out", str(bad_files / "out")] if argv[0] == "train" else []
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rhvae: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert text.format(dir=bad_files) in err
    assert not (bad_files / "out" / "last.npz").exists()


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize(("flags", "text"), [(["--lr", "-1"], "--lr: learning_rate must be a finite number > 0"),
                                             (["--K", "0"], "--K: K must be >= 1; got 0"),
                                             (["--device", "cuda:7"], "requested but")])
def test_bad_model_flags_give_one_line_on_each_backend(tmp_path, capsys, backend, flags, text):
    argv = ["train", "--data", "digits", "--backend", backend, "--out", str(tmp_path / "out"), *flags]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rhvae: error: ") and err.count("\n") == 1 and text in err
