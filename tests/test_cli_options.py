"""``rhvae train`` has the library's defaults, exposes its hyper-parameters and reads a config file."""

from __future__ import annotations

import dataclasses
import json

import pytest

import rhvae.cli as cli
from rhvae.config import RHVAEConfig


def _model(argv: list[str]):
    return cli._build_model(cli._parse(["train", *argv]), input_dim=64)


def test_the_cli_defaults_are_the_librarys():
    model = _model([])
    library = RHVAEConfig(input_dim=64, latent_dim=2)
    assert dataclasses.asdict(model.config) == dataclasses.asdict(library)
    assert model.components.encoder.hidden == (512,) and model.components.decoder.hidden == (512,)
    assert model.components.metric.hidden == (400,)
    assert cli._parse(["train"]).centroids == "batch"


def test_the_training_hyper_parameters_have_flags():
    model = _model(["--K", "5", "--eps", "0.002", "--steps", "4", "--beta0", "0.5", "--T", "1.5", "--lam", "0.1",
                    "--M-max", "none", "--lr", "3e-4", "--hidden", "64", "32", "--metric-hidden", "16"])
    c = model.config
    assert (c.K, c.eps, c.steps, c.beta0, c.T, c.lam, c.M_max, c.learning_rate) == (5, 2e-3, 4, 0.5, 1.5, 0.1, None, 3e-4)
    assert model.components.encoder.hidden == (64, 32) and model.components.metric.hidden == (16,)
    assert _model(["--temperature", "0.4"]).config.T == 0.4


def test_help_shows_each_default(capsys):
    assert cli.main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("latent dimension d (default: 2)", "metric temperature (default: 0.8", "(default: 1000.0",
                  "Adam learning rate (default: 0.001", "(default: batch)", "(default: the built-in MLP's)"):
        assert shown in text, shown


def test_a_config_file_sets_defaults_that_flags_override(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"latent-dim": 3, "T": 0.4, "lr": 0.01, "hidden": [32]}))
    args = cli._parse(["train", "--config", str(path), "--T", "1.0"])
    assert (args.latent_dim, args.T, args.learning_rate, args.hidden) == (3, 1.0, 0.01, [32])
    toml = tmp_path / "run.toml"
    toml.write_text('latent_dim = 4\nM_max = "none"\n')
    assert cli._build_model(cli._parse(["train", "--config", str(toml)]), 64).config.M_max is None
    path.write_text(json.dumps({"M_max": None}))
    assert cli._build_model(cli._parse(["train", "--config", str(path)]), 64).config.M_max is None


@pytest.mark.parametrize("content, message", [
    ('{"latent_dmi": 3}', "unknown option(s) ['latent_dmi']"),
    ("[1, 2]", "expected a table"),
    ("{not json", "not valid json"),
    ('{"preset": "aetk"}', "preset must be one of ['aetk_compat', 'rhvae_0_1']; got 'aetk'"),
])
def test_a_bad_config_file_is_a_one_line_error(tmp_path, capsys, content, message):
    path = tmp_path / "run.json"
    path.write_text(content)
    assert cli.main(["train", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rhvae: error: --config") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, flag", [(["--arch", "conv", "--hidden", "64"], "--hidden"),
                                        (["--arch", "conv", "--metric-hidden", "32"], "--metric-hidden"),
                                        (["--channels", "8", "16"], "--channels")])
def test_a_width_flag_the_architecture_ignores_is_an_error(capsys, argv, flag):
    assert cli.main(["train", "--data", "digits", *argv]) == 2
    err = capsys.readouterr().err
    assert flag in err and "no effect" in err
