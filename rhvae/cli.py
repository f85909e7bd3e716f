"""The ``rhvae`` command: ``plugins``, ``info``, ``train``, ``evaluate``, ``sample``, ``bench``.

A subcommand is a ``run(args) -> int`` function plus one ``add_parser`` call in
:func:`build_parser` that sets ``run`` as its default. Bad arguments and :class:`RhvaeError`
print one line ``rhvae: error: ...`` to stderr and return 2.
"""

from __future__ import annotations

import argparse
import platform
import sys
from typing import NoReturn

import numpy as np

import rhvae
from rhvae.errors import RhvaeError
from rhvae.presets import PRESETS
from rhvae.registry import get_registry


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
    train = commands.add_parser("train", help="train an RHVAE on an embedded data set or a .npy/.npz file")
    train.add_argument("--data", default="mnist", help="mnist (default), digits, or a .npy/.npz path")
    train.add_argument("--backend", default="torch", help="torch (default) or jax")
    train.add_argument("--latent-dim", type=int, default=2)
    train.add_argument("--epochs", type=int, default=5)
    train.add_argument("--batch-size", type=int, default=100)
    train.add_argument("--hidden", type=int, default=256, help="width of each network's hidden layer")
    train.add_argument("--temperature", type=float, default=None,
                       help="metric temperature T (default 0.4, or the preset's: with 256 centroids at latent 2, "
                            "0.8 lets them all overlap early on and training diverges)")
    train.add_argument("--grad-h", default=None,
                       help="registered ∇H method (default analytic, or the preset's)")
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="aetk_compat: AutoEncoderToolkit.jl's integrator, step and defaults (docs/comparison.md)")
    train.add_argument("--decoder", default="bernoulli_mlp")
    train.add_argument("--prior", default="spherical")
    train.add_argument("--tempering", default="quadratic")
    train.add_argument("--centroids", default="256",
                       help="a count of training points used as fixed centroids (default 256), or 'batch'")
    train.add_argument("--n-test", type=int, default=1000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/latest", help="output folder")
    train.add_argument("--device", default="cpu",
                       help="cpu (default), cuda or gpu; with --distributed on torch each process takes cuda:LOCAL_RANK")
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


def _build_model(args: argparse.Namespace, input_dim: int) -> rhvae.RHVAE:
    """The model ``rhvae train`` builds from its arguments (also used to reload its checkpoint)."""
    reg = get_registry()
    width = (args.hidden,)
    preset = getattr(args, "preset", None)  # runs saved before --preset existed have none
    hyper = PRESETS[preset]() if preset else {}
    if not hasattr(args, "temperature"):  # a run saved before --temperature existed trained with 0.8
        hyper["T"] = 0.8
    elif args.temperature is not None:
        hyper["T"] = args.temperature
    else:
        hyper.setdefault("T", 0.4)
    grad_h = args.grad_h or hyper.pop("grad_h", "analytic")
    hyper.pop("grad_h", None)
    device = getattr(args, "device", "cpu")
    if getattr(args, "distributed", False) and args.backend == "torch" and device in ("cuda", "gpu"):
        import os

        device = f"cuda:{os.environ.get('LOCAL_RANK', 0)}"
    return rhvae.RHVAE(
        args.backend, input_dim=input_dim, latent_dim=args.latent_dim, grad_h=grad_h, device=device,
        compile=True if getattr(args, "compile", False) else None, **hyper,
        encoder=reg.create("encoder", "mlp", hidden=width),
        decoder=reg.create("decoder", args.decoder, hidden=width),
        metric=reg.create("metric", "mlp", hidden=width),
        position_prior=args.prior, tempering=args.tempering,
    )


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
    model = _build_model(args, x_train.shape[1])
    return model, model.load(Path(run) / "checkpoint"), args, (x_train, x_test, y_test)


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


def main(argv: list[str] | None = None) -> int:
    """Run the ``rhvae`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except (_UsageError, RhvaeError, ValueError, TypeError) as exc:  # bad input: one line, no traceback
        print(f"rhvae: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else 0
