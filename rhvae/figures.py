"""Figures of a trained RHVAE (matplotlib, the ``plot`` extra); each function writes one PNG.

Images are drawn when the feature count is a square (8×8 digits, 28×28 MNIST); the latent map
needs ``latent_dim == 2``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rhvae.errors import RhvaeError
from rhvae.generation import log_target

if TYPE_CHECKING:
    from rhvae.model import RHVAE
    from rhvae.state import TrainState


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise RhvaeError("figures need matplotlib: pip install 'rhvae[plot]'") from exc
    return plt


def image_side(features: int) -> int | None:
    """The side of square images with ``features`` pixels, or ``None``."""
    side = math.isqrt(features)
    return side if side * side == features else None


def square_side(examples: np.ndarray) -> int | None:
    """The side of ``examples`` drawn as square grey images: flat rows of ``side²`` values,
    ``(n, side, side)`` or ``(n, 1, side, side)``; ``None`` for anything else (colour, non-square)."""
    shape = tuple(examples.shape[1:])
    if len(shape) == 1:
        return image_side(shape[0])
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    return shape[0] if len(shape) == 2 and shape[0] == shape[1] else None


def loss_curves(history: dict, path: Path) -> Path:
    """Training loss per step (and its per-epoch mean) beside the held-out negative ELBO per epoch."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    loss = np.asarray(history["loss"])
    ax1.plot(np.arange(1, loss.size + 1), loss, lw=0.8, alpha=0.6, label="per step")
    per_epoch = loss.size // max(len(history["epoch_loss"]), 1)
    ax1.plot(per_epoch * np.arange(1, len(history["epoch_loss"]) + 1), history["epoch_loss"], "o-", label="epoch mean")
    # a log-like axis only when the loss spans more than a decade (early spikes); else ticks vanish
    spread = np.nanmax(np.abs(loss)) / max(np.nanmin(np.abs(loss)), 1e-12) if loss.size else 1.0
    ax1.set(xlabel="training step", ylabel="loss (−ELBO, nats)", title="Training loss",
            yscale="symlog" if spread > 10 else "linear")
    ax1.legend()
    if history.get("val_elbo"):
        epochs = np.arange(1, len(history["val_elbo"]) + 1)
        ax2.plot(epochs, [-e for e in history["val_elbo"]], "o-", color="C3")
    ax2.set(xlabel="epoch", ylabel="−ELBO (nats)", title="Held-out negative ELBO")
    ax2.xaxis.get_major_locator().set_params(integer=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def latent_map(model: RHVAE, state: TrainState, x: np.ndarray, labels: np.ndarray, path: Path,
               grid: int = 150, dpi: int = 120) -> Path:
    """Encoder means coloured by label over heat maps of the learned volume ``log √det G⁻¹(z)``
    (with the centroids) and, beside it, of the decoder's pull-back volume ``log √det JᵀJ``;
    ``grid × grid`` points per map, saved at ``dpi``."""
    if model.config.latent_dim != 2:
        raise RhvaeError(f"the latent map needs latent_dim 2; this model has {model.config.latent_dim}")
    plt = _pyplot()
    mu, _ = model.encode(state, x)
    centroids = model.backend.to_numpy(state.metric.centroids)
    lo = np.minimum(mu.min(axis=0), centroids.min(axis=0)) - 1.0
    hi = np.maximum(mu.max(axis=0), centroids.max(axis=0)) + 1.0
    u, v = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    chunks = np.array_split(np.stack([u.ravel(), v.ravel()], axis=1), 10)
    learned = np.concatenate([-0.5 * model.log_det_metric(state, c) for c in chunks])
    pulled = np.concatenate([0.5 * np.linalg.slogdet(model.pullback_metric(state, c))[1] for c in chunks])
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.4), constrained_layout=True)
    panels = [(learned, "log √det G⁻¹(z)", "Learned metric volume (sampler target)"),
              (pulled, "log √det J(z)ᵀJ(z)", "Decoder pull-back volume")]
    for ax, (values, label, title) in zip(axes, panels):
        mesh = ax.pcolormesh(u, v, values.reshape(grid, grid), cmap="viridis", shading="auto")
        fig.colorbar(mesh, ax=ax, label=label, location="bottom", shrink=0.8)
        scatter = ax.scatter(mu[:, 0], mu[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
        ax.set(xlabel="z₁", ylabel="z₂", title=title)
    shown = centroids[np.random.default_rng(0).permutation(len(centroids))[:400]]  # 4,000 would hide the map
    axes[0].scatter(shown[:, 0], shown[:, 1], marker="x", c="white", s=14, lw=0.8,
                    label="centroids" if len(shown) == len(centroids) else f"{len(shown)} of {len(centroids)} centroids")
    axes[0].legend(loc="upper right")
    fig.colorbar(scatter, ax=axes, label="label", location="right", shrink=0.7)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _tile(images: np.ndarray, side: int, columns: int) -> np.ndarray:
    rows = math.ceil(len(images) / columns)
    canvas = np.zeros((rows * (side + 1) + 1, columns * (side + 1) + 1))
    for k, img in enumerate(images):
        r, c = divmod(k, columns)
        canvas[1 + r * (side + 1):1 + r * (side + 1) + side, 1 + c * (side + 1):1 + c * (side + 1) + side] = \
            img.reshape(side, side)
    return canvas


def image_grids(panels: dict[str, np.ndarray], path: Path, columns: int = 8) -> Path:
    """Side-by-side grids of images, one panel per entry (title -> ``(n, side²)`` or ``(n, 1, side, side)``)."""
    side = square_side(next(iter(panels.values())))
    if side is None:
        raise RhvaeError("image grids need square grey images: rows of side² values, or (1, side, side)")
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), constrained_layout=True)
    for ax, (title, images) in zip(np.atleast_1d(axes), panels.items()):
        ax.imshow(_tile(np.clip(images, 0, 1), side, columns), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
        ax.axis("off")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def geodesic_strips(paths: list, path: Path) -> Path:
    """One row of decoded images per geodesic (``model.geodesic`` results), with its lengths."""
    side = square_side(paths[0].x)
    if side is None:
        raise RhvaeError("geodesic strips need square grey images: rows of side² values, or (1, side, side)")
    plt = _pyplot()
    n = paths[0].x.shape[0]
    fig, axes = plt.subplots(len(paths), 1, figsize=(0.9 * n + 1.5, 1.1 * len(paths) + 0.6), constrained_layout=True)
    for ax, geodesic in zip(np.atleast_1d(axes), paths):
        ax.imshow(_tile(np.clip(geodesic.x, 0, 1), side, n), cmap="gray_r", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(f"{geodesic.length:.3g}\nvs {geodesic.straight_length:.3g}", rotation=0, ha="right",
                      va="center", fontsize=8)
    fig.suptitle("Decoded geodesics between held-out pairs (metric length vs straight segment)")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def sampler_trace(model: RHVAE, state: TrainState, samples, path: Path, chains: int = 8, grid: int = 120) -> Path:
    """The kept trajectories of ``chains`` sampler chains over the heat map of the geometry's
    ``log √det G⁻¹(z)`` (left, start and end marked; when the chains sampled another density,
    ``samples.target``, its top 12 nats are drawn as white contours), and each latent coordinate
    against the transition for the same chains (right, with the per-coordinate R-hat when ArviZ
    gave it). Latent dimension 2 only."""
    if model.config.latent_dim != 2:
        raise RhvaeError(f"the sampler trace map needs latent_dim 2; this model has {model.config.latent_dim}")
    if samples.trace is None:
        raise RhvaeError("these samples carry no trace (the prior, or samples of another version)")
    plt = _pyplot()
    trace = samples.trace[:, :chains]
    points = samples.trace.reshape(-1, 2)
    lo, hi = points.min(axis=0) - 1.0, points.max(axis=0) + 1.0
    u, v = np.meshgrid(np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid))
    cells = np.array_split(np.stack([u.ravel(), v.ravel()], axis=1), 8)

    def on_grid(target: str) -> np.ndarray:
        return np.concatenate([log_target(model, state, c, target) for c in cells]).reshape(grid, grid)

    volume, target = on_grid("volume"), samples.target or "volume"
    fig = plt.figure(figsize=(12, 5.2), constrained_layout=True)
    left, right = fig.subfigures(1, 2, width_ratios=[1.1, 1])
    ax = left.subplots()
    floor = max(float(volume.min()), float(volume.max()) - 12.0)  # the top 12 nats: where the volume's mass is
    mesh = ax.pcolormesh(u, v, volume, cmap="viridis", shading="auto", vmin=floor)
    left.colorbar(mesh, ax=ax, label="log √det G⁻¹(z) (+ const)", location="bottom", shrink=0.8)
    if target != "volume":
        density = on_grid(target)
        top = float(density.max())
        ax.contour(u, v, density, levels=np.linspace(top - 12.0, top, 7)[:-1], colors="white", linewidths=0.6,
                   alpha=0.8)
    for k in range(trace.shape[1]):
        ax.plot(trace[:, k, 0], trace[:, k, 1], lw=0.7, color=f"C{k % 10}", alpha=0.9)
        ax.plot(*trace[0, k], "o", color=f"C{k % 10}", ms=4)
        ax.plot(*trace[-1, k], "*", color=f"C{k % 10}", ms=9, mec="white", mew=0.5)
    contours = "" if target == "volume" else f"; contours: log π, target {target!r}"
    ax.set(xlabel="z₁", ylabel="z₂", title=f"{trace.shape[1]} chains, {trace.shape[0]} kept transitions "
                                             f"(o start, ★ end{contours})")
    axes = right.subplots(2, 1, sharex=True)
    r_hat = None if samples.diagnostics is None else samples.diagnostics["r_hat"]
    for j, axj in enumerate(axes):
        axj.plot(trace[:, :, j], lw=0.7)
        note = f", R-hat {r_hat[j]:.3f}" if r_hat is not None else ""
        axj.set(ylabel=f"z{'₁₂'[j]}", title=f"coordinate {j + 1}{note}")
    axes[-1].set_xlabel("kept transition")
    fig.suptitle(f"HMC sampler: step {samples.step_size:.3g}, acceptance {samples.acceptance:.2f}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
