"""Components checked where they enter: one tiny probe batch through every component when a model
is built, so a wrong shape, dtype or a non-finite value is named at once (with the plugin that
registered the component) instead of surfacing deep inside torch or jax, or never: a prior
returning ``(B, d)`` where ``(B,)`` is due would otherwise broadcast into a ``(B, B)`` loss.

The probe batch has ``n`` rows with ``n`` unlike every other dimension of the model, so a
confusion of axes cannot pass by coincidence. On JAX the probe runs as one compiled function
(op-by-op execution would compile every operation for the new shapes: 1 to 3 s); with
``probe="shapes"`` a backend with an ``eval_shape(f, *args)`` method checks shapes and dtypes
by tracing alone, and finiteness is left to the first training step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from rhvae.errors import ComponentError
from rhvae.math.hamiltonian import Hamiltonian, shaped
from rhvae.math.metric import lower_triangular, metric_state
from rhvae.registry import Registry, recipe

if TYPE_CHECKING:
    from rhvae.model import RHVAE


class _Expected(NamedTuple):
    kind: str
    what: str


def _label(kind: str, obj: Any, registry: Registry) -> str:
    made = recipe(obj)
    if made is None:
        return f"{kind} {type(obj).__name__} (an object passed to RHVAE)"
    try:
        spec = registry.get(kind, made["name"])
    except Exception:  # the recipe names a component of another registry: the name is still useful
        return f"{kind} {made['name']!r}"
    return f"{kind} {made['name']!r} (plugin {spec.plugin!r} from {spec.source})"


def probe_rows(config) -> int:
    """The probe batch size: the smallest ``n >= 3`` equal to no dimension of the model."""
    d = config.latent_dim
    taken = {*config.input_shape, *config.output_shape, d, d * (d - 1) // 2, d * (d + 1) // 2}
    return next(n for n in range(3, 3 + len(taken) + 1) if n not in taken)


PROBES = ("full", "shapes", "off")


def probe(model: RHVAE, registry: Registry, mode: str = "full") -> None:
    """Run every component of ``model`` once on a probe batch; raise :class:`ComponentError` naming
    the component, its plugin, the output and what was expected. ``mode``: ``"full"`` computes
    the outputs (on JAX under one ``jit``: about a second of compilation for pythae's MNIST
    networks), ``"shapes"`` only traces shapes and dtypes where the backend can
    (``eval_shape``: JAX), ``"off"`` skips the probe."""
    if mode == "off":
        return
    B, c, parts = model.backend, model.config, model.components
    n, d = probe_rows(c), c.latent_dim
    label = {kind: _label(kind, getattr(parts, kind), registry) for kind in parts._fields}
    rng = np.random.default_rng(0)
    params = {}
    for kind, p in model.init_params(np.random.default_rng(0)).items():
        if not isinstance(p, dict) or not all(isinstance(v, np.ndarray) for v in p.values()):
            raise ComponentError(f"{label[kind]}: init returned {type(p).__name__}; expected a dict of numpy arrays")
        bad = sorted(k for k, v in p.items() if not np.isfinite(v).all())
        if bad:
            raise ComponentError(f"{label[kind]}: init drew non-finite parameters {bad}")
        params[kind] = {k: model.to_backend(v) for k, v in p.items()}
    arrays = [model.to_backend(a) for a in (rng.uniform(0.05, 0.95, size=(n, *c.input_shape)),
                                        rng.uniform(0.05, 0.95, size=(n, *c.output_shape)),
                                        rng.uniform(-1.0, 1.0, size=(n, d)), rng.standard_normal((n, d)))]
    expected: dict[str, _Expected] = {}
    stage = ["encoder"]  # the component running now, for an exception's message

    def pair(kind: str, out: Any, names: tuple[str, str]) -> tuple:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ComponentError(f"{label[kind]} returned {type(out).__name__}; expected a pair ({', '.join(names)})")
        return tuple(out)

    def run(params, x, x_out, z, rho) -> dict[str, Any]:
        out: dict[str, Any] = {}

        def put(kind: str, what: str, value: Any, shape: tuple[int, ...]) -> Any:
            if not hasattr(value, "shape") or not hasattr(value, "dtype"):
                raise ComponentError(f"{label[kind]} returned {what} of type {type(value).__name__}; expected a "
                                     f"{B.name} array of shape {shape}")
            if tuple(value.shape) != shape:
                raise ComponentError(f"{label[kind]} returned {what} of shape {tuple(value.shape)}; expected {shape} "
                                     f"(a probe batch of {n} rows; latent_dim {d}, input_dim {c.input_dim}, "
                                     f"output_dim {c.output_dim})")
            key = f"{kind}:{what}"
            expected[key], out[key] = _Expected(kind, what), value
            return value

        stage[0] = "encoder"
        mu, log_sigma = pair("encoder", parts.encoder(B, params["encoder"], x), ("mu", "log_sigma"))
        put("encoder", "mu", mu, (n, d))
        put("encoder", "log_sigma", log_sigma, (n, d))
        stage[0] = "metric"
        diag, lower = pair("metric", parts.metric(B, params["metric"], x), ("diag", "lower"))
        put("metric", "diag", diag, (n, d))
        put("metric", "lower", lower, (n, d * (d - 1) // 2))
        stage[0] = "decoder"
        outputs = parts.decoder(B, params["decoder"], z)
        likelihood = parts.decoder.likelihood
        if not isinstance(outputs, (tuple, list)) or len(outputs) != likelihood.n_outputs:
            raise ComponentError(f"{label['decoder']} returned {type(outputs).__name__}; expected a tuple of "
                                 f"{likelihood.n_outputs} array(s) for its likelihood {likelihood!r}")
        flat = (n, c.output_size)  # a decoder may return flat outputs: the core reshapes them
        for i, value in enumerate(outputs):
            accepted = flat if hasattr(value, "shape") and tuple(value.shape) == flat else (n, *c.output_shape)
            put("decoder", f"output {i}", value, accepted)
        outputs = shaped(tuple(outputs), c.output_shape)
        put("decoder", f"the log_prob of its likelihood {likelihood!r}", likelihood.log_prob(B, x_out, tuple(outputs)),
            (n,))
        stage[0] = "prior"
        put("prior", "log_prob", parts.prior.log_prob(B, z), (n,))
        if hasattr(parts.prior, "grad_log_prob"):
            put("prior", "grad_log_prob", parts.prior.grad_log_prob(B, z), (n, d))
        stage[0] = "decoder"  # building H runs the decoder's precompute
        H = Hamiltonian(B, x_out, parts.decoder, params["decoder"], parts.prior,
                        metric_state(B, mu, lower_triangular(B, diag, lower)), model.metric_spec)
        stage[0] = "grad_h"
        put("grad_h", "grad_z", parts.grad_h.grad_z(B, H, z, rho), (n, d))
        put("grad_h", "grad_rho", parts.grad_h.grad_rho(B, H, z, rho), (n, d))
        at = parts.grad_h.prepare(B, H, z)
        put("grad_h", "grad_z_at (prepared)", parts.grad_h.grad_z_at(B, H, at, rho), (n, d))
        put("grad_h", "grad_rho_at (prepared)", parts.grad_h.grad_rho_at(B, H, at, rho), (n, d))
        return out

    abstract = B.eval_shape if mode == "shapes" else None
    compute = B.jit(run) if B.eval_shape is not None else run  # a tracing backend: one compile, not op by op
    try:
        results = abstract(run, params, *arrays) if abstract is not None else compute(params, *arrays)
    except ComponentError:
        raise
    except Exception as exc:  # a component that fails on the probe: name it, keep its own trace as the cause
        raise ComponentError(f"{label[stage[0]]} raised {type(exc).__name__} on a probe batch of {n} rows: "
                             f"{exc}") from exc
    for key in expected:  # in the order the components ran (a jitted dict comes back sorted)
        value = results[key]
        kind, what = expected[key]
        dtype = str(value.dtype).removeprefix("torch.")
        if dtype != c.dtype:
            raise ComponentError(f"{label[kind]} returned {what} of dtype {dtype}; the model computes in {c.dtype}")
        if abstract is None and not np.isfinite(B.to_numpy(value)).all():
            raise ComponentError(f"{label[kind]} returned non-finite values in {what} on a probe batch "
                                 f"(inputs in [0.05, 0.95], latent points in [-1, 1], fresh parameters)")
