"""Validated, immutable configuration of an RHVAE (hyper-parameters as plain Python floats).

Python floats stay weakly typed on both backends, so a float32 model never gets promoted to
float64 by a hyper-parameter when JAX runs with x64 enabled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rhvae.errors import InputError, InputTypeError
from rhvae.math.metric import REDUCTIONS
from rhvae.validation import check_count as _count
from rhvae.validation import check_positive as _positive

DTYPES = ("float32", "float64")


def _shape(name: str, value) -> int | tuple[int, ...]:
    """An input or output size: an int (flat rows), or the shape of one example as a tuple of
    positive ints (a 1-tuple normalises to its int)."""
    if isinstance(value, (tuple, list)):
        if not value:
            raise InputError(f"{name} must be a positive int or a non-empty shape tuple; got {value!r}")
        shape = tuple(_count(f"{name}[{i}]", v) for i, v in enumerate(value))
        return shape[0] if len(shape) == 1 else shape
    return _count(name, value)


def _prefactor(name: str, value) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise InputTypeError(f"{name} must be 3 real numbers; got {value!r}") from None
    if len(values) != 3 or not all(math.isfinite(v) for v in values):
        raise InputError(f"{name} must be 3 finite numbers; got {value!r}")
    return values


@dataclass(frozen=True)
class RHVAEConfig:
    """Everything numeric that defines an RHVAE; each field is checked on construction.

    ``input_dim``/``output_dim``: the size of one example, an int for flat rows ``(B, D)`` or a
    shape tuple for shaped data, e.g. ``(1, 28, 28)`` for ``(B, C, H, W)`` images (channels
    first on both backends); :attr:`input_shape` and :attr:`input_size` give both views.

    ``K`` leapfrog steps of size ``eps`` with ``steps`` fixed-point iterations; tempering from
    ``beta0 ∈ (0, 1]``; metric temperature ``T`` and regulariser ``lam``; ``reduction`` of the
    centroid sum (``"sum"``: paper, pythae; ``"mean"``: AutoEncoderToolkit.jl); ELBO prefactors
    ``logp_prefactor`` for (log p(x|z_K), log N(ρ_K|z_K), log p(z_K)) and ``logq_prefactor`` for
    (log q(z0|x), the ρ0 term, the β0 term). ``truncate_gradients`` stops the parameter
    gradient through the ``∇H`` values of leapfrog sub-steps 1 and 2, as pythae 0.1.2 does
    (less work per step, a different gradient); the default follows the full gradient.
    ``integrator``: a registered integrator (the ``integrator`` component kind): ``"implicit"``,
    the paper's generalized leapfrog, or ``"aetk"``, AutoEncoderToolkit.jl's
    (:mod:`rhvae.math.aetk`; see :func:`rhvae.presets.aetk_compat`).
    ``centroid_chunk``: sum over centroids in blocks of this many (memory ``O(B·chunk + N d²)``
    for large ``N``); ``weight_tol``: centroid weights below it count as 0 (error bound in
    :func:`rhvae.math.metric.centroid_weights`); see :class:`rhvae.math.metric.MetricSpec`.

    Stability (``docs/stability.md``): ``M_max`` bounds every ``M_i``: ``tr M_i < M_max``
    (:func:`rhvae.math.metric.bounded_factor`; ``None``: unbounded, as the paper and rhvae 0.1).
    ``guard_fixed_point``: a sample whose fixed-point iteration stops contracting keeps its last
    iterate (:mod:`rhvae.math.leapfrog`; ``integrator="implicit"`` only). ``reweight_frozen_metric``: with ``centroids="batch"``
    and ``reduction="sum"``, the frozen metric weighs its ``N`` centroids by ``n_b/N`` (``n_b``:
    the training batch size), the expectation of the training-time metric
    (:meth:`rhvae.RHVAE.refresh_metric`); ``False`` sums them unweighted, as pythae does.
    :func:`rhvae.presets.rhvae_0_1` turns all three off.
    """

    input_dim: int | tuple[int, ...]
    latent_dim: int
    output_dim: int | tuple[int, ...] | None = None
    K: int = 3
    eps: float = 1e-3
    beta0: float = 0.3
    steps: int = 3
    T: float = 0.8
    lam: float = 1e-2
    reduction: str = "sum"
    logp_prefactor: tuple[float, float, float] = (1.0, 1.0, 1.0)
    logq_prefactor: tuple[float, float, float] = (1.0, 1.0, 1.0)
    learning_rate: float = 1e-3
    dtype: str = "float32"
    truncate_gradients: bool = False
    integrator: str = "implicit"
    centroid_chunk: int | None = None
    weight_tol: float = 0.0
    M_max: float | None = 1000.0
    guard_fixed_point: bool = True
    reweight_frozen_metric: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "input_dim", _shape("input_dim", self.input_dim))
        set_(self, "latent_dim", _count("latent_dim", self.latent_dim))
        set_(self, "output_dim", self.input_dim if self.output_dim is None else _shape("output_dim", self.output_dim))
        set_(self, "K", _count("K", self.K))
        set_(self, "steps", _count("steps", self.steps))
        for name in ("eps", "T", "lam", "learning_rate"):
            set_(self, name, _positive(name, getattr(self, name)))
        beta0 = _positive("beta0", self.beta0)
        if beta0 > 1:
            raise InputError(f"beta0 must lie in (0, 1]; got {beta0!r}")
        set_(self, "beta0", beta0)
        if self.reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {REDUCTIONS}; got {self.reduction!r}")
        if self.centroid_chunk is not None:
            set_(self, "centroid_chunk", _count("centroid_chunk", self.centroid_chunk))
        weight_tol = float(self.weight_tol)
        if not 0.0 <= weight_tol < 1.0:
            raise InputError(f"weight_tol must lie in [0, 1); got {self.weight_tol!r}")
        set_(self, "weight_tol", weight_tol)
        if not isinstance(self.integrator, str) or not self.integrator:
            raise InputTypeError(f"integrator must be the name of a registered integrator (e.g. 'implicit', 'aetk'); "
                                 f"got {self.integrator!r}")
        for name in ("truncate_gradients", "guard_fixed_point", "reweight_frozen_metric"):
            if not isinstance(getattr(self, name), bool):
                raise InputTypeError(f"{name} must be a bool; got {type(getattr(self, name)).__name__}")
        if self.M_max is not None:
            set_(self, "M_max", _positive("M_max", self.M_max))
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {DTYPES}; got {self.dtype!r}")
        set_(self, "logp_prefactor", _prefactor("logp_prefactor", self.logp_prefactor))
        set_(self, "logq_prefactor", _prefactor("logq_prefactor", self.logq_prefactor))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input example, ``(D,)`` for flat rows."""
        return _as_shape(self.input_dim)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of one decoded example, ``(D,)`` for flat rows."""
        return _as_shape(self.output_dim)

    @property
    def input_size(self) -> int:
        """The number of values in one input example."""
        return math.prod(self.input_shape)

    @property
    def output_size(self) -> int:
        """The number of values in one decoded example."""
        return math.prod(self.output_shape)


def _as_shape(dim: int | tuple[int, ...]) -> tuple[int, ...]:
    return dim if isinstance(dim, tuple) else (dim,)
