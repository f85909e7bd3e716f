"""Convolutional RHVAE on 28×28 MNIST-shaped images beside pythae's conv RHVAE (issue: ≥ 3× its
training throughput on CPU, both backends).

pythae 0.1.2: ``Encoder_Conv_VAE_MNIST`` (4 stride-2 convolutions, 128 to 1024 channels, batch
norm) and ``Decoder_Conv_AE_MNIST`` (a linear layer to 1024×4×4, 3 transposed convolutions),
its default MLP metric (400); rhvae: the same layer sizes
(``ConvEncoder(channels=(128, 256, 512, 1024))``, ``ConvDecoder(channels=(1024, 512, 256),
kernel=3)``; no batch norm, which is less work than pythae's, and a per-pixel output bias,
which is negligible work), the same metric, latent 16, K=3, steps=3, batch 100, float32, the
analytic ∇H.

Run: ``python -m pytest benchmarks/bench_conv.py -s`` (the summary table prints the ``train-conv``
group with the multiples of pythae). ``test_conv_throughput_target`` asserts the target from its
own measurements: the three steps timed in turn, round after round, the median of the ratios.
``analytic+truncate`` is the same step with ``truncate_gradients=True``, pythae's own
(truncated) parameter gradient, so the same computation as pythae's. ``RHVAE_BENCH_SMOKE=1``
shrinks the networks (pythae is then skipped: its architecture is fixed).

Measured (2 cores shared with other work; five runs of the target test, medians of per-round
ratios): torch 3.43, 3.45, 3.20, 3.32, 3.48× pythae; jax 3.12, 3.22, 2.89, 3.21, 3.22×. The
target is met on torch in every run and on JAX in four of five (median 3.21×): JAX's margin is
within the noise. Seconds per step of 100 images, run 3's summary table: torch 2.96, jax 3.17,
pythae 9.32; truncated gradient torch 2.62, jax 2.79. What brought it from 2.0× and 1.16×: the
decoder's linear layer and first transposed convolution folded into one linear map,
precomputed once per batch, and JAX's convolutions sliced from the input's phases
(``docs/performance.md``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest

import rhvae
import workload as W

SHAPE = (1, 28, 28)
BATCH = 8 if W.SMOKE else 100
ENCODER_CHANNELS, DECODER_CHANNELS = ((4, 8), (8, 4)) if W.SMOKE else ((128, 256, 512, 1024), (1024, 512, 256))
DECODER_KERNEL = 4 if W.SMOKE else 3
TARGET = 3.0
ROUNDS = 5


def _images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, *SHAPE)).astype(np.float32)


def _model(backend: str, truncate: bool = False) -> rhvae.RHVAE:
    reg = rhvae.get_registry()
    return rhvae.RHVAE(backend, input_dim=SHAPE, latent_dim=W.LATENT, grad_h="analytic", **W.HYPER,
                       truncate_gradients=truncate,
                       encoder=reg.create("encoder", "conv", channels=ENCODER_CHANNELS),
                       decoder=reg.create("decoder", "bernoulli_conv", channels=DECODER_CHANNELS, kernel=DECODER_KERNEL),
                       metric=reg.create("metric", "mlp", hidden=(W.HIDDEN_METRIC,)))


@pytest.mark.parametrize("truncate", [False, True], ids=["full", "truncate"])
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_conv_train_step(measure, backend, truncate):
    model = _model(backend, truncate)
    state, x = model.init(seed=0), _images(BATCH)
    call = lambda: model.step(state, x)  # noqa: E731
    measure("train-conv", f"{backend}:analytic" + ("+truncate" if truncate else ""), call, BATCH)


@pytest.fixture
def pythae_conv():
    pytest.importorskip("pythae")
    if W.SMOKE:
        pytest.skip("pythae's conv architecture is fixed: too large for a smoke run")
    import torch
    from pythae.models import RHVAE, RHVAEConfig
    from pythae.models.nn.benchmarks.mnist import Decoder_Conv_AE_MNIST, Encoder_Conv_VAE_MNIST

    torch.manual_seed(0)
    config = RHVAEConfig(input_dim=SHAPE, latent_dim=W.LATENT, n_lf=W.HYPER["K"], eps_lf=W.HYPER["eps"],
                         beta_zero=W.HYPER["beta0"] ** 0.5, temperature=W.HYPER["T"], regularization=W.HYPER["lam"])
    return RHVAE(config, encoder=Encoder_Conv_VAE_MNIST(config), decoder=Decoder_Conv_AE_MNIST(config))


def test_pythae_conv_train_step(measure, pythae_conv):
    measure("train-conv", "pythae", W.pythae_step(pythae_conv, _images(BATCH)), BATCH)


def test_conv_throughput_target(pythae_conv, capsys):
    """rhvae's conv training step is at least 3× pythae's, on each backend. The three steps are
    timed in turn, round after round, so that other work on the shared cores slows them alike; the
    ratio is the median over rounds of pythae's time over the backend's."""
    x = _images(BATCH)
    steps = {}
    for backend in ("torch", "jax"):
        model = _model(backend)
        state = model.init(seed=0)
        steps[backend] = lambda model=model, state=state: model.step(state, x)
    steps["pythae"] = W.pythae_step(pythae_conv, x)
    times: dict[str, list[float]] = {name: [] for name in steps}
    for step in steps.values():  # compilation and warm-up
        step()
    for _ in range(ROUNDS):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    ratios = {b: float(np.median(np.divide(times["pythae"], times[b]))) for b in ("torch", "jax")}
    with capsys.disabled():
        print("\nconv train step, median s: " + ", ".join(f"{k} {np.median(v):.2f}" for k, v in times.items())
              + "; pythae ÷ rhvae, median of rounds: " + ", ".join(f"{b} {r:.2f}×" for b, r in ratios.items()))
    assert all(r >= TARGET for r in ratios.values()), f"target {TARGET}× pythae not met: {ratios}"
