"""The ``rhvae`` command: ``plugins``, ``info``, ``train``, ``evaluate``, ``sample``, ``bench``.

A subcommand is a ``run(args) -> int`` function plus one ``add_parser`` call in
:func:`build_parser` that sets ``run`` as its default. Bad arguments, every :class:`RhvaeError`
(bad input is an :class:`~rhvae.errors.InputError`) and a file system error print one line
``rhvae: error: ...`` to stderr and return 2; any other exception is a bug in rhvae or a
dependency and keeps its traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np

import rhvae
from rhvae import checkpoint
from rhvae.config import RHVAEConfig
from rhvae.errors import RhvaeError
from rhvae.generation import sample as _sample
from rhvae.math.sampler import TARGETS
from rhvae.presets import PRESETS
from rhvae.registry import get_registry


def _bound(text: str) -> float | str:
    """``--M-max``: a number, or ``none`` for no bound."""
    return "none" if text.lower() == "none" else float(text)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already states it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, argparse.SUPPRESS) or not action.option_strings:
            return text
        shown = " ".join(map(str, action.default)) if isinstance(action.default, list) else action.default
        return f"{text} (default: {shown})".lstrip()


_CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(RHVAEConfig)}
_SAMPLER = {name: p.default for name, p in inspect.signature(_sample).parameters.items()
            if p.default is not inspect.Parameter.empty}
"""``rhvae sample``'s defaults: the library's (:func:`rhvae.generation.sample`), never restated."""


def _network_default(kind: str, name: str, option: str):
    """A built-in network's default ``option``, read from its registered factory (never restated)."""
    return inspect.signature(get_registry().get(kind, name).load()).parameters[option].default


ARCHS = ("mlp", "conv")
"""``--arch``: dense networks on rows, or the convolutional built-ins on images."""
_HYPER_FLAGS = {
    "--K": ("K", int, "leapfrog steps"),
    "--eps": ("eps", float, "leapfrog step size"),
    "--steps": ("steps", int, "fixed-point iterations of each implicit leapfrog update"),
    "--beta0": ("beta0", float, "initial inverse temperature of the tempering, in (0, 1]"),
    "--T": ("T", float, "metric temperature"),
    "--lam": ("lam", float, "metric regulariser λ"),
    "--M-max": ("M_max", _bound, "bound on the trace of every M_i; 'none' for no bound"),
    "--lr": ("learning_rate", float, "Adam learning rate"),
}
"""``rhvae train`` flags of :class:`RHVAEConfig` fields: ``flag -> (field, type, help)``."""


class _UsageError(Exception):
    """A command-line error that argparse would otherwise report by exiting."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(message)

    @property
    def options(self) -> list[argparse.Action]:
        """Every option this parser takes (argparse keeps the list private)."""
        return list(self._actions)


def _plugins(args: argparse.Namespace) -> int:
    """Each plugin with its distribution and version, then its components ``kind:name [backends]``;
    then each plugin that failed to load, with its error."""
    for info in get_registry().plugins():
        print(f"{info.name} (from {info.distribution} {info.version}".rstrip() + ")")
        for spec in info.components:
            backends = ", ".join(spec.backends) if spec.backends else "all backends"
            line = f"  {spec.kind}:{spec.name} [{backends}]"
            print(f"{line}  {spec.doc}" if spec.doc else line)
        if not info.components:
            print("  (no components)")
    for name, error in get_registry().broken.items():
        print(f"{name} (BROKEN, not loaded): {error}")
    return 0


def _info(args: argparse.Namespace) -> int:
    """Versions of rhvae, Python and numpy, then each registered backend's version and devices."""
    print(f"rhvae {rhvae.__version__}")
    print(f"python {platform.python_version()} ({sys.executable})")
    print(f"numpy {np.__version__}")
    registry = get_registry()
    for name in registry.names("backend"):
        try:
            backend = registry.create("backend", name)
        except Exception as exc:  # a diagnostic command reports every failure instead of stopping
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            print(f"backend {name}: not installed: {first_line}")
            continue
        devices = ", ".join(str(device) for device in backend.devices())
        print(f"backend {name}: {backend.version} (devices: {devices})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``rhvae`` parser; each subparser sets ``run``, the function that executes it."""
    parser = _Parser(prog="rhvae", description="Riemannian Hamiltonian VAE on PyTorch and JAX.")
    parser.add_argument("--version", action="version", version=f"rhvae {rhvae.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    commands.add_parser("plugins", help="list plugins, their distributions and components").set_defaults(run=_plugins)
    commands.add_parser("info", help="versions of rhvae, python, numpy and the backends").set_defaults(run=_info)
    train = commands.add_parser(
        "train", help="train an RHVAE on an embedded data set or a .npy/.npz file",
        formatter_class=_DefaultsFormatter,
        description="Train an RHVAE; every default is the library's (RHVAEConfig and the built-in networks).")
    train.add_argument("--config", default=None, metavar="FILE",
                       help="a JSON (or, on Python 3.11+, TOML) file of option names and values, e.g. "
                            '{"latent_dim": 2, "T": 0.4, "M_max": "none"}; options given on the command line win')
    train.add_argument("--data", default="mnist", help="mnist, digits, or a .npy/.npz path")
    train.add_argument("--backend", default="torch", help="torch or jax")
    train.add_argument("--latent-dim", type=int, default=2, help="latent dimension d")
    train.add_argument("--epochs", type=int, default=None,
                       help="passes over the training rows (default 5; with --resume: the run's own)")
    train.add_argument("--batch-size", type=int, default=100, help="rows per Adam step")
    train.add_argument("--arch", choices=ARCHS, default="mlp",
                       help="mlp: dense networks on flat rows; conv: convolutional encoder, metric network and "
                            "transposed-convolution decoder on square images (1, side, side)")
    train.add_argument("--channels", type=int, nargs="+", default=None,
                       help="--arch conv: channels of the encoder's and metric network's stride-2 layers "
                            "(the decoder's run in reverse; default: the built-in conv encoder's)")
    train.add_argument("--hidden", type=int, nargs="+", default=None,
                       help="hidden widths of the encoder and the decoder (default: the built-in MLP's)")
    train.add_argument("--metric-hidden", type=int, nargs="+", default=None,
                       help="hidden widths of the metric network (default: the built-in metric MLP's)")
    train.add_argument("--init", choices=("fan_in", "glorot"), default=None,
                       help="initialisation of the networks (glorot: rhvae 0.1's; default: the built-ins' fan_in)")
    for flag, (field, kind, text) in _HYPER_FLAGS.items():
        aliases = ("--temperature",) if field == "T" else ()
        train.add_argument(flag, *aliases, dest=field, type=kind, default=None,
                           help=f"{text} (default: {_CONFIG_DEFAULTS[field]}, or the preset's)")
    train.add_argument("--grad-h", default=None,
                       help="registered ∇H method (default analytic, or the preset's)")
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="aetk_compat: AutoEncoderToolkit.jl's integrator, step and defaults (docs/comparison.md); "
                            "rhvae_0_1: rhvae 0.1's unbounded metric (with --init glorot: its numbers)")
    train.add_argument("--decoder", default="bernoulli_mlp", help="registered decoder")
    train.add_argument("--prior", default="spherical", help="registered position prior")
    train.add_argument("--tempering", default="quadratic", help="registered tempering schedule")
    train.add_argument("--centroids", default="batch",
                       help="'batch' (each batch is its own centroid set, as pythae) or a count of training "
                            "points used as fixed centroids")
    train.add_argument("--n-test", type=int, default=1000, help="rows held out for evaluation")
    train.add_argument("--seed", type=int, default=0, help="seed of the split, the parameters and every draw")
    train.add_argument("--out", default=None,
                       help="output folder (default: a new numbered folder runs/run-NNN, linked as runs/latest); "
                            "an existing run is never replaced without --overwrite")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the run files (checkpoints, metrics, figures, samples) already in --out")
    train.add_argument("--figures", action=argparse.BooleanOptionalAction, default=True,
                       help="draw the loss, latent-space, sample, reconstruction and geodesic figures at the end")
    train.add_argument("--resume", default=None, metavar="RUN",
                       help="continue the run in folder RUN from its last completed epoch, with its own settings, "
                            "up to --epochs (the numbers are those of an uninterrupted run)")
    train.add_argument("--device", default="cpu",
                       help="cpu, cuda or gpu; with --distributed on torch each process takes cuda:LOCAL_RANK")
    train.add_argument("--compile", action="store_true",
                       help="torch: torch.compile the step and evaluation (about a minute to compile, then "
                            "2-3x faster steps); jax always compiles")
    train.add_argument("--distributed", action="store_true",
                       help="data-parallel: torch under 'torchrun --nproc-per-node N', jax over every device")
    train.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="jax with several processes: process 0's address (jax.distributed.initialize); "
                            "with --num-processes and --process-id")
    train.add_argument("--num-processes", type=int, default=None)
    train.add_argument("--process-id", type=int, default=None)
    train.set_defaults(run=_train)
    parser.train_parser = train  # _parse applies a --config file to it
    evaluate = commands.add_parser("evaluate", help="held-out ELBO and reconstruction error of a trained run")
    evaluate.add_argument("--run", dest="run_dir", default="runs/latest", help="the folder 'rhvae train' wrote")
    evaluate.add_argument("--checkpoint", choices=("last", "best"), default="last",
                          help="the last epoch's state, or the one with the best held-out ELBO (default last)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the ELBO's noise")
    evaluate.add_argument("--nll-samples", type=int, default=100,
                          help="importance samples per row for -log p(x) (default 100; 0 skips it)")
    evaluate.add_argument("--quality-samples", type=int, default=500,
                          help="samples scored by Frechet distance and precision/recall in a classifier's features "
                               "(default 500; 0 skips it; needs scikit-learn)")
    evaluate.set_defaults(run=_evaluate)
    sample = commands.add_parser("sample", help="generate with the HMC sampler (or the prior)",
                                 formatter_class=_DefaultsFormatter)
    sample.add_argument("--run", dest="run_dir", default="runs/latest", help="the folder 'rhvae train' wrote")
    sample.add_argument("--checkpoint", choices=("last", "best"), default="last",
                        help="the last epoch's state, or the one with the best held-out ELBO (default last)")
    sample.add_argument("--n", type=int, default=64, help="number of samples (one HMC chain each)")
    sample.add_argument("--transitions", type=int, default=_SAMPLER["transitions"],
                        help="transitions kept after the warm-up")
    sample.add_argument("--warmup", type=int, default=_SAMPLER["warmup"],
                        help="warm-up transitions that adapt the step size (0: a fixed --eps)")
    sample.add_argument("--target-accept", type=float, default=_SAMPLER["target_accept"],
                        help="acceptance rate the warm-up aims at")
    sample.add_argument("--target", choices=tuple(TARGETS), default=_SAMPLER["target"],
                        help="posterior: the aggregate posterior of the training codes; centroids: sqrt det(G^-1 - "
                             "lam I), proper; volume: sqrt det G^-1 (pythae's, improper)")
    sample.add_argument("--eps", type=float, default=_SAMPLER["eps"],
                        help="HMC leapfrog step size (initial, with a warm-up)")
    sample.add_argument("--n-lf", type=int, default=_SAMPLER["n_lf"], help="leapfrog steps per HMC transition")
    sample.add_argument("--beta0", type=float, default=_SAMPLER["beta0"],
                        help="temper each trajectory to this inverse temperature at its middle (1: none)")
    sample.add_argument("--prior", action="store_true", help="decode N(0, I) draws instead")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default=None,
                        help="output folder (default: the run folder); an existing samples file is never replaced: "
                             "the next free name samples-N.npz is used")
    sample.set_defaults(run=_sample)
    bench = commands.add_parser("bench", help="a short cross-backend training-step benchmark")
    bench.add_argument("--backends", default="torch,jax", help="comma-separated backends (default torch,jax)")
    bench.add_argument("--latent-dim", type=int, default=16)
    bench.add_argument("--batch-size", type=int, default=100)
    bench.add_argument("--grad-h", default="analytic")
    bench.add_argument("--steps", type=int, default=10, help="timed steps after the warm-up call")
    bench.set_defaults(run=_bench)
    return parser


def _shaped(args: argparse.Namespace, data: tuple) -> tuple:
    """``(x_train, y_train, x_test, y_test)`` as the architecture reads them: flat rows for ``mlp``,
    ``(N, 1, side, side)`` images for ``conv``."""
    if getattr(args, "arch", "mlp") != "conv":
        return data
    from rhvae.figures import image_side

    x_train, y_train, x_test, y_test = data
    side = image_side(x_train.shape[1])
    if side is None:
        raise RhvaeError(f"--arch conv: needs square images; {args.data} has {x_train.shape[1]} features per row")
    return x_train.reshape(-1, 1, side, side), y_train, x_test.reshape(-1, 1, side, side), y_test


def _input_dim(x) -> int | tuple[int, ...]:
    return x.shape[1] if x.ndim == 2 else tuple(x.shape[1:])


def _networks(args: argparse.Namespace) -> dict:
    """The encoder, decoder and metric network that ``--arch`` and the width flags describe."""
    reg = get_registry()
    if getattr(args, "arch", "mlp") == "conv":
        channels = tuple(getattr(args, "channels", None) or _network_default("encoder", "conv", "channels"))
        decoder = args.decoder.removesuffix("_mlp") + "_conv" if args.decoder.endswith("_mlp") else args.decoder
        return {"encoder": reg.create("encoder", "conv", channels=channels),
                "decoder": reg.create("decoder", decoder, channels=channels[::-1]),
                "metric": reg.create("metric", "conv", channels=channels)}
    hidden = _widths(getattr(args, "hidden", None))
    metric_hidden = _widths(getattr(args, "metric_hidden", None), hidden if isinstance(args.hidden, int) else None)
    init = getattr(args, "init", None) or _network_default("encoder", "mlp", "init")
    hidden = hidden or _network_default("encoder", "mlp", "hidden")
    return {"encoder": reg.create("encoder", "mlp", hidden=hidden, init=init),
            "decoder": reg.create("decoder", args.decoder, hidden=hidden, init=init),
            "metric": reg.create("metric", "mlp", hidden=metric_hidden or _network_default("metric", "mlp", "hidden"),
                                 init=init)}


def _build_model(args: argparse.Namespace, input_dim: int | tuple[int, ...], config: dict | None = None) -> rhvae.RHVAE:
    """The model ``rhvae train`` builds from its arguments. ``config``: a checkpoint's saved
    configuration, which then gives every hyper-parameter (a run reloads as it trained)."""
    preset = getattr(args, "preset", None)
    hyper = PRESETS[preset]() if preset else {}
    preset_grad_h = hyper.pop("grad_h", "analytic")
    grad_h = args.grad_h or preset_grad_h
    if config is not None:
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()
                 if k not in ("input_dim", "latent_dim", "output_dim")}
    else:
        hyper.update({field: getattr(args, field) for field, _, _ in _HYPER_FLAGS.values()
                      if getattr(args, field, None) is not None})
        if hyper.get("M_max") == "none":
            hyper["M_max"] = None
    device = getattr(args, "device", "cpu")
    if getattr(args, "distributed", False) and args.backend == "torch" and device in ("cuda", "gpu"):
        import os

        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return rhvae.RHVAE(
        args.backend, input_dim=input_dim, latent_dim=args.latent_dim, grad_h=grad_h, device=device,
        compile=True if getattr(args, "compile", False) else None, **hyper, **_networks(args),
        position_prior=args.prior, tempering=args.tempering,
    )


def _build_model_naming_flags(args: argparse.Namespace, input_dim: int) -> rhvae.RHVAE:
    """:func:`_build_model`, with a bad hyper-parameter reported under its flag (``--lr``, not
    ``learning_rate``)."""
    from rhvae.errors import InputError, InputTypeError

    flags = {field: flag for flag, (field, _, _) in _HYPER_FLAGS.items()}
    flags["latent_dim"] = "--latent-dim"
    try:
        return _build_model(args, input_dim)
    except (InputError, InputTypeError) as exc:
        text = str(exc)
        named = next((flag for field, flag in flags.items() if text.startswith(f"{field} ")), None)
        if named is None and text.startswith("hidden sizes"):
            named = "--hidden/--metric-hidden"
        if named is None and text.startswith("channels must"):
            named = "--channels"
        raise RhvaeError(f"{named}: {text}" if named else text) from None


def _widths(value, fallback=None) -> tuple[int, ...] | None:
    """Hidden widths from a saved or parsed ``--hidden``: a list, or one int (runs before 0.2)."""
    if value is None:
        return fallback
    return (value,) if isinstance(value, int) else tuple(value)


def _figures(model, state, history, x_test, y_test, out, n_samples: int, seed: int) -> list:
    """Every figure that applies to this model and data; skipped, with a note, without matplotlib."""
    from rhvae import figures
    from rhvae.errors import RhvaeError

    written = []
    try:
        written.append(figures.loss_curves(history, out / "loss.png"))
        if model.config.latent_dim == 2:
            written.append(figures.latent_map(model, state, x_test, y_test, out / "latent_space.png"))
        if figures.square_side(x_test):
            riemannian = model.sample(state, n_samples, seed=seed)
            prior = model.sample_prior(state, n_samples, seed=seed)
            written.append(figures.image_grids(
                {f"HMC sampler (acceptance {riemannian.acceptance:.2f})": riemannian.x,
                 "Prior N(0, I)": prior.x}, out / "samples.png"))
            written.append(figures.image_grids(
                {"Held-out data": x_test[:32], "Reconstructions": model.reconstruct(state, x_test[:32])},
                out / "reconstructions.png"))
            mu, _ = model.encode(state, x_test[:8])
            paths = [model.geodesic(state, mu[2 * k], mu[2 * k + 1], n_segments=9, iterations=300, progress=False)
                     for k in range(4)]
            written.append(figures.geodesic_strips(paths, out / "geodesics.png"))
    except RhvaeError as exc:
        print(f"figures skipped: {exc}")
    return written


DEFAULT_EPOCHS = 5
RUNS = Path("runs")
"""Where runs go without ``--out``: ``runs/run-001``, ``runs/run-002``, ... and the link ``runs/latest``."""
RUN_FILES = ("last.npz", "best.npz", "diverged.npz", "interrupted.npz", "metrics.json", "checkpoint.npz", "checkpoint.json",
             "loss.png", "latent_space.png", "samples.png", "reconstructions.png", "geodesics.png")
"""The files ``rhvae train`` writes (and 0.2's ``checkpoint.npz|json``): what ``--overwrite`` replaces."""
_RESUME_KEEPS = {"resume", "epochs", "device", "compile", "distributed", "coordinator", "num_processes",
                 "process_id", "run", "config", "figures"}
"""``train`` options that still apply with ``--resume``; every other one is the run's own."""


def _train(args: argparse.Namespace) -> int:
    from rhvae import datasets

    _join_processes(args)
    if args.resume is not None:
        return _resume(args)
    args.epochs = DEFAULT_EPOCHS if args.epochs is None else args.epochs
    _check_counts(args, ("epochs", "batch_size", "latent_dim"))
    data = _shaped(args, datasets.load(args.data, args.n_test, args.seed))
    model = _build_model_naming_flags(args, _input_dim(data[0]))
    parallel = model.data_parallel() if args.distributed else None
    main = parallel is None or parallel.is_main
    out = _prepare_out(args) if main else None  # before any training: a bad --out costs nothing
    if main:
        print(f"training on {args.data}: {len(data[0])} train / {len(data[2])} test rows, {model!r}")
        print(f"writing to {out}")
    centroids = args.centroids if args.centroids == "batch" else _centroid_count(args.centroids)
    state = model.init(seed=args.seed, centroids=centroids, data=data[0])
    return _run_epochs(args, model, state, _empty_history(), out, data, parallel)


def _check_counts(args: argparse.Namespace, names: tuple[str, ...]) -> None:
    """Each of ``names`` an integer >= 1, and ``seed`` (when the command has one) >= 0, else an
    error naming the flag."""
    for name in names:
        value = getattr(args, name)
        if value < 1:
            raise RhvaeError(f"--{name.replace('_', '-')} must be an integer >= 1; got {value}")
    if getattr(args, "seed", 0) < 0:
        raise RhvaeError(f"--seed must be an integer >= 0; got {args.seed}")


def _centroid_count(text: str) -> int:
    try:
        count = int(text)
    except ValueError:
        raise RhvaeError(f"--centroids must be 'batch' or a number of training rows; got {text!r}") from None
    if count < 1:
        raise RhvaeError(f"--centroids must be 'batch' or a number >= 1 of training rows; got {count}")
    return count


def _empty_history() -> dict:
    return {"loss": [], "epoch_loss": [], "epoch_seconds": [], "val_elbo": [], "skipped_steps": []}


def _prepare_out(args: argparse.Namespace) -> Path:
    """The run folder, created and proven writable: ``--out`` (refused when it holds a run, unless
    ``--overwrite``, which removes the run files there) or the next ``runs/run-NNN``."""
    if args.out is None:
        out = _new_run_folder(RUNS)
    else:
        out = Path(args.out)
        existing = _run_files(out)
        if existing and not args.overwrite:
            raise RhvaeError(f"--out {out} already holds a run ({', '.join(p.name for p in existing[:4])}); pass "
                             f"--overwrite to replace it, or leave --out out for a new folder under {RUNS}/")
        try:
            out.mkdir(parents=True, exist_ok=True)
            for path in existing:
                path.unlink(missing_ok=True)
        except OSError as exc:
            raise RhvaeError(f"--out {out}: cannot create the folder or clear its run files: "
                             f"{exc.strerror or exc}") from None
    _prove_writable(out, "--out")
    return out


def _prove_writable(out: Path, flag: str) -> None:
    """Write and remove a file in ``out`` now, so a folder that cannot take the run fails before training."""
    from rhvae.atomic import write_text_atomic

    try:
        (out / ".rhvae-write-test").unlink(missing_ok=True)
        write_text_atomic(out / ".rhvae-write-test", "")
        (out / ".rhvae-write-test").unlink()
    except OSError as exc:
        raise RhvaeError(f"{flag} {out}: cannot write there: {exc.strerror or exc}") from None


_SAMPLE_FILE = re.compile(r"samples(-\d+)?(\.npz|_grid\.png|_trace\.png)$")


def _run_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that ``rhvae train`` and ``rhvae sample`` write (exact names only)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and (p.name in RUN_FILES or _SAMPLE_FILE.match(p.name)))


def _new_run_folder(root: Path) -> Path:
    """``root/run-NNN`` with the next free number, created (a concurrent run takes the next one)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RhvaeError(f"cannot create the runs folder {root}: {exc.strerror or exc}; pass --out") from None
    numbers = [int(p.name[4:]) for p in root.glob("run-*") if p.name[4:].isdigit()]
    number = max(numbers, default=0) + 1
    while True:
        folder = root / f"run-{number:03d}"
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            number += 1


def _link_latest(out: Path) -> None:
    """Point ``runs/latest`` at ``out`` (replacing an older link atomically, never a real folder);
    done when the run's first epoch is saved, so ``latest`` never names an empty run."""
    latest = out.parent / "latest"
    if latest.exists() and not latest.is_symlink():
        print(f"note: {latest} is a folder (an older rhvae's run), so it stays; this run is {out}")
        return
    tmp = out.parent / f".latest.{os.getpid()}"
    try:
        tmp.unlink(missing_ok=True)
        os.symlink(out.name, tmp, target_is_directory=True)
        os.replace(tmp, latest)
    except OSError:  # a file system without symbolic links: the run folder is still printed
        tmp.unlink(missing_ok=True)


def _resume(args: argparse.Namespace) -> int:
    """``train --resume RUN``: reload the last completed epoch of RUN and train on to ``--epochs``."""
    from rhvae import datasets

    parser = build_parser().train_parser
    defaults = vars(parser.parse_args([]))
    flag = {a.dest: a.option_strings[0] for a in parser.options if a.option_strings}
    changed = sorted(k for k, v in vars(args).items() if k not in _RESUME_KEEPS and defaults.get(k, v) != v)
    if changed:
        flags = ", ".join(flag.get(k, k) for k in changed)
        raise RhvaeError(f"{flags} cannot change with --resume: the run continues with its own settings "
                         f"(only --epochs, --device, --compile, --figures and the distributed options apply)")
    run = Path(args.resume)
    file = _run_checkpoint(run, "last")
    _prove_writable(run, "--resume")
    meta = checkpoint.read_metadata(file)
    saved = _run_args(file, meta)
    saved.update(resume=None, device=args.device, compile=args.compile, distributed=args.distributed,
                 out=str(run), overwrite=False, figures=args.figures)
    for key in ("coordinator", "num_processes", "process_id"):
        saved[key] = getattr(args, key)
    target = args.epochs if args.epochs is not None else saved.get("epochs", DEFAULT_EPOCHS)
    run_args = argparse.Namespace(**{**defaults, **saved, "epochs": target})
    _check_counts(run_args, ("epochs",))
    if meta["epoch"] >= target:
        raise RhvaeError(f"--resume {run}: the run has trained {meta['epoch']} epoch(s) already; pass --epochs "
                         f"N > {meta['epoch']} to train further")
    data = _shaped(run_args, datasets.load(run_args.data, run_args.n_test, run_args.seed))
    model = _build_model(run_args, _input_dim(data[0]), config=checkpoint.saved_config(meta))
    state = model.load(file, check_version=False)
    history = meta.get("metadata", {}).get("history") or _empty_history()
    history = {k: list(history.get(k, [])) for k in _empty_history()}
    parallel = model.data_parallel() if args.distributed else None
    if parallel is None or parallel.is_main:
        print(f"resuming {run} at epoch {meta['epoch'] + 1} of {target}")
    return _run_epochs(run_args, model, state, history, run if parallel is None or parallel.is_main else None,
                       data, parallel)


def _run_epochs(args, model, state, history: dict, out: Path | None, data, parallel) -> int:
    """Train epoch by epoch up to ``args.epochs``; after each, write ``last.npz`` (state, arguments
    and history in one atomic file), ``best.npz`` when the held-out ELBO improved, and
    ``metrics.json``. Divergence writes the last finite state to ``diverged.npz``; Ctrl-C keeps
    the last completed epoch and writes the state after the last completed step to
    ``interrupted.npz``. Both end with how to go on."""
    from rhvae.errors import TrainingDivergedError, TrainingInterrupted

    x_train, _, x_test, y_test = data
    main = out is not None
    run_args = {k: v for k, v in vars(args).items() if k != "run"}
    try:
        while state.epoch < args.epochs:
            state, epoch_history = model.fit(state, x_train, epochs=1, batch_size=args.batch_size,
                                             validation_data=x_test, distributed=args.distributed)
            for key, values in epoch_history.items():
                history.setdefault(key, []).extend(values)
            if main:
                _save_epoch(model, state, history, run_args, out)
    except TrainingDivergedError as err:
        for key, values in err.history.items():
            history.setdefault(key, []).extend(values)
        if main:
            history["diverged"] = {"epoch": err.epoch + 1, "step": err.step, "loss": str(err.loss)}
            kept = [f"{out}/metrics.json"]
            if err.finite:
                model.save(err.state, out / "diverged",
                           metadata={"command": "train", "args": run_args, "history": history})
                kept.insert(0, f"{out}/diverged.npz (the state after step {err.state.step}, whose loss was finite)")
            if (out / "last.npz").exists():
                kept.insert(0, f"{out}/last.npz (epoch {state.epoch})")
            _write_metrics(out, history)
            print(f"rhvae: error: the loss became {err.loss} at epoch {err.epoch + 1}, step {err.step}. Kept: "
                  f"{', '.join(kept)}. Train again with a smaller --lr or --eps, or a larger --lam.",
                  file=sys.stderr)
        _end_processes(parallel)
        return 1
    except KeyboardInterrupt as exc:
        kept = ""
        if main:
            if isinstance(exc, TrainingInterrupted):  # the steps of the unfinished epoch, kept apart
                for key, values in exc.history.items():
                    history.setdefault(key, []).extend(values)
                model.save(exc.state, out / "interrupted",
                           metadata={"command": "train", "args": run_args, "history": history})
                kept = f" ({out}/interrupted.npz holds the state after step {exc.state.step})"
            _write_metrics(out, history)
            if (out / "last.npz").exists():
                done = _read_epoch(out / "last.npz")
                print(f"\ninterrupted: {out}/last.npz holds epoch {done}{kept}. Continue with: "
                      f"rhvae train --resume {out}", file=sys.stderr)
            else:
                print(f"\ninterrupted in the first epoch{kept}; no epoch was completed, so there is nothing to "
                      f"resume: train again", file=sys.stderr)
        return 130
    if main:
        written = _figures(model, state, history, x_test, y_test, out, 64, args.seed) if args.figures else []
        print(f"held-out ELBO {history['val_elbo'][-1]:.2f} after {args.epochs} epochs")
        print(f"wrote {out}/last.npz, best.npz, metrics.json" + "".join(f", {p.name}" for p in written))
    _end_processes(parallel)
    return 0


def _read_epoch(file: Path) -> int:
    """The number of completed epochs of the checkpoint ``file``."""
    return checkpoint.read_metadata(file)["epoch"]


def _save_epoch(model, state, history: dict, run_args: dict, out: Path) -> None:
    meta = {"command": "train", "args": run_args, "history": history}
    first = not (out / "last.npz").exists()
    model.save(state, out / "last", metadata=meta)
    if first and out.parent.resolve() == RUNS.resolve():
        _link_latest(out)  # once the run holds a checkpoint: evaluate and sample then find it
    val = history["val_elbo"]
    if len(val) == 1 or val[-1] > max(val[:-1]) or not (out / "best.npz").is_file():
        model.save(state, out / "best", metadata=meta)
    _write_metrics(out, history)


def _write_metrics(out: Path, history: dict) -> None:
    from rhvae.atomic import write_text_atomic

    write_text_atomic(out / "metrics.json", json.dumps(history, indent=1))


def _end_processes(parallel) -> None:
    if parallel is not None:
        parallel.barrier()  # a process that exits while another still works can abort the run
        if hasattr(parallel, "exit"):  # torch: skip a gloo teardown that can abort after success
            parallel.exit(0)


def _join_processes(args: argparse.Namespace) -> None:
    """``--coordinator``: join a multi-process JAX run before the first array is made."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return
    if None in given or not args.distributed:
        raise RhvaeError("--coordinator, --num-processes and --process-id go together, with --distributed "
                         "(and a backend that joins processes by address: jax; torch takes them from torchrun)")
    factory = get_registry().resolve("backend", args.backend)
    join = getattr(factory, "join_processes", None)  # a factory function, not a BackendBase class, has none
    if join is None:
        raise RhvaeError(f"backend {args.backend!r} does not join processes by address (its factory "
                         f"{getattr(factory, '__name__', factory)!r} has no join_processes)")
    join(args.coordinator, args.num_processes, args.process_id)


def _run_checkpoint(run: Path, which: str) -> Path:
    """``RUN/last.npz`` or ``RUN/best.npz`` (``RUN/checkpoint.npz`` for a run of rhvae 0.2.0 and older)."""
    if not run.is_dir():
        raise RhvaeError(f"run folder {run} does not exist (rhvae train prints the folder it writes)")
    for name in (f"{which}.npz", "checkpoint.npz"):
        if (run / name).is_file():
            return run / name
    raise RhvaeError(f"run folder {run} holds no {which}.npz: not a finished epoch of 'rhvae train'")


def _run_args(file: Path, meta: dict) -> dict:
    if meta.get("metadata", {}).get("command") != "train" or not isinstance(meta["metadata"].get("args"), dict):
        raise checkpoint.CheckpointError(f"{file} was not written by 'rhvae train'")
    return dict(meta["metadata"]["args"])


def _load_run(run: str, which: str = "last"):
    """``(model, state, args, (x_train, y_train, x_test, y_test))`` of the run folder ``rhvae train`` wrote."""
    from rhvae import datasets

    file = _run_checkpoint(Path(run), which)
    meta = checkpoint.read_metadata(file)
    args = argparse.Namespace(**_run_args(file, meta))
    x_train, y_train, x_test, y_test = _shaped(args, datasets.load(args.data, args.n_test, args.seed))
    model = _build_model(args, _input_dim(x_train), config=checkpoint.saved_config(meta))
    # the model is rebuilt from the checkpoint's own configuration, so another version's run loads
    state = model.load(file, check_version=False)
    if state.metric is not None and state.metric.log_sigma is None:  # written before σ was kept: add it
        rows = x_train if state.centroid_data is None else model.backend.to_numpy(state.centroid_data)
        log_sigma = model.to_backend(model.encode(state, rows)[1])  # the rows the centroids were encoded from
        state = state.replace(metric=state.metric._replace(log_sigma=log_sigma))
    return model, state, args, (x_train, y_train, x_test, y_test)


def _evaluate(args: argparse.Namespace) -> int:
    _check_counts(args, ())
    if args.nll_samples < 0:
        raise RhvaeError(f"--nll-samples must be an integer >= 0 (0 skips the NLL); got {args.nll_samples}")
    if args.quality_samples < 0:
        raise RhvaeError(f"--quality-samples must be an integer >= 0 (0 skips it); got {args.quality_samples}")
    model, state, run_args, (x_train, y_train, x_test, _) = _load_run(args.run_dir, args.checkpoint)
    elbo = model.elbo(state, x_test, seed=args.seed)
    recon = model.reconstruct(state, x_test)
    mse = float(np.mean((recon - x_test) ** 2))
    print(f"{run_args.data} held-out rows: {len(x_test)}")
    print(f"held-out ELBO {elbo:.3f} nats (negative ELBO {-elbo:.3f})")
    if args.nll_samples:
        nll = model.nll(state, x_test, n_samples=args.nll_samples, seed=args.seed)
        print(f"held-out NLL {float(np.mean(nll)):.3f} nats ({args.nll_samples} importance samples per row)")
    print(f"reconstruction mean squared error {mse:.5f}")
    if args.quality_samples:
        _report_quality(model, state, x_train, y_train, x_test, args.quality_samples, args.seed)
    return 0


def _report_quality(model, state, x_train, y_train, x_test, n: int, seed: int) -> None:
    """Fréchet distance and precision/recall of the HMC sampler (default target) and of the prior against
    held-out rows, in the features of a classifier trained on the training rows."""
    from rhvae.sample_quality import FeatureSpace

    if len(np.unique(y_train)) < 2:
        print("sample quality skipped: the data has no labels to train the feature classifier on")
        return
    space = FeatureSpace(x_train, y_train, seed=seed)
    n = min(n, len(x_test))
    drawn = {"HMC sampler": model.sample(state, n, seed=seed).x,
             "prior N(0, I)": model.sample_prior(state, n, seed=seed).x,
             "reconstructions": model.reconstruct(state, x_test[n:2 * n]) if len(x_test) >= 2 * n else None}
    print(f"sample quality against {n} held-out rows, in the hidden features of an MLP classifier trained on "
          f"the training rows (training accuracy {space.accuracy:.3f}; not comparable to Inception FID):")
    for name, x in drawn.items():
        if x is not None:
            q = space.compare(x_test[:n], x)
            print(f"  {name:19s} Frechet distance {q.frechet:8.2f}  precision {q.precision:.3f}  recall {q.recall:.3f}")


def _sample(args: argparse.Namespace) -> int:
    from rhvae import figures
    from rhvae.atomic import write_atomic

    _check_counts(args, ("n", "transitions", "n_lf"))
    if args.warmup < 0:
        raise RhvaeError(f"--warmup must be an integer >= 0; got {args.warmup}")
    if not 0 < args.target_accept < 1:
        raise RhvaeError(f"--target-accept must lie in (0, 1); got {args.target_accept}")
    model, state, _, _ = _load_run(args.run_dir, args.checkpoint)
    out = Path(args.out or args.run_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RhvaeError(f"--out {out}: cannot create the folder: {exc.strerror or exc}") from None
    name = _free_name(out, "samples")
    if args.prior:
        drawn = model.sample_prior(state, args.n, seed=args.seed)
    else:
        drawn = model.sample(state, args.n, transitions=args.transitions, warmup=args.warmup, eps=args.eps,
                             n_lf=args.n_lf, target_accept=args.target_accept, target=args.target,
                             beta0=args.beta0, seed=args.seed)
        print(_sampler_report(drawn))
    arrays = {"x": drawn.x, "z": drawn.z}
    if not args.prior:
        arrays.update(trace=drawn.trace, acceptance_per_chain=drawn.acceptance_per_chain,
                      step_size=np.asarray(drawn.step_size))
    write_atomic(out / f"{name}.npz", lambda handle: np.savez(handle, **arrays))
    message = f"wrote {out}/{name}.npz ({args.n} samples"
    message += ")" if args.prior else f", acceptance rate {drawn.acceptance:.3f})"
    try:
        if figures.square_side(drawn.x):
            path = figures.image_grids({"Prior N(0, I)" if args.prior else f"HMC sampler ({args.target})": drawn.x},
                                       out / f"{name}_grid.png")
            message += f", {path}"
        if not args.prior and model.config.latent_dim == 2:
            message += f", {figures.sampler_trace(model, state, drawn, out / f'{name}_trace.png')}"
    except rhvae.RhvaeError as exc:
        message += f"; figure skipped: {exc}"
    print(message)
    return 0


def _sampler_report(drawn) -> str:
    """Step size, acceptance per chain and, with ArviZ, ESS and R-hat per latent coordinate."""
    acc = drawn.acceptance_per_chain
    lines = [f"step size {drawn.step_size:.4g}; acceptance {drawn.acceptance:.3f} (per chain: min {acc.min():.2f}, "
             f"median {np.median(acc):.2f}, max {acc.max():.2f})"]
    if drawn.diagnostics is None:
        lines.append("ESS and R-hat: pip install 'rhvae[diagnostics]' (ArviZ)")
    else:
        for key, label in (("ess_bulk", "ESS bulk"), ("ess_tail", "ESS tail"), ("r_hat", "R-hat")):
            values = np.asarray(drawn.diagnostics[key])
            lines.append(f"{label:8s} per coordinate: " + " ".join(f"{v:.3g}" for v in values[:16])
                         + (" ..." if values.size > 16 else ""))
    return "\n".join(lines)


def _free_name(folder: Path, stem: str) -> str:
    """``stem``, or ``stem-2``, ``stem-3``, ...: the first whose ``.npz`` is not in ``folder``."""
    name, number = stem, 1
    while (folder / f"{name}.npz").exists():
        number += 1
        name = f"{stem}-{number}"
    return name


def _bench(args: argparse.Namespace) -> int:
    """Median training-step time per backend on the reference workload (784 inputs, pythae's
    networks) with synthetic data; ``benchmarks/`` holds the full suite."""
    import time

    reg = get_registry()
    x = np.random.default_rng(0).uniform(size=(args.batch_size, 784)).astype(np.float32)
    rates = {}
    print(f"training step, latent {args.latent_dim}, batch {args.batch_size}, grad_h {args.grad_h}, "
          f"median of {args.steps} steps")
    for name in args.backends.split(","):
        model = rhvae.RHVAE(name, input_dim=784, latent_dim=args.latent_dim, grad_h=args.grad_h,
                            encoder=reg.create("encoder", "mlp", hidden=(512,)),
                            decoder=reg.create("decoder", "bernoulli_mlp", hidden=(512,)),
                            metric=reg.create("metric", "mlp", hidden=(400,)))
        state = model.init(seed=0)
        start = time.perf_counter()
        model.step(state, x)
        compile_s = time.perf_counter() - start
        times = []
        for _ in range(args.steps):
            start = time.perf_counter()
            model.step(state, x)
            times.append(time.perf_counter() - start)
        median = float(np.median(times))
        rates[name] = args.batch_size / median
        print(f"  {name:6s} {1e3 * median:8.1f} ms/step  {rates[name]:8.0f} samples/s  (first call {compile_s:.1f} s)")
    if {"torch", "jax"} <= rates.keys():
        print(f"  torch/jax throughput ratio {rates['torch'] / rates['jax']:.2f}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    """Parse ``argv``; with ``train --config FILE``, the file's values become the defaults first."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "config", None) is not None:
        train = parser.train_parser
        train.set_defaults(**_read_config(args.config, train))
        args = parser.parse_args(argv)
    if getattr(args, "run", None) is _train and not getattr(args, "resume", None):
        _check_arch_flags(args, build_parser().train_parser)  # a fresh parser: defaults before any --config
    return args


_ARCH_FLAGS = {"mlp": ("--channels",), "conv": ("--hidden", "--metric-hidden", "--init")}
"""The width flags each ``--arch`` has no use for."""


def _check_arch_flags(args: argparse.Namespace, train: _Parser) -> None:
    """A width flag set away from its default that ``--arch`` would ignore is an error."""
    defaults = vars(train.parse_args([]))
    dest = {a.option_strings[0]: a.dest for a in train.options if a.option_strings}
    unused = [flag for flag in _ARCH_FLAGS[args.arch] if getattr(args, dest[flag]) != defaults[dest[flag]]]
    if unused:
        other = "--channels" if args.arch == "conv" else "--arch conv"
        raise RhvaeError(f"{', '.join(unused)} has no effect with --arch {args.arch} (the {args.arch} networks have "
                         f"no such layers); use {other}")


def _read_config(path: str, parser: argparse.ArgumentParser) -> dict:
    """Option values from a JSON or TOML file, keyed by option name (``latent_dim`` or ``latent-dim``)."""
    file = Path(path)
    if not file.is_file():
        raise RhvaeError(f"--config {path}: no such file")
    try:
        if file.suffix == ".toml":
            import tomllib

            values = tomllib.loads(file.read_text())
        else:
            values = json.loads(file.read_text())
    except ImportError:
        raise RhvaeError(f"--config {path}: TOML needs Python 3.11+; use a .json file") from None
    except ValueError as exc:
        raise RhvaeError(f"--config {path}: not valid {file.suffix.lstrip('.') or 'JSON'}: {exc}") from None
    if not isinstance(values, dict):
        raise RhvaeError(f"--config {path}: expected a table of option names and values")
    known = {a.dest for a in parser.options} - {"help", "config", "run"}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    aliases = {"temperature": "T", "lr": "learning_rate"}
    values = {aliases.get(k, k): v for k, v in values.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RhvaeError(f"--config {path}: unknown option(s) {unknown}; known: {sorted(known)}")
    for action in parser.options:
        if action.choices is not None and action.dest in values and values[action.dest] not in action.choices:
            raise RhvaeError(f"--config {path}: {action.dest} must be one of {sorted(action.choices)}; "
                             f"got {values[action.dest]!r}")
    if "M_max" in values and values["M_max"] is None:  # JSON null: no bound, as --M-max none
        values["M_max"] = "none"
    return values


def main(argv: list[str] | None = None) -> int:
    """Run the ``rhvae`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    try:
        args = _parse(argv)
        return args.run(args)
    except (_UsageError, RhvaeError) as exc:  # bad input: one line, no traceback
        print(f"rhvae: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the command was pointed at
        print(f"rhvae: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
