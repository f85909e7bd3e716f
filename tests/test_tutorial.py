"""``docs/tutorial.md``: its python blocks run in order in one namespace, and what its prose claims holds.

The blocks run once per test module (a module fixture, about 30 s on 2 CPU cores) with
``RHVAE_TUTORIAL_OUT`` pointing at a temporary folder; each test then checks one step's
results in the namespace they left behind. ``tests/conftest.py`` enables JAX's x64 mode: the
tutorial sets ``dtype="float32"`` on both backends, so it runs the same way with or without it.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"
TUTORIAL = DOCS / "tutorial.md"
FIGURES = ("loss", "latent_map", "reconstructions", "samples", "geodesics")
pytestmark = pytest.mark.xdist_group("tutorial")  # one worker runs the tutorial, once


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every fenced ```` ```python ```` block of ``text`` (as tests/test_docs.py)."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1))
            for m in re.finditer(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)]


@pytest.fixture(scope="module")
def tutorial(tmp_path_factory) -> dict:
    """The namespace left by running every python block of the tutorial, in order."""
    for module in ("torch", "jax", "sklearn", "matplotlib"):
        pytest.importorskip(module, reason="the tutorial needs the all, data and plot extras")
    import torch

    out = tmp_path_factory.mktemp("tutorial_out")
    namespace: dict = {"__name__": "docs_tutorial"}
    threads = torch.get_num_threads()
    # One torch thread: the model is tiny, and two threads on two cores that another process
    # also uses run its training steps about 15 times slower (measured: 0.60 s against 0.04 s).
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            monkeypatch.setenv("RHVAE_TUTORIAL_OUT", str(out))
            for line, code in python_blocks(TUTORIAL.read_text(encoding="utf-8")):
                exec(compile("\n" * line + code, str(TUTORIAL), "exec"), namespace)  # tracebacks cite the tutorial
    finally:
        torch.set_num_threads(threads)
    namespace["expected_out"] = out
    return namespace


def test_the_tutorial_writes_where_it_is_told(tutorial):
    assert Path(tutorial["out"]) == tutorial["expected_out"]
    for name in FIGURES:
        png = tutorial["out"] / f"{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
    assert (tutorial["out"] / "digits.npz").is_file() and not (tutorial["out"] / "digits.json").exists()


def test_every_figure_the_tutorial_shows_is_committed_and_small():
    text = TUTORIAL.read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert sorted(links) == sorted(f"figures/tutorial_{name}.png" for name in FIGURES)
    for link in links:
        png = DOCS / link
        assert png.is_file(), f"{link} is shown by the tutorial but missing"
        assert png.stat().st_size < 200_000, f"{link} is {png.stat().st_size} bytes"


def test_training_improved_the_held_out_elbo(tutorial):
    history, elbo = tutorial["history"], tutorial["elbo"]
    assert set(history) == {"loss", "epoch_loss", "epoch_seconds", "val_elbo", "skipped_steps"}
    assert history["skipped_steps"] == []
    assert len(history["loss"]) == 20 * 15 and len(history["val_elbo"]) == 20
    assert all(math.isfinite(v) for v in history["loss"])
    assert math.isfinite(elbo) and elbo < 0
    assert history["val_elbo"][-1] > history["val_elbo"][0] + 1.0
    assert elbo == pytest.approx(history["val_elbo"][-1], rel=1e-6)  # same state, same seed (0)
    assert tutorial["state"].epoch == 20 and tutorial["state"].step == 300


def test_the_nll_is_finite_and_at_most_the_negative_elbo(tutorial):
    nll, elbo = tutorial["nll"], tutorial["elbo"]
    assert nll.shape == (len(tutorial["x_test"]),) and np.all(np.isfinite(nll))
    # importance sampling tightens the bound; the two use different noise, hence the margin
    assert nll.mean() <= -elbo + 0.25


def test_the_metric_is_lambda_far_from_the_centroids(tutorial):
    model, state, points = tutorial["model"], tutorial["state"], tutorial["points"]
    lam = model.config.lam
    G_inv = model.G_inv(state, points)
    assert G_inv.shape == (3, 2, 2)
    assert np.allclose(G_inv[-1], lam * np.eye(2), rtol=1e-5, atol=1e-7)
    assert tutorial["log_det_G"][-1] == pytest.approx(-2 * math.log(lam), abs=1e-4)
    assert np.all(tutorial["log_det_G"][:2] < tutorial["log_det_G"][-1])  # G⁻¹ is larger near the data
    pullback = model.pullback_metric(state, points)
    assert pullback.shape == (3, 2, 2) and np.all(np.linalg.eigvalsh(pullback) > -1e-6)


def test_the_adapted_sampler_meets_its_acceptance_and_stays_on_the_data(tutorial):
    riemannian, tempered, volume, prior = (tutorial[k] for k in ("riemannian", "tempered", "volume", "prior"))
    for samples in (riemannian, tempered, volume):
        assert abs(samples.acceptance - 0.65) < 0.1
        assert samples.x.shape == (64, 64) and samples.z.shape == (64, 2)
        assert np.all((samples.x >= 0) & (samples.x <= 1))
    assert riemannian.trace.shape == (100, 64, 2) and riemannian.diagnostics["r_hat"].shape == (2,)
    assert math.isnan(prior.acceptance)
    off_data = tutorial["off_data"]
    assert off_data(tutorial["mu"]) == 0.0
    # the prose: the improper volume target lets chains drift off the data; the default does not
    assert off_data(volume.z) > off_data(riemannian.z) + 0.1


def test_geodesics_are_no_longer_than_the_straight_segment(tutorial):
    paths, mu, typical = tutorial["paths"], tutorial["mu"], tutorial["typical"]
    assert len(paths) == len(tutorial["pairs"]) == 4
    for (a, b), g in zip(tutorial["pairs"], paths):
        assert g.z.shape == (13, 2) and g.x.shape == (13, 64)
        assert np.allclose(g.z[0], mu[typical(a)], atol=1e-6) and np.allclose(g.z[-1], mu[typical(b)], atol=1e-6)
        assert 0 < g.length <= g.straight_length * (1 + 1e-3)
        assert g.energy >= g.length ** 2 * (1 - 1e-4)  # Cauchy–Schwarz: n Σ l_t² ≥ (Σ l_t)²


def test_the_torch_checkpoint_gives_the_same_elbo_on_jax(tutorial):
    assert tutorial["jax_model"].backend.name == "jax"
    assert tutorial["jax_state"].step == tutorial["state"].step
    assert tutorial["elbo_jax"] == pytest.approx(tutorial["elbo"], rel=1e-5)  # float32 round-off


def test_the_same_seed_replays_the_run(tutorial):
    assert tutorial["same_losses"] and tutorial["same_samples"] and tutorial["same_elbo"] and tutorial["same_init"]
