"""The public Protocols every component satisfies.

Components are written once over a :class:`Backend` object ``B`` (its array namespace
``B.xp`` and its transforms), so a component registered with ``backends=None`` works on
torch and jax alike. Parameters are flat ``dict[str, array]`` per network: a JAX pytree, the
input of ``torch.func.functional_call`` and an ``.npz`` checkpoint at once. ``init`` draws them
in numpy from a ``numpy.random.Generator`` so both backends start from identical values.

Shapes are batch-first: ``x`` is ``(B, D)``, or ``(B, *shape)`` for shaped data (images are
``(B, C, H, W)``, channels first, on every backend), ``z`` and ``rho`` are ``(B, d)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

Array = Any
"""A backend array (``torch.Tensor`` or ``jax.Array``)."""

Params = Mapping[str, Array]


@runtime_checkable
class Backend(Protocol):
    """Array namespace, autodiff transforms, compilation and conversion of one framework.

    ``xp`` exposes the vetted names shared by ``torch`` and ``jax.numpy`` (``exp log sum
    einsum matmul where stack concatenate eye zeros ...``); everything whose spelling differs
    between the two is a method here. The last three members are optional in substance:
    :class:`BackendBase` gives their defaults (no shape tracing, no rematerialisation, no data
    parallelism), so a new backend subclasses it and writes the others.
    ``rhvae.testing.check_component("backend", B)`` checks every operation against numpy.
    """

    name: str
    xp: Any
    version: str

    def asarray(self, x: Any, dtype: str) -> Array: ...
    def to_numpy(self, x: Array) -> np.ndarray: ...
    def constant(self, value: np.ndarray, dtype: Any) -> Array: ...
    def grad(self, f: Callable, argnums: int = 0, has_aux: bool = False) -> Callable: ...
    def value_and_grad(self, f: Callable, argnums: int = 0, has_aux: bool = False) -> Callable: ...
    def vjp(self, f: Callable, *primals: Array) -> tuple[Array, Callable]: ...
    def fori_loop(self, lower: int, upper: int, body: Callable, init: Any, unroll: bool = False) -> Any: ...
    def jit(self, f: Callable) -> Callable: ...
    def cond(self, pred: Array, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
        """``true_fn()`` if the scalar ``pred`` holds, else ``false_fn()``; both return the same
        structure of arrays. A compiled function may run both and select (cheap when ``false_fn``
        returns arrays that exist anyway)."""
        ...

    def stop_gradient(self, x: Array) -> Array: ...
    def inverse_cholesky(self, a: Array) -> Array:
        """``X = C⁻¹`` (lower triangular) for symmetric positive-definite ``a (..., d, d) = C Cᵀ``;
        NaN in ``log det`` (``-2 Σ log X_jj``) when ``a`` is not positive definite."""
        ...

    def conv2d(self, x: Array, w: Array, stride: int = 1, padding: int = 0) -> Array:
        """2-D cross-correlation of ``x (B, C_in, H, W)`` with ``w (C_out, C_in, k, k)``, no bias
        (torch's ``conv2d``): ``(B, C_out, ⌊(H + 2p - k)/s⌋ + 1, ...)``."""
        ...

    def conv_transpose2d(self, x: Array, w: Array, stride: int = 1, padding: int = 0,
                         output_padding: int | tuple[int, int] = 0) -> Array:
        """The transpose of :meth:`conv2d` for ``w (C_in, C_out, k, k)`` (torch's
        ``conv_transpose2d``): ``(B, C_out, (H - 1)s - 2p + k + output_padding, ...)``;
        ``output_padding`` per side or as ``(rows, columns)``."""
        ...

    def logsumexp(self, x: Array, axis: int) -> Array: ...
    def softplus(self, x: Array) -> Array: ...
    def activation(self, name: str) -> Callable[[Array], Array]: ...
    def synchronize(self, x: Any) -> Any: ...
    def devices(self) -> list[str]: ...

    eval_shape: Callable[..., Any] | None
    """``eval_shape(f, *args)``: the shapes and dtypes of ``f(*args)`` by tracing alone, or ``None``
    when the backend cannot trace without computing (the build-time probe then computes)."""

    def remat(self, f: Callable) -> Callable:
        """``f`` recomputed in the backward pass instead of keeping its intermediates."""
        ...

    def data_parallel(self) -> DataParallel:
        """This process's :class:`DataParallel` group (``fit(distributed=True)``)."""
        ...

    @classmethod
    def join_processes(cls, coordinator: str, num_processes: int, process_id: int) -> None:
        """Join a multi-process run before any array is made (``rhvae train --coordinator``)."""
        ...


XP_NAMES: tuple[str, ...] = (
    "abs", "all", "amax", "clip", "concatenate", "einsum", "exp", "finfo", "full_like", "isfinite", "linalg",
    "log", "log1p", "matmul", "mean", "ones_like", "sqrt", "stack", "sum", "tanh", "where", "zeros", "zeros_like",
)
"""The names the core and the built-ins call on ``B.xp`` (with numpy's meaning and ``axis=``
keywords; ``xp.linalg.diagonal``), and arrays with ``.shape``, ``.dtype``, ``.ndim``,
``.reshape``, ``.mT``, indexing and the arithmetic operators."""


class BackendBase:
    """Defaults of the :class:`Backend` members a new backend may do without: ``eval_shape``
    (``None``), ``remat`` (the identity), ``data_parallel`` and ``join_processes`` (errors saying
    there is none); ``version`` is ``""`` unless set."""

    version = ""
    eval_shape = None

    def remat(self, f: Callable) -> Callable:
        return f

    def data_parallel(self) -> DataParallel:
        from rhvae.errors import RhvaeError

        raise RhvaeError(f"backend {self.name!r} offers no data parallelism (no data_parallel())")

    @classmethod
    def join_processes(cls, coordinator: str, num_processes: int, process_id: int) -> None:
        from rhvae.errors import RhvaeError

        raise RhvaeError(f"backend {cls.name!r} does not join processes by address: it takes them from its "
                         f"launcher (torch: torchrun), or runs in one process")


class DataParallel(Protocol):
    """How one training step is split across processes or devices (``fit(distributed=True)``).

    A backend offers it through an optional ``data_parallel()`` method. Each process reads the
    rows ``local_rows(n)`` of every global batch of ``n`` rows; ``place(x, n)`` turns them into
    what the compiled step consumes (e.g. one global array sharded over devices); ``replicate``
    does the same for the parameters (an array or a tree) and ``local`` undoes it; ``weighted_sum`` adds
    ``weight × tree`` over processes (the weight is ``n_local / n``, so the sum is the gradient
    of the global mean); ``gather_rows`` concatenates every process's rows in rank order;
    ``barrier`` waits for every process. An optional ``exit(code)`` ends a process whose program
    is done (after its last ``barrier``) where the framework's own teardown is unreliable.
    """

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool: ...
    def local_rows(self, n: int) -> slice: ...
    def place(self, x: Array, n: int) -> Array: ...
    def replicate(self, tree: Any) -> Any: ...
    def local(self, tree: Any) -> Any: ...
    def weighted_sum(self, tree: Any, weight: float) -> Any: ...
    def gather_rows(self, x: Array) -> Array: ...
    def barrier(self) -> None: ...


@runtime_checkable
class Encoder(Protocol):
    """``x (B, D) -> (mu (B, d), log_sigma (B, d))``; ``log_sigma`` is the log standard deviation."""

    def init(self, rng: np.random.Generator, input_dim: int, latent_dim: int) -> dict[str, np.ndarray]: ...
    def __call__(self, B: Backend, params: Params, x: Array) -> tuple[Array, Array]: ...


@runtime_checkable
class Likelihood(Protocol):
    """``log p(x | outputs)`` summed over features, ``(B,)``; ``n_outputs`` arrays per sample."""

    n_outputs: int

    def log_prob(self, B: Backend, x: Array, outputs: tuple[Array, ...]) -> Array: ...
    def mean(self, B: Backend, outputs: tuple[Array, ...]) -> Array: ...


@runtime_checkable
class Decoder(Protocol):
    """``z (B, d) -> outputs``: a tuple of ``likelihood.n_outputs`` arrays of shape ``(B, D)``, or
    for shaped data ``(B, *shape)`` or flat ``(B, prod(shape))`` (the core reshapes flat ones);
    ``init`` gets ``output_dim`` as an int or, for shaped data, the shape tuple.

    May also define ``precompute(B, params) -> params``: work on the parameters alone, done once
    per batch for all the positions the flow decodes (so its gradient is also taken once); the
    result goes to ``__call__`` in place of ``params`` and must give the same outputs.
    """

    likelihood: Likelihood

    def init(self, rng: np.random.Generator, latent_dim: int, output_dim: int | tuple[int, ...]) -> dict[str, np.ndarray]: ...
    def __call__(self, B: Backend, params: Params, z: Array) -> tuple[Array, ...]: ...


@runtime_checkable
class MetricNet(Protocol):
    """``x (B, D) -> (diag (B, d), lower (B, d(d-1)/2))``, the raw entries of ``L(x)``.

    The core makes the diagonal positive (``exp``) and fills the strict lower triangle in
    row-major order: ``(1,0), (2,0), (2,1), (3,0), ...`` (``tril_indices(d, -1)``).
    """

    def init(self, rng: np.random.Generator, input_dim: int, latent_dim: int) -> dict[str, np.ndarray]: ...
    def __call__(self, B: Backend, params: Params, x: Array) -> tuple[Array, Array]: ...


@runtime_checkable
class LogPrior(Protocol):
    """Position prior ``log p(z)``, ``z (B, d) -> (B,)``.

    May also define ``grad_log_prob(B, z) -> (B, d)`` for the analytic gradient of H.
    """

    def log_prob(self, B: Backend, z: Array) -> Array: ...


@runtime_checkable
class TemperingSchedule(Protocol):
    """``schedule(K, beta0) -> betas`` of shape ``(K + 1,)``, ``betas[0] == beta0``.

    After leapfrog step ``k`` the momentum is rescaled by ``sqrt(betas[k-1] / betas[k])``.
    """

    def __call__(self, K: int, beta0: float) -> np.ndarray: ...


class PositionTerms(NamedTuple):
    """What a :class:`GradH` computes once at a position ``z (B, d)`` and reuses for every momentum
    there (every fixed-point iteration, and across the boundary between two leapfrog steps).

    Only ``z`` is required. A method that computed the metric at ``z`` (a
    :class:`rhvae.math.metric.LocalMetric`), ``log p(x | z)``, ``∇z U(z)`` or ``G(z)`` puts them here:
    the integrator and the ELBO then reuse them instead of computing them again.
    """

    z: Array
    metric: Any = None
    log_likelihood: Array | None = None
    grad_potential: Array | None = None
    G: Array | None = None


@runtime_checkable
class GradH(Protocol):
    """Partial derivatives of the Hamiltonian ``H(z, rho)`` (a :class:`rhvae.math.Hamiltonian`).

    ``grad_z`` is ``∂H/∂z`` at fixed ``rho`` and ``grad_rho`` is ``∂H/∂rho`` at fixed ``z``,
    both ``(B, d)``; each sample's H depends only on its own row, so these are per-sample.
    ``prepare(B, H, z)`` returns the :class:`PositionTerms` of ``z``; ``grad_z_at``/``grad_rho_at``
    take them in place of ``z`` (:class:`GradHBase` gives the defaults: terms holding ``z`` alone).
    ``closed_form``: the method reads the Hamiltonian's parts (decoder, metric state) instead of
    only calling ``H(z, rho)``; it is then cheap to compile, so the leapfrog loops are unrolled
    around it, and an integrator that differentiates another callable refuses it.
    """

    closed_form: bool

    def grad_z(self, B: Backend, H: Any, z: Array, rho: Array) -> Array: ...
    def grad_rho(self, B: Backend, H: Any, z: Array, rho: Array) -> Array: ...
    def prepare(self, B: Backend, H: Any, z: Array) -> PositionTerms: ...
    def grad_z_at(self, B: Backend, H: Any, at: PositionTerms, rho: Array) -> Array: ...
    def grad_rho_at(self, B: Backend, H: Any, at: PositionTerms, rho: Array) -> Array: ...


class GradHBase:
    """Defaults of :class:`GradH` for a method that differentiates ``H(z, rho)`` as a black box:
    nothing to prepare but the position, and ``grad_*_at`` are ``grad_*`` at ``at.z``."""

    closed_form = False

    def prepare(self, B: Backend, H: Any, z: Array) -> PositionTerms:
        return PositionTerms(z)

    def grad_z_at(self, B: Backend, H: Any, at: PositionTerms, rho: Array) -> Array:
        return self.grad_z(B, H, at.z, rho)

    def grad_rho_at(self, B: Backend, H: Any, at: PositionTerms, rho: Array) -> Array:
        return self.grad_rho(B, H, at.z, rho)


class FlowEnds(NamedTuple):
    """What an :class:`Integrator`'s flow hands the ELBO: the initial momentum ``rho0`` and
    ``log q(rho0)`` (its ELBO term), the endpoint ``(zK, rhoK)``, ``log p(x | zK)`` and the metric
    (a :class:`rhvae.math.metric.LocalMetric`) at ``zK``; arrays ``(B, d)`` or ``(B,)``."""

    rho0: Array
    log_q_rho: Array
    zK: Array
    rhoK: Array
    log_px: Array
    metricK: Any


@runtime_checkable
class Integrator(Protocol):
    """The tempered flow of the ELBO: from ``z0`` and the momentum noise ``xi`` to ``(zK, rhoK)``.

    ``flow(B, H, grad_h, settings, z0, xi, scales)``: draw ``rho0`` from ``xi`` and run ``K =
    len(scales)`` steps, rescaling the momentum by ``scales[k]`` after step ``k``
    (``settings``: a :class:`rhvae.math.elbo.Flow`); returns :class:`FlowEnds`. ``step(B, H,
    grad_h, settings, z, rho)``: one untempered step ``(z, rho) -> (z', rho')``.
    ``log_beta_ratio(betas)``: the log-Jacobian factor of the tempering in ``log q̄``.
    ``check(grad_h, settings)``: raise :class:`rhvae.errors.InputError` for a ∇H method or a
    setting the integrator cannot use (called when the model is built).
    """

    def flow(self, B: Backend, H: Any, grad_h: GradH, settings: Any, z0: Array, xi: Array,
             scales: Array) -> FlowEnds: ...
    def step(self, B: Backend, H: Any, grad_h: GradH, settings: Any, z: Array, rho: Array) -> tuple[Array, Array]: ...
    def log_beta_ratio(self, betas: np.ndarray) -> float: ...
    def check(self, grad_h: GradH, settings: Any) -> None: ...


PROTOCOLS: dict[str, type] = {
    "backend": Backend,
    "encoder": Encoder,
    "decoder": Decoder,
    "metric": MetricNet,
    "prior": LogPrior,
    "tempering": TemperingSchedule,
    "grad_h": GradH,
    "integrator": Integrator,
}
"""Component kind -> the Protocol its objects satisfy."""


def protocol_violations(kind: str, obj: object) -> list[str]:
    """Names of the members that ``obj`` lacks to satisfy the Protocol of ``kind``."""
    protocol = PROTOCOLS[kind]
    members = set(getattr(protocol, "__annotations__", {}))
    members |= {k for k in vars(protocol) if not k.startswith("_") or k == "__call__"}
    return sorted(m for m in members if not hasattr(obj, m))
