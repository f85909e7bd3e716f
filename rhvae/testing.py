"""Test helpers for component authors (tox's ``tox.pytest`` idea): the host's own checks, public.

A plugin's test suite calls :func:`check_component` once per component::

    from rhvae.testing import check_component

    def test_student_t():
        check_component("prior", StudentT(df=4.0))

It runs the object on every available backend with tiny inputs drawn in numpy from a fixed
seed, and checks the output shapes, dtypes and finiteness, that ``B.jit`` changes nothing, the
analytic gradients against the backend's autodiff, and torch↔jax parity. A failed check raises
``AssertionError`` naming the component, the backend and the check.

This module imports neither torch nor jax; backends are created through the registry.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rhvae.errors import PluginLoadError, ProtocolError, UnknownComponentError
from rhvae.interfaces import XP_NAMES, Array, Backend, Likelihood
from rhvae.math.hamiltonian import shaped
from rhvae.registry import Registry, get_registry
from rhvae.tree import flatten

__all__ = ["CHECKED_KINDS", "GRAD_RTOL", "PARITY_RTOL", "assert_close_normwise", "check_component", "normwise_error"]

PARITY_RTOL: dict[str, float] = {"float32": 1e-5, "float64": 1e-10}
"""Normwise bound on backend↔backend and jit↔eager differences of forward values (DESIGN §5)."""

GRAD_RTOL: dict[str, float] = {"float32": 1e-4, "float64": 1e-10}
"""Normwise bound on gradients: an analytic one (``grad_log_prob``) against the backend's
autodiff, and the parity of gradients between backends and under jit."""

APPROX_GRAD_RTOL: dict[str, float] = {"float32": 1e-2, "float64": 1e-6}
"""Normwise bound on a ∇H method against autodiff, and on its parity: a method may approximate
(finite differences amplify round-off by ``|H| / step``)."""

BATCH, INPUT_DIM, LATENT_DIM, N_CENTROIDS = 5, 6, 3, 4
"""The sizes of the inputs drawn for a check: ``x (5, 6)``, ``z (5, 3)``, 4 metric centroids."""

K_VALUES, BETA0 = (1, 4), 0.3
"""Tempering schedules are checked for these ``K`` at this ``β0``."""


def normwise_error(a: Any, b: Any) -> float:
    """``max|a - b| / max|b|`` (``max|a - b|`` where ``b`` is all zero), in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    return diff / scale if scale > 0 else diff


def assert_close_normwise(a: Any, b: Any, rtol: float, name: str = "") -> None:
    """Assert that ``a`` and ``b`` have one shape and ``normwise_error(a, b) <= rtol``."""
    a, b = np.asarray(a), np.asarray(b)
    label = f"{name}: " if name else ""
    if a.shape != b.shape:
        raise AssertionError(f"{label}shape {a.shape} differs from {b.shape}")
    if np.any(np.isnan(a) != np.isnan(b)):
        raise AssertionError(f"{label}NaN in different places")
    err = normwise_error(np.nan_to_num(a), np.nan_to_num(b))
    if not err <= rtol:
        raise AssertionError(f"{label}normwise error {err:.3g} > rtol {rtol:.3g}")


class _Mismatch(Exception):
    """A component returned something of the wrong structure (reported as an AssertionError)."""


def _tuple_of(value: Any, n: int, what: str) -> tuple:
    if not isinstance(value, (tuple, list)):
        raise _Mismatch(f"{what} returned a {type(value).__name__}; expected a tuple of {n} arrays")
    if len(value) != n:
        raise _Mismatch(f"{what} returned {len(value)} arrays; expected {n}")
    return tuple(value)


def _params(value: Any, what: str) -> dict[str, np.ndarray]:
    if not isinstance(value, Mapping) or not all(isinstance(v, np.ndarray) for v in value.values()):
        raise _Mismatch(f"{what} returned {type(value).__name__}; expected a dict of numpy arrays")
    return dict(value)


@dataclass(frozen=True)
class _Case:
    """How to check one kind: numpy inputs, the run on a backend, expected shapes, gradient pairs.

    ``inputs(obj, rng, example)`` draws them for examples of shape ``example``;
    ``run(B, obj, inputs)`` returns named backend arrays; ``shapes(obj, example)`` gives their shapes; ``references`` pairs an output with the
    reference output it must match (autodiff, or the decoder's outputs without ``precompute``) and
    the tolerance table to use; ``tolerances`` overrides
    :data:`PARITY_RTOL` for the jit and backend parity of some outputs (gradients, approximations).
    """

    inputs: Callable[[Any, np.random.Generator, tuple[int, ...]], dict[str, Any]]
    run: Callable[[Backend, Any, dict[str, Any]], dict[str, Array]]
    shapes: Callable[[Any, tuple[int, ...]], dict[str, tuple[int, ...]]]
    references: tuple[tuple[str, str, dict[str, float]], ...] = ()
    tolerances: Mapping[str, dict[str, float]] = field(default_factory=dict)

    def parity_rtol(self, name: str, dtype: str) -> float:
        return self.tolerances.get(name, PARITY_RTOL)[dtype]


def _latent(rng: np.random.Generator) -> np.ndarray:
    return 1.5 * rng.standard_normal((BATCH, LATENT_DIM))


def _data(rng: np.random.Generator, example: tuple[int, ...] = (INPUT_DIM,)) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=(BATCH, *example))


def _dim(example: tuple[int, ...]) -> int | tuple[int, ...]:
    """The ``input_dim`` a network's ``init`` takes for examples of shape ``example``."""
    return example[0] if len(example) == 1 else example


def _prior_run(B: Backend, obj: Any, a: dict[str, Any]) -> dict[str, Array]:
    out = {"log_prob": obj.log_prob(B, a["z"])}
    if hasattr(obj, "grad_log_prob"):
        out["grad_log_prob"] = obj.grad_log_prob(B, a["z"])
        out["autodiff_grad"] = B.grad(lambda z: B.xp.sum(obj.log_prob(B, z)))(a["z"])
    return out


def _prior_shapes(obj: Any, example: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    shapes = {"log_prob": (BATCH,)}
    if hasattr(obj, "grad_log_prob"):
        shapes |= {"grad_log_prob": (BATCH, LATENT_DIM), "autodiff_grad": (BATCH, LATENT_DIM)}
    return shapes


def _encoder_run(B: Backend, obj: Any, a: dict[str, Any]) -> dict[str, Array]:
    mu, log_sigma = _tuple_of(obj(B, a["params"], a["x"]), 2, "encoder(B, params, x)")
    return {"mu": mu, "log_sigma": log_sigma}


def _decoder_run(B: Backend, obj: Any, a: dict[str, Any]) -> dict[str, Array]:
    lik = obj.likelihood
    outputs = shaped(_tuple_of(obj(B, a["params"], a["z"]), lik.n_outputs, "decoder(B, params, z)"), a["example"])
    out = {
        **{f"outputs[{i}]": o for i, o in enumerate(outputs)},
        "likelihood.log_prob": lik.log_prob(B, a["x"], outputs),
        "likelihood.mean": lik.mean(B, outputs),
    }
    if hasattr(obj, "precompute"):  # its outputs must not change, for a whole batch or one row
        params = obj.precompute(B, a["params"])
        call = "decoder(B, decoder.precompute(B, params), z)"
        out["outputs, flat"] = _flat(B, outputs)
        out["precomputed outputs, flat"] = _flat(B, _tuple_of(obj(B, params, a["z"]), lik.n_outputs, call))
        out["precomputed outputs, flat, first row"] = _flat(B, _tuple_of(obj(B, params, a["z"][:1]), lik.n_outputs,
                                                                          call))
        out["outputs, flat, first row"] = out["outputs, flat"][:1]
    return out


def _flat(B: Backend, outputs: tuple[Array, ...]) -> Array:
    """A decoder's outputs, each flattened per row, side by side: ``(rows, n_outputs · D)``."""
    return B.xp.concatenate([o.reshape(o.shape[0], -1) for o in outputs], axis=1)


def _precomputed_shapes(obj: Any, example: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    width = obj.likelihood.n_outputs * int(np.prod(example))
    return {"outputs, flat": (BATCH, width), "precomputed outputs, flat": (BATCH, width),
            "precomputed outputs, flat, first row": (1, width), "outputs, flat, first row": (1, width)}


def _decoder_inputs(obj: Any, rng: np.random.Generator, example: tuple[int, ...]) -> dict[str, Any]:
    if not isinstance(obj.likelihood, Likelihood):
        raise ProtocolError(f"decoder {_label(obj)}: .likelihood {obj.likelihood!r} does not satisfy the "
                            "Likelihood protocol (n_outputs, log_prob, mean)")
    params = _params(obj.init(rng, LATENT_DIM, _dim(example)), "decoder.init(rng, latent_dim, output_dim)")
    return {"params": params, "z": _latent(rng), "x": _data(rng, example), "example": example}


def _metric_run(B: Backend, obj: Any, a: dict[str, Any]) -> dict[str, Array]:
    diag, lower = _tuple_of(obj(B, a["params"], a["x"]), 2, "metric(B, params, x)")
    return {"diag": diag, "lower": lower}


def _grad_h_inputs(obj: Any, rng: np.random.Generator, example: tuple[int, ...]) -> dict[str, Any]:
    decoder = get_registry().create("decoder", "bernoulli_mlp", hidden=(4,), activation="tanh")
    L = np.tril(0.5 * rng.standard_normal((N_CENTROIDS, LATENT_DIM, LATENT_DIM)), -1)
    L += np.eye(LATENT_DIM) * rng.uniform(0.5, 1.5, size=(N_CENTROIDS, 1, LATENT_DIM))
    return {
        "decoder": decoder,
        "params": decoder.init(rng, LATENT_DIM, INPUT_DIM),
        "x": _data(rng),
        "centroids": rng.standard_normal((N_CENTROIDS, LATENT_DIM)),
        "M": L @ np.swapaxes(L, -1, -2),
        "z": rng.standard_normal((BATCH, LATENT_DIM)),
        "rho": rng.standard_normal((BATCH, LATENT_DIM)),
    }


def _grad_h_run(B: Backend, obj: Any, a: dict[str, Any]) -> dict[str, Array]:
    from rhvae.math.hamiltonian import Hamiltonian
    from rhvae.math.metric import MetricSpec, MetricState

    prior = get_registry().create("prior", "spherical")
    H = Hamiltonian(B, a["x"], a["decoder"], a["params"], prior, MetricState(a["centroids"], a["M"]),
                    MetricSpec(T=0.8, lam=0.1))
    z, rho, xp = a["z"], a["rho"], B.xp
    at = obj.prepare(B, H, z)
    return {
        "grad_z": obj.grad_z(B, H, z, rho),
        "grad_rho": obj.grad_rho(B, H, z, rho),
        "grad_z_at": obj.grad_z_at(B, H, at, rho),
        "grad_rho_at": obj.grad_rho_at(B, H, at, rho),
        "autodiff_grad_z": B.grad(lambda zz: xp.sum(H(zz, rho)))(z),
        "autodiff_grad_rho": B.grad(lambda rr: xp.sum(H(z, rr)))(rho),
    }


_LATENT_PAIR = (BATCH, LATENT_DIM)
_CASES: dict[str, _Case] = {
    "prior": _Case(lambda obj, rng, example: {"z": _latent(rng)}, _prior_run, _prior_shapes,
                   (("grad_log_prob", "autodiff_grad", GRAD_RTOL),),
                   dict.fromkeys(("grad_log_prob", "autodiff_grad"), GRAD_RTOL)),
    "encoder": _Case(
        lambda obj, rng, example: {"params": _params(obj.init(rng, _dim(example), LATENT_DIM),
                                                     "encoder.init(rng, input_dim, latent_dim)"),
                                   "x": _data(rng, example)},
        _encoder_run, lambda obj, example: {"mu": _LATENT_PAIR, "log_sigma": _LATENT_PAIR}),
    "decoder": _Case(
        _decoder_inputs, _decoder_run,
        lambda obj, example: {**{f"outputs[{i}]": (BATCH, *example) for i in range(obj.likelihood.n_outputs)},
                              "likelihood.log_prob": (BATCH,), "likelihood.mean": (BATCH, *example),
                              **(_precomputed_shapes(obj, example) if hasattr(obj, "precompute") else {})},
        (("precomputed outputs, flat", "outputs, flat", PARITY_RTOL),
         ("precomputed outputs, flat, first row", "outputs, flat, first row", PARITY_RTOL))),
    "metric": _Case(
        lambda obj, rng, example: {"params": _params(obj.init(rng, _dim(example), LATENT_DIM),
                                                     "metric.init(rng, input_dim, latent_dim)"),
                                   "x": _data(rng, example)},
        _metric_run, lambda obj, example: {"diag": _LATENT_PAIR, "lower": (BATCH, LATENT_DIM * (LATENT_DIM - 1) // 2)}),
    "grad_h": _Case(
        _grad_h_inputs, _grad_h_run,
        lambda obj, example: dict.fromkeys(("grad_z", "grad_rho", "grad_z_at", "grad_rho_at", "autodiff_grad_z",
                                    "autodiff_grad_rho"), _LATENT_PAIR),
        (("grad_z", "autodiff_grad_z", APPROX_GRAD_RTOL), ("grad_rho", "autodiff_grad_rho", APPROX_GRAD_RTOL),
         ("grad_z_at", "grad_z", GRAD_RTOL), ("grad_rho_at", "grad_rho", GRAD_RTOL)),
        {**dict.fromkeys(("grad_z", "grad_rho", "grad_z_at", "grad_rho_at"), APPROX_GRAD_RTOL),
         **dict.fromkeys(("autodiff_grad_z", "autodiff_grad_rho"), GRAD_RTOL)}),
}

CHECKED_KINDS: tuple[str, ...] = (*_CASES, "tempering", "backend")
"""The kinds :func:`check_component` accepts."""


def _example_shape(input_shape: Any) -> tuple[int, ...]:
    shape = input_shape if isinstance(input_shape, (tuple, list)) else (input_shape,)
    if not shape or not all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n > 0 for n in shape):
        raise ValueError(f"input_shape must be a positive int or a tuple of them; got {input_shape!r}")
    return tuple(int(n) for n in shape)


def _label(obj: Any) -> str:
    text = repr(obj)
    return text if len(text) <= 80 and not text.startswith("<") else type(obj).__name__


def _to_backend(B: Backend, value: Any, dtype: str) -> Any:
    if isinstance(value, np.ndarray):
        return B.asarray(value, dtype)
    if isinstance(value, dict):
        return {k: _to_backend(B, v, dtype) for k, v in value.items()}
    return value


def _create_backends(backends: Sequence[str | Backend], dtype: str) -> list[Backend]:
    created = []
    for backend in backends:
        if not isinstance(backend, str):
            created.append(Registry().validate("backend", backend))
            continue
        try:
            created.append(get_registry().create("backend", backend))
        except (PluginLoadError, UnknownComponentError) as exc:
            warnings.warn(f"check_component skips backend {backend!r}: {exc}", RuntimeWarning, stacklevel=3)
    if not created:
        raise RuntimeError(f"check_component created none of the backends {tuple(backends)!r}; nothing was checked")
    for B in created:
        try:
            B.asarray(np.zeros(1), dtype)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"check_component(dtype={dtype!r}) cannot run on backend {B.name!r}: {exc}; "
                             "or pass dtype='float32'") from exc
    return created


def _check_tempering(obj: Any, where: str) -> dict[str, dict[str, np.ndarray]]:
    outputs = {}
    for K in K_VALUES:
        call = f"schedule(K={K}, beta0={BETA0})"
        try:
            betas = obj(K, BETA0)
        except Exception as exc:
            raise AssertionError(f"{where}: {call} raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(betas, np.ndarray):
            raise AssertionError(f"{where}: {call} returned a {type(betas).__name__}; expected a numpy array")
        if betas.shape != (K + 1,):
            raise AssertionError(f"{where}: {call} has shape {betas.shape}; expected ({K + 1},)")
        if not np.issubdtype(betas.dtype, np.floating):
            raise AssertionError(f"{where}: {call} has dtype {betas.dtype}; expected a floating dtype")
        if not (np.all(np.isfinite(betas)) and np.all(betas > 0)):
            raise AssertionError(f"{where}: {call} = {betas} is not finite and positive")
        if not np.isclose(betas[0], BETA0, rtol=1e-12, atol=0):
            raise AssertionError(f"{where}: {call}[0] = {betas[0]!r}; expected beta0 = {BETA0}")
        outputs[f"betas[K={K}]"] = betas
    return {"numpy": outputs}


def _run_checked(B: Backend, case: _Case, obj: Any, arrays: dict[str, Any], dtype: str, where: str,
                 jit: bool) -> dict[str, np.ndarray]:
    """Run ``case`` on ``B`` (under ``B.jit`` if ``jit``, non-array inputs closed over) and check every output."""
    if jit:
        where = f"{where} under B.jit"
    static = {k: v for k, v in arrays.items() if not isinstance(v, dict) and not hasattr(v, "shape")}
    dynamic = {k: v for k, v in arrays.items() if k not in static}
    try:
        run = (B.jit if jit else (lambda f: f))(lambda a: case.run(B, obj, {**a, **static}))
        raw = run(dynamic)
    except _Mismatch as exc:
        raise AssertionError(f"{where}: {exc}") from None
    except Exception as exc:
        raise AssertionError(f"{where}: the call raised {type(exc).__name__}: {exc}") from exc
    outputs = {}
    for name, expected in case.shapes(obj, arrays["example"]).items():
        value = B.to_numpy(raw[name])
        if value.shape != expected:
            raise AssertionError(f"{where}: {name} has shape {value.shape}; expected {expected}")
        if value.dtype != np.dtype(dtype):
            raise AssertionError(f"{where}: {name} has dtype {value.dtype}; expected {dtype}")
        if not np.all(np.isfinite(value)):
            raise AssertionError(f"{where}: {name} is not finite: {value}")
        outputs[name] = value
    return outputs


_DIFFERENTIATED = ("prior", "encoder", "decoder", "metric")
"""Kinds whose outputs must also have finite gradients with respect to every array input."""


def _check_gradients(B: Backend, case: _Case, obj: Any, arrays: dict[str, Any], where: str) -> None:
    """``∂ Σ output / ∂ input`` finite for every output and every array input (parameters included):
    a finite output with a non-finite gradient (``sqrt`` at 0, ``where`` of an overflow) would
    otherwise pass every value check and then skip or poison training steps."""
    static = {k: v for k, v in arrays.items() if not isinstance(v, dict) and not hasattr(v, "shape")}
    dynamic = {k: v for k, v in arrays.items() if k not in static}
    for name in case.shapes(obj, arrays["example"]):
        try:
            grads = B.grad(lambda a: B.xp.sum(case.run(B, obj, {**a, **static})[name]))(dynamic)
        except Exception as exc:
            raise AssertionError(f"{where}: differentiating Σ {name} raised {type(exc).__name__}: {exc}") from exc
        for path, leaf in flatten(grads):
            value = B.to_numpy(leaf)
            if not np.all(np.isfinite(value)):
                raise AssertionError(f"{where}: {name} is finite but its gradient with respect to {path} is not "
                                     f"({int(np.size(value) - np.isfinite(value).sum())} non-finite entries)")


# ------------------------------------------------------------------ backends


def numpy_conv2d(x: np.ndarray, w: np.ndarray, stride: int, padding: int) -> np.ndarray:
    """The reference of ``B.conv2d``: cross-correlation by explicit loops over output pixels."""
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    k = w.shape[-1]
    rows, cols = (x.shape[2] - k) // stride + 1, (x.shape[3] - k) // stride + 1
    out = np.empty((x.shape[0], w.shape[0], rows, cols))
    for i in range(rows):
        for j in range(cols):
            out[:, :, i, j] = np.einsum("bchw,ochw->bo", x[:, :, i * stride:i * stride + k, j * stride:j * stride + k], w)
    return out


def _backend_checks(B: Backend, dtype: str, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{check: (the backend's value, numpy's)}`` for every operation of the :class:`Backend`
    contract on small random inputs."""
    xp, t, n = B.xp, (lambda a: B.asarray(a, dtype)), B.to_numpy
    x, y = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {"asarray/to_numpy": (n(t(x)), x)}
    out["constant"] = (n(B.constant(x, t(x).dtype)), x)

    def f(a, b):
        return xp.sum(xp.tanh(a) * b)

    out["grad"] = (n(B.grad(f)(t(x), t(y))), (1 - np.tanh(x) ** 2) * y)
    out["grad argnums=1"] = (n(B.grad(f, argnums=1)(t(x), t(y))), np.tanh(x))
    value, g = B.value_and_grad(lambda a: (f(a, t(y)), xp.exp(a)), has_aux=True)(t(x))
    out["value_and_grad has_aux"] = (np.concatenate([[float(n(value[0]))], n(g).ravel(), n(value[1]).ravel()]),
                                     np.concatenate([[np.sum(np.tanh(x) * y)], ((1 - np.tanh(x) ** 2) * y).ravel(),
                                                     np.exp(x).ravel()]))
    primal, pullback = B.vjp(lambda a: a * a, t(x))
    out["vjp"] = (np.stack([n(primal), n(pullback(t(y))[0])]), np.stack([x * x, 2 * x * y]))
    out["fori_loop"] = (n(B.fori_loop(0, 4, lambda i, c: c * 2.0 + 1.0, t(x))), 16 * x + 15)
    out["fori_loop unroll"] = (n(B.fori_loop(0, 4, lambda i, c: c * 2.0 + 1.0, t(x), unroll=True)), 16 * x + 15)
    out["jit"] = (n(B.jit(lambda a, b: xp.exp(a) * b)(t(x), t(y))), np.exp(x) * y)
    pick = B.jit(lambda p, a: B.cond(p, lambda: a + 1.0, lambda: a - 1.0))
    out["cond"] = (np.stack([n(pick(t(np.array(1.0)) > 0, t(x))), n(pick(t(np.array(-1.0)) > 0, t(x)))]),
                   np.stack([x + 1, x - 1]))
    out["stop_gradient"] = (n(B.grad(lambda a: xp.sum(B.stop_gradient(a) * a))(t(x))), x)
    out["remat"] = (n(B.grad(B.remat(lambda a: xp.sum(xp.exp(a))))(t(x))), np.exp(x))
    L = np.tril(rng.standard_normal((2, 3, 3)), -1) + np.eye(3) * rng.uniform(0.5, 1.5, size=(2, 1, 3))
    spd = L @ np.swapaxes(L, -1, -2)
    out["inverse_cholesky"] = (n(B.inverse_cholesky(t(spd))), np.linalg.inv(np.linalg.cholesky(spd)))
    out["logsumexp"] = (n(B.logsumexp(t(x), axis=1)), np.log(np.sum(np.exp(x), axis=1)))
    out["softplus"] = (n(B.softplus(t(x))), np.logaddexp(0.0, x))
    for name, ref in (("relu", np.maximum(x, 0)), ("tanh", np.tanh(x)), ("sigmoid", 1 / (1 + np.exp(-x))),
                      ("identity", x)):
        out[f"activation {name}"] = (n(B.activation(name)(t(x))), ref)
    images, kernel = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3))
    conv = numpy_conv2d(images, kernel, 2, 1)
    out["conv2d"] = (n(B.conv2d(t(images), t(kernel), 2, 1)), conv)
    u = rng.standard_normal(conv.shape)
    back = n(B.conv_transpose2d(t(u), t(kernel), 2, 1, (0, 1)))
    out["conv_transpose2d (the adjoint of conv2d)"] = (np.array([np.vdot(images, back)]), np.array([np.vdot(conv, u)]))
    return out


def _check_backend(B: Any, dtype: str, seed: int) -> dict[str, dict[str, np.ndarray]]:
    label = f"backend {B.name!r}"
    missing = [name for name in XP_NAMES if not hasattr(B.xp, name)]
    if missing:
        raise AssertionError(f"{label}: its xp lacks {', '.join(missing)} (rhvae.interfaces.XP_NAMES)")
    try:
        checks = _backend_checks(B, dtype, np.random.default_rng(seed))
    except Exception as exc:
        raise AssertionError(f"{label}: an operation raised {type(exc).__name__}: {exc}") from exc
    bound = PARITY_RTOL[dtype] * 100
    for name, (value, reference) in checks.items():
        if np.shape(value) != np.shape(reference):
            raise AssertionError(f"{label}: {name} has shape {np.shape(value)}; numpy's is {np.shape(reference)}")
        assert_close_normwise(value, reference, bound, f"{label}: {name} against numpy")
    if B.eval_shape is not None:
        shape = B.eval_shape(lambda a: B.xp.sum(a, axis=0), B.asarray(np.zeros((4, 3)), dtype))
        if tuple(shape.shape) != (3,):
            raise AssertionError(f"{label}: eval_shape gave shape {tuple(shape.shape)}; expected (3,)")
    return {B.name: {name: value for name, (value, _) in checks.items()}}


def check_component(kind: str, obj: Any, *, backends: Sequence[str | Backend] = ("torch", "jax"),
                    dtype: str = "float64", seed: int = 0,
                    input_shape: int | tuple[int, ...] = INPUT_DIM) -> dict[str, dict[str, np.ndarray]]:
    """Check a component's behaviour on every backend; returns ``{backend: {output: numpy array}}``.

    The keys are the backend names (``"torch#1"`` for a repeated one; ``"numpy"`` for a schedule).

    ``kind``: one of :data:`CHECKED_KINDS` (``prior encoder decoder metric grad_h tempering backend``).
    ``obj`` must first satisfy the Protocol of ``kind`` (else :class:`rhvae.ProtocolError`).
    Inputs are drawn once in numpy from ``default_rng(seed)``: ``x (5, 6)`` in ``[0.05, 0.95]``,
    ``z (5, 3)``, parameters from ``obj.init``. ``input_shape``: the shape of one example for an
    encoder, decoder or metric network on shaped data, e.g. ``(1, 8, 8)`` for ``x (5, 1, 8, 8)``
    (``init`` then receives the tuple, as in a model with ``input_dim=(1, 8, 8)``; a decoder may
    return flat outputs, which are reshaped as the model does). On each backend (a name created through
    :func:`rhvae.get_registry`, or a ``Backend`` object, e.g. on a GPU) it checks

    - each output's shape, its ``dtype`` and that it is finite, and (networks and priors) that its
      gradient with respect to every array input, parameters included, is finite;
    - that ``B.jit`` of the same call agrees with the eager one (normwise, :data:`PARITY_RTOL`;
      :data:`GRAD_RTOL` for gradients, :data:`APPROX_GRAD_RTOL` for a ∇H method's outputs);
    - a prior's ``grad_log_prob`` against ``B.grad`` of ``Σ log_prob`` (:data:`GRAD_RTOL`); a
      ``grad_h`` method's ``grad_z``, ``grad_rho`` on a small Hamiltonian against autodiff
      (:data:`APPROX_GRAD_RTOL`: methods may approximate), and its prepared forms ``grad_z_at``,
      ``grad_rho_at`` (what the leapfrog calls) against ``grad_z``, ``grad_rho`` (:data:`GRAD_RTOL`);

    then that every backend agrees with the first (same bounds as jit↔eager). A tempering
    schedule is numpy only: shape ``(K+1,)``, finite, positive, ``betas[0] == beta0``. A backend
    (an object, or a registered name) runs every operation of the contract (its ``xp`` names,
    autodiff, loops, ``jit``, ``cond``, ``stop_gradient``, ``remat``, the inverse Cholesky factor,
    ``logsumexp``, ``softplus``, activations, both convolutions) against numpy, at 100 × the
    parity bound of ``dtype``.

    A backend name that fails to import (or is not registered) is skipped with a
    ``RuntimeWarning``. ``dtype="float64"`` is not downgraded where a backend lacks it: on jax
    without ``jax.config.update("jax_enable_x64", True)`` it raises ``ValueError``; enable x64
    (e.g. in ``conftest.py``) or pass ``dtype="float32"``. A failed check raises
    ``AssertionError`` naming the component, the backend and the check.
    """
    if kind not in CHECKED_KINDS:
        raise ValueError(f"check_component checks kinds {', '.join(CHECKED_KINDS)}; got {kind!r}")
    if dtype not in PARITY_RTOL:
        raise ValueError(f"dtype must be one of {', '.join(PARITY_RTOL)}; got {dtype!r}")
    if kind == "backend":
        backend = get_registry().create("backend", obj) if isinstance(obj, str) else Registry().validate(kind, obj)
        return _check_backend(backend, dtype, seed)
    Registry().validate(kind, obj)
    label = f"{kind} {_label(obj)}"
    if kind == "tempering":
        return _check_tempering(obj, label)
    case = _CASES[kind]
    created = _create_backends(backends, dtype)
    example = _example_shape(input_shape)
    try:
        inputs = {**case.inputs(obj, np.random.default_rng(seed), example), "example": example}
    except _Mismatch as exc:
        raise AssertionError(f"{label}: {exc}") from None
    except ProtocolError:
        raise
    except Exception as exc:
        raise AssertionError(f"{label}: drawing the inputs (init) raised {type(exc).__name__}: {exc}") from exc
    results: dict[str, dict[str, np.ndarray]] = {}
    for B in created:
        where = f"{label} on {B.name}"
        arrays = _to_backend(B, inputs, dtype)
        eager = _run_checked(B, case, obj, arrays, dtype, where, jit=False)
        if kind in _DIFFERENTIATED:
            _check_gradients(B, case, obj, arrays, where)
        jitted = _run_checked(B, case, obj, arrays, dtype, where, jit=True)
        for name, value in eager.items():
            assert_close_normwise(jitted[name], value, case.parity_rtol(name, dtype),
                                  f"{where}: jit vs eager of {name}")
        for name, reference, table in case.references:
            if name in eager:
                assert_close_normwise(eager[name], eager[reference], table[dtype], f"{where}: {name} vs {reference}")
        results[B.name if B.name not in results else f"{B.name}#{len(results)}"] = eager
    (first, base), *others = results.items()
    for other, values in others:
        for name, value in values.items():
            assert_close_normwise(value, base[name], case.parity_rtol(name, dtype),
                                  f"{label}: {other} vs {first} parity of {name}")
    return results
