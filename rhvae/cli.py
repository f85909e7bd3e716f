"""The ``rhvae`` command: ``plugins``, ``info``, ``train``, ``evaluate``, ``sample``, ``bench``.

A subcommand is a ``run(args) -> int`` function plus one ``add_parser`` call in
:func:`build_parser` that sets ``run`` as its default. Bad arguments and :class:`RhvaeError`
print one line ``rhvae: error: ...`` to stderr and return 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from typing import NoReturn

import numpy as np

import rhvae
from rhvae.config import RHVAEConfig
from rhvae.errors import RhvaeError
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
_NET_DEFAULTS = {"encoder": (512,), "metric": (400,)}
"""Hidden widths of the built-in MLP encoder/decoder and metric network (their own defaults)."""
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


def _plugins(args: argparse.Namespace) -> int:
    """Each plugin with its distribution and version, then its components ``kind:name [backends]``."""
    for info in get_registry().plugins():
        print(f"{info.name} (from {info.distribution} {info.version}".rstrip() + ")")
        for spec in info.components:
            backends = ", ".join(spec.backends) if spec.backends else "all backends"
            line = f"  {spec.kind}:{spec.name} [{backends}]"
            print(f"{line}  {spec.doc}" if spec.doc else line)
        if not info.components:
            print("  (no components)")
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
    train.add_argument("--epochs", type=int, default=5, help="passes over the training rows")
    train.add_argument("--batch-size", type=int, default=100, help="rows per Adam step")
    train.add_argument("--hidden", type=int, nargs="+", default=list(_NET_DEFAULTS["encoder"]),
                       help="hidden widths of the encoder and the decoder")
    train.add_argument("--metric-hidden", type=int, nargs="+", default=list(_NET_DEFAULTS["metric"]),
                       help="hidden widths of the metric network")
    train.add_argument("--init", choices=("fan_in", "glorot"), default="fan_in",
                       help="initialisation of the networks (glorot: rhvae 0.1's)")
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
    train.add_argument("--out", default="runs/latest", help="output folder")
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
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the ELBO's noise")
    evaluate.add_argument("--nll-samples", type=int, default=100,
                          help="importance samples per row for -log p(x) (default 100; 0 skips it)")
    evaluate.set_defaults(run=_evaluate)
    sample = commands.add_parser("sample", help="generate with the Riemannian sampler (or the prior)")
    sample.add_argument("--run", dest="run_dir", default="runs/latest", help="the folder 'rhvae train' wrote")
    sample.add_argument("--n", type=int, default=64, help="number of samples (one HMC chain each)")
    sample.add_argument("--transitions", type=int, default=100)
    sample.add_argument("--eps", type=float, default=0.05, help="HMC leapfrog step size")
    sample.add_argument("--n-lf", type=int, default=10, help="leapfrog steps per HMC transition")
    sample.add_argument("--beta0", type=float, default=1.0,
                        help="temper each trajectory to this inverse temperature at its middle (default 1: none)")
    sample.add_argument("--prior", action="store_true", help="decode N(0, I) draws instead")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--out", default=None, help="output folder (default: the run folder)")
    sample.set_defaults(run=_sample)
    bench = commands.add_parser("bench", help="a short cross-backend training-step benchmark")
    bench.add_argument("--backends", default="torch,jax", help="comma-separated backends (default torch,jax)")
    bench.add_argument("--latent-dim", type=int, default=16)
    bench.add_argument("--batch-size", type=int, default=100)
    bench.add_argument("--grad-h", default="analytic")
    bench.add_argument("--steps", type=int, default=10, help="timed steps after the warm-up call")
    bench.set_defaults(run=_bench)
    return parser


def _build_model(args: argparse.Namespace, input_dim: int, config: dict | None = None) -> rhvae.RHVAE:
    """The model ``rhvae train`` builds from its arguments. ``config``: a checkpoint's saved
    configuration, which then gives every hyper-parameter (a run reloads as it trained)."""
    reg = get_registry()
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
    hidden = _widths(getattr(args, "hidden", None))
    metric_hidden = _widths(getattr(args, "metric_hidden", None), hidden if isinstance(args.hidden, int) else None)
    init = getattr(args, "init", "fan_in")
    device = getattr(args, "device", "cpu")
    if getattr(args, "distributed", False) and args.backend == "torch" and device in ("cuda", "gpu"):
        import os

        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return rhvae.RHVAE(
        args.backend, input_dim=input_dim, latent_dim=args.latent_dim, grad_h=grad_h, device=device,
        compile=True if getattr(args, "compile", False) else None, **hyper,
        encoder=reg.create("encoder", "mlp", hidden=hidden or _NET_DEFAULTS["encoder"], init=init),
        decoder=reg.create("decoder", args.decoder, hidden=hidden or _NET_DEFAULTS["encoder"], init=init),
        metric=reg.create("metric", "mlp", hidden=metric_hidden or _NET_DEFAULTS["metric"], init=init),
        position_prior=args.prior, tempering=args.tempering,
    )


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
        if figures.image_side(x_test.shape[1]):
            riemannian = model.sample(state, n_samples, seed=seed)
            prior = model.sample_prior(state, n_samples, seed=seed)
            written.append(figures.image_grids(
                {f"Riemannian sampler (acceptance {riemannian.acceptance:.2f})": riemannian.x,
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


def _train(args: argparse.Namespace) -> int:
    from rhvae import datasets

    _join_processes(args)
    x_train, _, x_test, y_test = datasets.load(args.data, args.n_test, args.seed)
    model = _build_model(args, x_train.shape[1])
    parallel = model.data_parallel() if args.distributed else None
    main = parallel is None or parallel.is_main
    if main:
        print(f"training on {args.data}: {len(x_train)} train / {len(x_test)} test rows, {model!r}")
    centroids = args.centroids if args.centroids == "batch" else int(args.centroids)
    state = model.init(seed=args.seed, centroids=centroids, data=x_train)
    state, history = model.fit(state, x_train, epochs=args.epochs, batch_size=args.batch_size,
                               validation_data=x_test, distributed=args.distributed)
    if main:  # every process holds the same state; one writes it
        _write_run(args, model, state, history, x_test, y_test)
    if parallel is not None:
        parallel.barrier()  # a process that exits while another still works can abort the run
        if hasattr(parallel, "exit"):  # torch: skip a gloo teardown that can abort after success
            parallel.exit(0)
    return 0


def _join_processes(args: argparse.Namespace) -> None:
    """``--coordinator``: join a multi-process JAX run before the first array is made."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if all(v is None for v in given):
        return
    if None in given or not args.distributed or args.backend != "jax":
        raise RhvaeError("--coordinator, --num-processes and --process-id go together, with --backend jax "
                         "--distributed (torch takes its processes from torchrun)")
    from rhvae_jax.parallel import initialize

    initialize(args.coordinator, args.num_processes, args.process_id)


def _write_run(args: argparse.Namespace, model, state, history, x_test, y_test) -> None:
    import json
    from pathlib import Path

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(history, indent=1))
    run_args = {k: v for k, v in vars(args).items() if k != "run"}
    model.save(state, out / "checkpoint", metadata={"command": "train", "args": run_args})
    written = _figures(model, state, history, x_test, y_test, out, 64, args.seed)
    print(f"held-out ELBO {history['val_elbo'][-1]:.2f} after {args.epochs} epochs")
    print(f"wrote {out}/metrics.json, {out}/checkpoint.npz|json" + "".join(f", {p}" for p in written))


def _load_run(run: str):
    """``(model, state, args, (x_train, x_test, y_test))`` of the run folder ``rhvae train`` wrote."""
    from pathlib import Path

    from rhvae import checkpoint, datasets

    meta = checkpoint.read_metadata(Path(run) / "checkpoint")
    if meta.get("metadata", {}).get("command") != "train":
        raise checkpoint.CheckpointError(f"{run}/checkpoint.json was not written by 'rhvae train'")
    args = argparse.Namespace(**meta["metadata"]["args"])
    x_train, _, x_test, y_test = datasets.load(args.data, args.n_test, args.seed)
    model = _build_model(args, x_train.shape[1], config=checkpoint.saved_config(meta))
    # the model is rebuilt from the checkpoint's own configuration, so another version's run loads
    return model, model.load(Path(run) / "checkpoint", check_version=False), args, (x_train, x_test, y_test)


def _evaluate(args: argparse.Namespace) -> int:
    model, state, run_args, (_, x_test, _) = _load_run(args.run_dir)
    elbo = model.elbo(state, x_test, seed=args.seed)
    recon = model.reconstruct(state, x_test)
    mse = float(np.mean((recon - x_test) ** 2))
    print(f"{run_args.data} held-out rows: {len(x_test)}")
    print(f"held-out ELBO {elbo:.3f} nats (negative ELBO {-elbo:.3f})")
    if args.nll_samples:
        nll = model.nll(state, x_test, n_samples=args.nll_samples, seed=args.seed)
        print(f"held-out NLL {float(np.mean(nll)):.3f} nats ({args.nll_samples} importance samples per row)")
    print(f"reconstruction mean squared error {mse:.5f}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rhvae import figures

    model, state, _, _ = _load_run(args.run_dir)
    drawn = model.sample(state, args.n, transitions=args.transitions, eps=args.eps, n_lf=args.n_lf,
                         beta0=args.beta0, seed=args.seed) if not args.prior else model.sample_prior(state, args.n, seed=args.seed)
    out = Path(args.out or args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    np.savez(out / "samples.npz", x=drawn.x, z=drawn.z)
    message = f"wrote {out}/samples.npz ({args.n} samples"
    message += ")" if args.prior else f", acceptance rate {drawn.acceptance:.3f})"
    if figures.image_side(drawn.x.shape[1]):
        try:
            path = figures.image_grids({"Prior N(0, I)" if args.prior else "Riemannian sampler": drawn.x},
                                       out / "samples_grid.png")
            message += f" and {path}"
        except rhvae.RhvaeError as exc:
            message += f"; figure skipped: {exc}"
    print(message)
    return 0


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
    if getattr(args, "config", None) is None:
        return args
    train = parser.train_parser
    train.set_defaults(**_read_config(args.config, train))
    return parser.parse_args(argv)


def _read_config(path: str, parser: argparse.ArgumentParser) -> dict:
    """Option values from a JSON or TOML file, keyed by option name (``latent_dim`` or ``latent-dim``)."""
    from pathlib import Path

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
    known = {a.dest for a in parser._actions} - {"help", "config", "run"}
    values = {k.replace("-", "_"): v for k, v in values.items()}
    aliases = {"temperature": "T", "lr": "learning_rate"}
    values = {aliases.get(k, k): v for k, v in values.items()}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RhvaeError(f"--config {path}: unknown option(s) {unknown}; known: {sorted(known)}")
    for action in parser._actions:
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
    except (_UsageError, RhvaeError, ValueError, TypeError) as exc:  # bad input: one line, no traceback
        print(f"rhvae: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
