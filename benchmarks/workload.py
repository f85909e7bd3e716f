"""The reference workload of DESIGN §6 and the pythae model it is compared with.

784 inputs, pythae's default networks (encoder and decoder MLP 512, metric MLP 400, ReLU),
latent 16, K=3, steps=3, batch 100, float32, 2 threads; pythae's ``eps_lf=1e-3``,
``beta_zero=0.3`` (our ``beta0 = 0.3² = 0.09``), ``temperature=1.5``, ``regularization=0.01``.
``RHVAE_BENCH_SMOKE=1`` shrinks everything so ``.ci/run`` can run each benchmark once quickly.
"""

from __future__ import annotations

import os

import numpy as np

import rhvae

SMOKE = os.environ.get("RHVAE_BENCH_SMOKE") == "1"
INPUT = 784
LATENT = 4 if SMOKE else 16
BATCH = 20 if SMOKE else 100
HIDDEN_ENC, HIDDEN_METRIC = (32, 16) if SMOKE else (512, 400)
HYPER = dict(K=3, eps=1e-3, beta0=0.09, T=1.5, lam=0.01, steps=3)
FLOP_PER_SAMPLE = 35e6
"""Compute floor of one training sample (DESIGN §6), used for the fraction-of-floor column."""


def data(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, INPUT)).astype(np.float32)


def model(backend: str, grad_h: str, K: int = 3, compile: bool | None = None, **extra) -> rhvae.RHVAE:
    """The reference model; ``extra``: further :class:`rhvae.config.RHVAEConfig` fields."""
    reg = rhvae.get_registry()
    return rhvae.RHVAE(backend, input_dim=INPUT, latent_dim=LATENT, grad_h=grad_h, compile=compile,
                       encoder=reg.create("encoder", "mlp", hidden=(HIDDEN_ENC,)),
                       decoder=reg.create("decoder", "bernoulli_mlp", hidden=(HIDDEN_ENC,)),
                       metric=reg.create("metric", "mlp", hidden=(HIDDEN_METRIC,)), **{**HYPER, "K": K, **extra})


def pythae_model():
    """pythae 0.1.2's RHVAE with the same networks and hyper-parameters (its own defaults)."""
    from pythae.models import RHVAE, RHVAEConfig

    config = RHVAEConfig(input_dim=(INPUT,), latent_dim=LATENT, n_lf=HYPER["K"], eps_lf=HYPER["eps"],
                         beta_zero=HYPER["beta0"] ** 0.5, temperature=HYPER["T"], regularization=HYPER["lam"])
    return RHVAE(config)


def pythae_step(model, x: np.ndarray):
    """One Adam step of a pythae model on the batch ``x``, as its trainer takes it; returns the loss."""
    import torch
    from pythae.data.datasets import DatasetOutput

    batch = DatasetOutput(data=torch.as_tensor(x))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()

    def step():
        loss = model(batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    return step


def matmul_gflops() -> float:
    """This machine's float32 matmul rate on 2 threads (a 1024³ product, best of 20)."""
    import time

    import torch

    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(20):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * 1024**3 / best / 1e9
