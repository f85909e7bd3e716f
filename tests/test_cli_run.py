"""``rhvae train`` writes a loadable checkpoint, metrics and figures; ``evaluate`` and ``sample``
reload that run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import rhvae
import rhvae.cli as cli
from rhvae.checkpoint import META_MEMBER, read_metadata

pytestmark = pytest.mark.xdist_group("cli_run")  # one worker trains the shared run, once


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    code = cli.main(["train", "--data", "digits", "--latent-dim", "2", "--epochs", "2", "--hidden", "32", "--metric-hidden", "32",
                     "--n-test", "300", "--backend", "jax", "--out", str(out)])
    assert code == 0
    return out


def test_train_writes_metrics_checkpoints_and_figures(run_dir):
    history = json.loads((run_dir / "metrics.json").read_text())
    assert len(history["val_elbo"]) == 2 and np.isfinite(history["loss"]).all()
    meta = read_metadata(run_dir / "last.npz")
    assert meta["metadata"]["args"]["backend"] == "jax" and meta["epoch"] == 2
    assert meta["metadata"]["history"] == history  # the history travels with the state, atomically
    best = read_metadata(run_dir / "best.npz")
    assert best["epoch"] == 1 + int(np.argmax(history["val_elbo"]))
    for name in ("loss.png", "latent_space.png", "samples.png", "reconstructions.png", "geodesics.png"):
        assert (run_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_evaluate_reports_the_training_runs_held_out_elbo(run_dir, capsys):
    assert cli.main(["evaluate", "--run", str(run_dir), "--quality-samples", "60"]) == 0
    out = capsys.readouterr().out
    elbo = float(out.split("held-out ELBO ")[1].split()[0])
    last = json.loads((run_dir / "metrics.json").read_text())["val_elbo"][-1]
    assert elbo == pytest.approx(last, abs=6e-4)  # printed with 3 decimals
    nll = float(out.split("held-out NLL ")[1].split()[0])
    assert nll <= -elbo + 1e-6            # log-mean-exp of the weights >= their mean
    assert "sample quality against 60 held-out rows" in out
    for name in ("HMC sampler", "prior N(0, I)"):
        line = [ln for ln in out.splitlines() if ln.strip().startswith(name)][0]
        assert float(line.split("Frechet distance")[1].split()[0]) > 0


def test_sample_writes_samples_and_reports_acceptance(run_dir, tmp_path, capsys):
    assert cli.main(["sample", "--run", str(run_dir), "--n", "6", "--transitions", "5", "--out", str(tmp_path)]) == 0
    assert "acceptance rate" in capsys.readouterr().out
    drawn = np.load(tmp_path / "samples.npz")
    assert drawn["x"].shape == (6, 64) and drawn["z"].shape == (6, 2)
    assert (tmp_path / "samples_grid.png").exists()
    assert (tmp_path / "samples_trace.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn["trace"].shape == (5, 6, 2) and drawn["acceptance_per_chain"].shape == (6,)  # --transitions 5


def test_a_missing_run_is_a_one_line_error(tmp_path, capsys):
    assert cli.main(["evaluate", "--run", str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.startswith(f"rhvae: error: run folder {tmp_path / 'none'} does not exist")


def test_bench_reports_each_backends_throughput(capsys):
    assert cli.main(["bench", "--backends", "torch", "--latent-dim", "2", "--batch-size", "10", "--steps", "2"]) == 0
    line = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip().startswith("torch")][0]
    assert float(line.split("ms/step")[0].split()[-1]) > 0 and "samples/s" in line


def test_the_aetk_preset_reaches_the_model_and_an_explicit_grad_h_wins():
    args = cli.build_parser().parse_args(["train", "--preset", "aetk_compat", "--latent-dim", "2"])
    model = cli._build_model(args, input_dim=64)
    assert model.config.integrator == "aetk" and model.config.eps == 1e-4
    assert type(model.components.grad_h).__name__ == "FiniteDifference"
    args = cli.build_parser().parse_args(["train", "--preset", "aetk_compat", "--grad-h", "autodiff"])
    assert type(cli._build_model(args, input_dim=64).components.grad_h).__name__ == "Autodiff"
    assert type(cli._build_model(cli.build_parser().parse_args(["train"]), 64).components.grad_h).__name__ == "Analytic"


def test_jax_process_flags_go_together_with_jax_distributed(capsys):
    assert cli.main(["train", "--data", "digits", "--coordinator", "localhost:1234", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rhvae: error: --coordinator, --num-processes and --process-id go together")


def test_a_run_written_by_rhvae_0_1_reloads_with_its_own_numerics(run_dir, tmp_path, capsys):
    """0.1 wrote no M_max / guard / reweighting fields, no batch size, and one --hidden width."""
    import zipfile

    old = tmp_path / "old_run"
    old.mkdir()
    with zipfile.ZipFile(run_dir / "last.npz") as archive:  # 0.1's format: arrays and a JSON beside them
        meta = json.loads(archive.read(META_MEMBER))
        np.savez(old / "checkpoint.npz", **{n[:-4]: np.lib.format.read_array(archive.open(n))
                                           for n in archive.namelist() if n.endswith(".npy")})
    meta["format_version"] = 1
    for field in ("M_max", "guard_fixed_point", "reweight_frozen_metric"):
        del meta["config"][field]
    del meta["batch_centroids"]
    meta["rhvae_version"] = "0.1.0"
    args = meta["metadata"]["args"]
    for flag in ("metric_hidden", "init", "config", "K", "eps", "steps", "beta0", "T", "lam", "M_max",
                 "learning_rate"):
        args.pop(flag, None)
    args["hidden"], args["temperature"] = 32, None
    (old / "checkpoint.json").write_text(json.dumps(meta))
    model, state, _, _ = cli._load_run(str(old))
    assert model.config.M_max is None and not model.config.guard_fixed_point
    assert not model.config.reweight_frozen_metric and state.batch_centroids is None
    assert model.components.metric.hidden == (32,)
    assert cli.main(["evaluate", "--run", str(old), "--nll-samples", "0", "--quality-samples", "0"]) == 0
    assert "held-out ELBO" in capsys.readouterr().out


def test_arch_conv_trains_on_images_and_its_run_reloads(tmp_path, capsys):
    """``--arch conv``: the digits as (1, 8, 8) images through the convolutional built-ins; the run
    reloads with the same architecture for ``evaluate`` and ``sample``."""
    out = tmp_path / "conv"
    assert cli.main(["train", "--data", "digits", "--arch", "conv", "--channels", "4", "8", "--epochs", "1",
                     "--n-test", "200", "--backend", "torch", "--no-figures", "--out", str(out)]) == 0
    model, _ = rhvae.load(out / "last.npz")
    assert model.config.input_shape == (1, 8, 8)
    assert [type(getattr(model.components, k)).__name__ for k in ("encoder", "decoder", "metric")] == \
        ["ConvEncoder", "ConvDecoder", "ConvMetric"]
    assert cli.main(["evaluate", "--run", str(out), "--nll-samples", "0", "--quality-samples", "0"]) == 0
    elbo = float(capsys.readouterr().out.split("held-out ELBO ")[1].split()[0])
    assert elbo == pytest.approx(json.loads((out / "metrics.json").read_text())["val_elbo"][-1], abs=6e-4)
    assert cli.main(["sample", "--run", str(out), "--n", "3", "--warmup", "2", "--transitions", "2",
                     "--out", str(tmp_path)]) == 0
    assert np.load(tmp_path / "samples.npz")["x"].shape == (3, 1, 8, 8)


def test_coordinator_on_a_backend_that_does_not_join_by_address_is_one_line(capsys):
    assert cli.main(["train", "--data", "digits", "--backend", "torch", "--distributed", "--coordinator",
                     "localhost:1234", "--num-processes", "2", "--process-id", "0", "--epochs", "1"]) == 2
    assert "backend 'torch' does not join processes by address" in capsys.readouterr().err


def test_coordinator_with_a_backend_registered_by_a_function_is_one_line(monkeypatch, capsys):
    """A backend whose registered factory is a function has no join_processes: an error, not a traceback."""
    import further_backend

    monkeypatch.setattr(cli, "get_registry", lambda: further_backend.REGISTRY)
    assert cli.main(["train", "--data", "digits", "--backend", "torch_exact", "--distributed", "--coordinator",
                     "localhost:1234", "--num-processes", "2", "--process-id", "0", "--epochs", "1"]) == 2
    assert "backend 'torch_exact' does not join processes by address" in capsys.readouterr().err
