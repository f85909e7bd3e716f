"""``rhvae train`` never loses work: new runs never replace old ones, the output folder is checked
before training, a run resumes to the same numbers, and divergence or Ctrl-C keep what was done."""

from __future__ import annotations

import json

import numpy as np

import rhvae
import rhvae.cli as cli
from rhvae.checkpoint import read_metadata

TINY = ["--data", "digits", "--latent-dim", "2", "--hidden", "8", "--metric-hidden", "8", "--n-test", "300",
        "--backend", "torch", "--no-figures"]


def _train(*extra: str) -> int:
    return cli.main(["train", *TINY, *extra])


def _same_arrays(a, b) -> bool:
    with np.load(a) as x, np.load(b) as y:
        keys = [k for k in x.files if k != "rhvae.json"]
        return keys == [k for k in y.files if k != "rhvae.json"] and all(np.array_equal(x[k], y[k]) for k in keys)


def test_runs_get_new_numbered_folders_and_latest_follows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _train("--epochs", "1") == 0
    assert _train("--epochs", "1", "--seed", "1") == 0
    runs = tmp_path / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["latest", "run-001", "run-002"]
    assert (runs / "latest").resolve() == (runs / "run-002").resolve()
    assert read_metadata(runs / "run-001" / "last.npz")["seed"] == 0  # the first run is intact


def test_an_existing_run_is_refused_before_training_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    (out / "latent_space.png").write_bytes(b"stale")
    (out / "samples.png").write_bytes(b"stale")
    (out / "samples-2.npz").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    (out / "samples_for_paper.csv").write_text("mine too")
    assert _train("--epochs", "1", "--out", str(out)) == 2
    captured = capsys.readouterr()
    assert "already holds a run" in captured.err and "--overwrite" in captured.err
    assert "epoch" not in captured.out  # refused before any training
    assert _train("--epochs", "1", "--out", str(out), "--overwrite") == 0
    for stale in ("latent_space.png", "samples.png", "samples-2.npz"):  # not drawn this time (--no-figures)
        assert not (out / stale).exists(), stale
    assert (out / "notes.txt").read_text() == "mine" and (out / "samples_for_paper.csv").read_text() == "mine too"
    assert (out / "last.npz").is_file()


def test_an_unwritable_out_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert _train("--epochs", "1", "--out", str(blocker / "run")) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"rhvae: error: --out {blocker / 'run'}") and "epoch" not in captured.out


def test_resume_continues_to_the_numbers_of_an_uninterrupted_run(tmp_path, capsys):
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert _train("--epochs", "2", "--out", str(whole)) == 0
    assert _train("--epochs", "1", "--out", str(split)) == 0
    assert cli.main(["train", "--resume", str(split), "--epochs", "2"]) == 0
    assert _same_arrays(whole / "last.npz", split / "last.npz")
    timeless = [{k: v for k, v in json.loads((run / "metrics.json").read_text()).items() if k != "epoch_seconds"}
                for run in (whole, split)]
    assert timeless[0] == timeless[1]
    capsys.readouterr()
    assert cli.main(["train", "--resume", str(split)]) == 2
    assert "trained 2 epoch(s) already" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(split), "--epochs", "3", "--lr", "0.1"]) == 2
    assert "--lr cannot change with --resume" in capsys.readouterr().err


def test_ctrl_c_keeps_the_last_epoch_and_the_last_step_and_says_how_to_resume(tmp_path, monkeypatch, capsys):
    """Ctrl-C in the 4th step of epoch 2: the run keeps epoch 1 as last.npz, the state after the
    3rd step as interrupted.npz, the losses so far, and continues with --resume."""
    train_step = rhvae.RHVAE.train_step

    def ctrl_c_at_step_18(self, state, *args, **kwargs):
        if state.step == 18:  # 15 steps per epoch
            raise KeyboardInterrupt
        return train_step(self, state, *args, **kwargs)

    monkeypatch.setattr(rhvae.RHVAE, "train_step", ctrl_c_at_step_18)
    out = tmp_path / "run"
    assert _train("--epochs", "3", "--out", str(out)) == 130
    assert f"rhvae train --resume {out}" in capsys.readouterr().err
    assert read_metadata(out / "last.npz")["epoch"] == 1
    assert (read_metadata(out / "interrupted.npz")["step"], read_metadata(out / "interrupted.npz")["epoch"]) == (18, 1)
    history = json.loads((out / "metrics.json").read_text())
    assert len(history["val_elbo"]) == 1 and len(history["loss"]) == 18
    monkeypatch.setattr(rhvae.RHVAE, "train_step", train_step)
    assert cli.main(["train", "--resume", str(out)]) == 0
    assert read_metadata(out / "last.npz")["epoch"] == 3


def test_divergence_writes_the_last_finite_state_and_the_metrics(tmp_path, monkeypatch, capsys):
    fit = rhvae.RHVAE.fit

    def diverging_in_epoch_2(self, state, *args, **kwargs):
        if state.epoch == 1:
            raise rhvae.TrainingDivergedError(1, 20, float("nan"), state, {"loss": [1.0, 2.0]})
        return fit(self, state, *args, **kwargs)

    monkeypatch.setattr(rhvae.RHVAE, "fit", diverging_in_epoch_2)
    out = tmp_path / "run"
    assert _train("--epochs", "3", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert "the loss became nan at epoch 2, step 20" in err and "diverged.npz" in err
    assert read_metadata(out / "diverged.npz")["epoch"] == 1
    history = json.loads((out / "metrics.json").read_text())
    assert history["diverged"] == {"epoch": 2, "step": 20, "loss": "nan"} and history["loss"][-2:] == [1.0, 2.0]


def test_sampling_twice_keeps_both_sample_files_and_older_runs_sample_with_their_own_metric(tmp_path, capsys):
    """Two ``rhvae sample`` calls keep both files. A checkpoint written before ``metric/log_sigma``
    existed samples too: the scales come from the run's own rows, the saved centroids and ``M``
    stay as they were."""
    out = tmp_path / "run"
    assert _train("--epochs", "1", "--out", str(out)) == 0
    for _ in range(2):
        assert cli.main(["sample", "--run", str(out), "--n", "3", "--transitions", "2"]) == 0
    assert (out / "samples.npz").is_file() and (out / "samples-2.npz").is_file()
    assert "samples-2.npz" in capsys.readouterr().out

    model, state = rhvae.load(out / "last.npz")
    meta = read_metadata(out / "last.npz")
    model.save(state.replace(metric=state.metric._replace(log_sigma=None)), out / "last", meta["metadata"])
    loaded, state_again, _, _ = cli._load_run(str(out))
    B = loaded.backend
    for field in ("centroids", "M"):
        assert np.array_equal(B.to_numpy(getattr(state_again.metric, field)), B.to_numpy(getattr(state.metric, field)))
    np.testing.assert_allclose(B.to_numpy(state_again.metric.log_sigma), B.to_numpy(state.metric.log_sigma), rtol=1e-6)
    assert cli.main(["sample", "--run", str(out), "--n", "3", "--transitions", "2"]) == 0


def test_ctrl_c_in_the_first_epoch_says_there_is_nothing_to_resume(tmp_path, monkeypatch, capsys):
    def ctrl_c(self, state, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(rhvae.RHVAE, "train_step", ctrl_c)
    assert _train("--epochs", "2", "--out", str(tmp_path / "run")) == 130
    assert "no epoch was completed, so there is nothing to resume" in capsys.readouterr().err
    assert not (tmp_path / "run" / "last.npz").exists() and (tmp_path / "run" / "interrupted.npz").exists()
