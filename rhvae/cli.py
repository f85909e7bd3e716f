"""The ``rhvae`` command: ``rhvae plugins`` lists the plugins, ``rhvae info`` the environment.

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
    train.add_argument("--grad-h", default="analytic", help="registered ∇H method (default analytic)")
    train.add_argument("--decoder", default="bernoulli_mlp")
    train.add_argument("--prior", default="spherical")
    train.add_argument("--tempering", default="quadratic")
    train.add_argument("--centroids", default="256",
                       help="a count of training points used as fixed centroids (default 256), or 'batch'")
    train.add_argument("--n-test", type=int, default=1000)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", default="runs/latest", help="output folder")
    train.set_defaults(run=_train)
    return parser


def _train(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from rhvae import datasets
    from rhvae.tree import flatten

    x_train, _, x_test, _ = datasets.load(args.data, args.n_test, args.seed)
    reg = get_registry()
    width = (args.hidden,)
    model = rhvae.RHVAE(
        args.backend, input_dim=x_train.shape[1], latent_dim=args.latent_dim, grad_h=args.grad_h,
        encoder=reg.create("encoder", "mlp", hidden=width),
        decoder=reg.create("decoder", args.decoder, hidden=width),
        metric=reg.create("metric", "mlp", hidden=width),
        position_prior=args.prior, tempering=args.tempering,
    )
    print(f"training on {args.data}: {len(x_train)} train / {len(x_test)} test rows, {model!r}")
    centroids = args.centroids if args.centroids == "batch" else int(args.centroids)
    state = model.init(seed=args.seed, centroids=centroids, data=x_train)
    state, history = model.fit(state, x_train, epochs=args.epochs, batch_size=args.batch_size,
                               validation_data=x_test)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(history, indent=1))
    np.savez(out / "params.npz", **{k: model.backend.to_numpy(v) for k, v in flatten(state.params)})
    print(f"held-out ELBO {history['val_elbo'][-1]:.2f} after {args.epochs} epochs; wrote {out}/metrics.json, "
          f"{out}/params.npz")
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
