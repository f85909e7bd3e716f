"""The user-facing model: components by registered name or object, explicit state, numpy in and out."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from rhvae import checkpoint, evaluation, generation, geometry, seeds, steps, training, validation
from rhvae.config import RHVAEConfig
from rhvae.data import Rows
from rhvae.errors import BackendUnavailableError, InputError, InputTypeError, RhvaeError
from rhvae.interfaces import Array, Backend, DataParallel
from rhvae.math import elbo as elbo_math
from rhvae.math.hamiltonian import shaped
from rhvae.math.metric import MetricSpec, MetricState
from rhvae.optim import Adam
from rhvae.probe import PROBES
from rhvae.probe import probe as run_probe
from rhvae.registry import Registry, get_registry
from rhvae.state import Noise, TrainState
from rhvae.tree import tree_map


class RHVAE:
    """A Riemannian Hamiltonian VAE (Chadebec, Mantoux & Allassonnière, 2020) on one backend.

    Components (``encoder``, ``decoder``, ``metric``, ``position_prior``, ``tempering``,
    ``grad_h``) are registered names or objects satisfying the Protocols of
    :mod:`rhvae.interfaces`. ``hyper`` are the fields of :class:`rhvae.config.RHVAEConfig`
    (``K eps beta0 steps T lam reduction logp_prefactor logq_prefactor learning_rate dtype``).
    ``compile``: compile every step and evaluation (the default: JAX yes, torch no; on torch it
    is ``torch.compile``, which costs a minute or more per function on a small CPU and then
    trains 2–3× faster). ``probe``: check every component on a probe batch when the model is
    built (:mod:`rhvae.probe`; ``"full"``, ``"shapes"`` or ``"off"``).
    """

    def __init__(
        self,
        backend: str | Backend = "torch",
        *,
        input_dim: int,
        latent_dim: int,
        encoder: Any = "mlp",
        decoder: Any = "bernoulli_mlp",
        metric: Any = "mlp",
        position_prior: Any = "spherical",
        tempering: Any = "quadratic",
        grad_h: Any = "analytic",
        device: str = "cpu",
        compile: bool | None = None,
        registry: Registry | None = None,
        probe: str = "full",
        **hyper: Any,
    ) -> None:
        self.config = RHVAEConfig(input_dim=input_dim, latent_dim=latent_dim, **hyper)
        reg = registry if registry is not None else get_registry()
        if isinstance(backend, str):
            options = {"device": device} if compile is None else {"device": device, "compile": compile}
            self.backend: Backend = reg.create("backend", backend, **options)
        else:
            self.backend = reg.validate("backend", backend)
        name = self.backend.name

        def component(kind: str, spec: Any) -> Any:
            if isinstance(spec, str):
                return reg.create(kind, spec, backend=name)
            only = getattr(spec, "backends", None)  # e.g. a torch.nn.Module adapter
            if only is not None and name not in only:
                raise BackendUnavailableError(f"{kind} {spec!r} runs on the {', '.join(only)} backend only; "
                                              f"this model's backend is {name!r}")
            return reg.validate(kind, spec)

        c = self.config
        self.components = elbo_math.Components(
            encoder=component("encoder", encoder),
            decoder=component("decoder", decoder),
            metric=component("metric", metric),
            prior=component("prior", position_prior),
            grad_h=component("grad_h", grad_h),
            integrator=component("integrator", c.integrator),
        )
        self.tempering = component("tempering", tempering)
        self.betas = _check_betas(self.tempering(c.K, c.beta0), c)
        self.metric_spec = MetricSpec(c.T, c.lam, c.reduction, c.centroid_chunk, c.weight_tol, c.M_max)
        integrator = self.components.integrator
        self.flow = elbo_math.Flow(
            eps=c.eps, steps=c.steps, beta0=c.beta0,
            momentum_scales=elbo_math.momentum_scales(self.betas),
            log_beta_ratio=integrator.log_beta_ratio(self.betas),
            metric=self.metric_spec,
            logp_prefactor=c.logp_prefactor, logq_prefactor=c.logq_prefactor,
            truncate_gradients=c.truncate_gradients, guard_fixed_point=c.guard_fixed_point,
        )
        integrator.check(self.components.grad_h, self.flow)
        self.optimizer = Adam(lr=c.learning_rate)
        self._compiled: dict[str, Callable] = {}
        if probe not in PROBES:
            raise InputError(f"probe must be one of {PROBES}; got {probe!r}")
        run_probe(self, reg, probe)

    def __repr__(self) -> str:
        c = self.components
        return (f"RHVAE(backend={self.backend!r}, input_dim={self.config.input_dim}, "
                f"latent_dim={self.config.latent_dim}, encoder={c.encoder!r}, decoder={c.decoder!r}, "
                f"metric={c.metric!r}, prior={c.prior!r}, tempering={self.tempering!r}, grad_h={c.grad_h!r})")

    # ------------------------------------------------------------------ conversion and checks

    def to_backend(self, x: np.ndarray) -> Array:
        """``x`` as an array of the model's backend, device and dtype."""
        return self.backend.asarray(x, self.config.dtype)

    def checked(self, x: Any, name: str = "x", *, target: bool = False) -> np.ndarray:
        """``x`` checked and read in full as a numpy array (see :meth:`rows`)."""
        return self.rows(x, name, target=target).all()

    def data_arrays(self, x: Any, x_out: Any | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`data_pair` read in full: the encoder's input and the decoder's target arrays."""
        rows_in, rows_out = self.data_pair(x, x_out)
        return rows_in.all(), rows_out.all()

    def rows(self, x: Any, name: str = "x", *, target: bool = False) -> Rows:
        """``x`` as :class:`rhvae.data.Rows` of the encoder's input (``target``: the decoder's
        target, checked against the likelihood's support), read batch by batch; a ``Rows``
        passes through."""
        if isinstance(x, Rows):
            return x
        c = self.config
        likelihood = self.components.decoder.likelihood
        return Rows(x, name, c.output_dim if target else c.input_dim, c.dtype,
                    support=getattr(likelihood, "support", None) if target else None, likelihood=likelihood,
                    expected_by="the decoder" if target else "the encoder")

    def data_pair(self, x: Any, x_out: Any | None) -> tuple[Rows, Rows]:
        """The encoder's input rows and the decoder's target rows (``x`` itself when ``x_out`` is
        ``None``), checked against the model's shapes and the likelihood's support."""
        rows_in = self.rows(x, "x")
        if x_out is None:
            if self.config.output_dim != self.config.input_dim:
                raise InputError("x_out is required when output_dim differs from input_dim")
            likelihood = self.components.decoder.likelihood
            return rows_in, rows_in.as_target(getattr(likelihood, "support", None), likelihood)
        rows_out = self.rows(x_out, "x_out", target=True)
        if len(rows_out) != len(rows_in):
            raise InputError(f"x_out has {len(rows_out)} rows; x has {len(rows_in)}")
        return rows_in, rows_out

    def data_parallel(self) -> DataParallel:
        """The backend's :class:`rhvae.interfaces.DataParallel` (torch processes, JAX devices)."""
        return self.backend.data_parallel()

    def latent_points(self, z: Any, name: str = "z") -> np.ndarray:
        """``z`` checked as latent points ``(B, d)`` in the model's dtype, else an error naming ``name``."""
        return validation.check_array(z, name, self.config.latent_dim, self.config.dtype,
                                      feature_name="dimensions", expected_by="the latent space")

    def latent_point(self, z: Any, name: str) -> np.ndarray:
        """A latent point ``(d,)`` (or ``(1, d)``) as float, else an error naming ``name``."""
        d = self.config.latent_dim
        try:
            arr = np.asarray(validation.to_numpy(z), dtype=float)
        except (TypeError, ValueError):
            raise InputTypeError(f"{name} must be a latent point of shape ({d},); got {type(z).__name__}") from None
        if arr.shape not in ((d,), (1, d)):
            raise InputError(f"{name} must be a latent point of shape ({d},); got shape {arr.shape}")
        return arr.reshape(d)

    def draw_noise(self, n: int, noise: Noise | None, seed: int | tuple) -> Noise:
        """``noise`` checked for ``n`` rows, or drawn from ``seed`` (two independent streams)."""
        d = self.config.latent_dim
        if noise is None:
            eps_rng, xi_rng = seeds.noise_streams(seed)
            return Noise(eps_rng.standard_normal((n, d)), xi_rng.standard_normal((n, d)))
        for name, arr in zip(("noise.eps", "noise.xi"), noise):
            if np.shape(arr) != (n, d):
                raise InputError(f"{name} must have shape ({n}, {d}); got {np.shape(arr)}")
        return Noise(*noise)

    def frozen_metric(self, state: TrainState) -> MetricState:
        """The state's frozen metric, or an error saying how to compute it."""
        if state.metric is None:
            raise RhvaeError("the metric state is not computed yet: call fit() or refresh_metric(state, x) first")
        return state.metric

    def compile_once(self, name: str, build: Callable[[], Callable]) -> Callable:
        """The backend's compilation of ``build()``, built on the first call under ``name`` and
        reused after (one compilation per function and model)."""
        if name not in self._compiled:
            self._compiled[name] = self.backend.jit(build())
        return self._compiled[name]

    @property
    def compiled_functions(self) -> Mapping[str, Callable]:
        """Every function compiled so far, by name (read-only)."""
        return MappingProxyType(self._compiled)

    # ------------------------------------------------------------------ state

    def init(self, seed: int = 0, centroids: Any = "batch", data: Any | None = None) -> TrainState:
        """Fresh parameters drawn from ``seed`` (in numpy, identical on every backend).

        ``centroids``: ``"batch"`` (the current batch is the centroid set, as pythae), an array
        ``(N, input_dim)`` of centroid inputs, or a count ``N`` of points drawn at random from
        ``data``. Fixed centroids are re-encoded at every training step.
        """
        seed = validation.check_seed("seed", seed)
        params = tree_map(self.to_backend, self.init_params(np.random.default_rng(seed)))
        centroid_data = self._centroid_data(centroids, data, seed)
        state = TrainState(params, self.optimizer.init(self.backend, params), None, centroid_data, int(seed))
        return state if centroid_data is None else self.refresh_metric(state)

    def init_params(self, rng: np.random.Generator) -> dict[str, dict[str, np.ndarray]]:
        """``{"encoder", "decoder", "metric"}`` parameters drawn by each network's ``init`` from ``rng``
        (numpy arrays: identical on every backend)."""
        c, parts = self.config, self.components
        return {
            "encoder": parts.encoder.init(rng, c.input_dim, c.latent_dim),
            "decoder": parts.decoder.init(rng, c.latent_dim, c.output_dim),
            "metric": parts.metric.init(rng, c.input_dim, c.latent_dim),
        }

    def _centroid_data(self, centroids: Any, data: Any | None, seed: int) -> Array | None:
        if isinstance(centroids, str):
            if centroids != "batch":
                raise InputError(f"centroids must be 'batch', an array or a count; got {centroids!r}")
            return None
        if isinstance(centroids, (int, np.integer)) and not isinstance(centroids, bool):
            if centroids < 1:
                raise InputError(f"centroids must be at least 1 point; got {centroids}")
            if data is None:
                raise InputError(f"centroids={centroids} (a count) needs data= to draw them from")
            pool = self.rows(data, "data")  # a memory-mapped file is read only at the chosen rows
            if centroids > len(pool):
                raise InputError(f"centroids={centroids} exceeds the {len(pool)} rows of data")
            rng = np.random.default_rng((seed, seeds.CENTROIDS))
            return self.to_backend(pool.read(rng.choice(len(pool), centroids, replace=False)))
        return self.to_backend(self.checked(centroids, "centroids"))

    def refresh_metric(self, state: TrainState, x: Any | None = None, batch_size: int = 1000,
                       parallel: DataParallel | None = None, weight: float | None = None) -> TrainState:
        """Recompute the frozen metric state (``c_i = μ(x_i)``, ``M_i = w L(x_i)L(x_i)ᵀ``, detached).

        From ``x`` if given (any source :class:`rhvae.data.Rows` reads, ``batch_size`` rows at a
        time), else from the state's fixed centroid data. With ``parallel``, each process
        computes its share of the rows and the shares are gathered: every process ends with
        the same state.

        ``weight`` ``w`` scales every ``M_i``. By default it is ``n_b / N`` when the model trained
        with ``centroids="batch"``, ``reduction="sum"`` and ``reweight_frozen_metric`` (``n_b = state.batch_centroids``, the
        batch size, ``N`` the rows of ``x``): a training step summed ``n_b`` centroids, a random
        batch's sum has expectation ``(n_b/N) Σ_{i≤N} M_i w_i``, so the frozen ``G⁻¹`` is the
        expectation of the one the model trained with, whatever ``N``. pythae sums all ``N``
        unweighted (``weight=1``), which makes ``G⁻¹`` ``N/n_b`` times larger than in training.
        Otherwise 1.
        """
        batch_size = validation.check_count("batch_size", batch_size)
        if x is None:
            if state.centroid_data is None:
                raise InputError("centroids='batch' has no fixed centroid data: pass x to refresh_metric")
            data = state.centroid_data
            n, read = data.shape[0], lambda idx: data[int(idx[0]):int(idx[-1]) + 1]
        else:
            rows = self.rows(x, "x")
            n, read = len(rows), lambda idx: self.to_backend(rows.read(idx))
        if weight is None:
            c = self.config
            batch = state.batch_centroids if state.centroid_data is None and c.reweight_frozen_metric else None
            weight = batch / n if batch is not None and c.reduction == "sum" else 1.0
        weight = validation.check_positive("weight", weight)
        B, parts, M_max = self.backend, self.components, self.metric_spec.M_max
        fn = self.compile_once("metric", lambda: steps.make_metric_from_data(B, parts, M_max))
        if parallel is not None and n < parallel.world_size:
            raise InputError(f"{n} centroid row(s) cannot be shared by {parallel.world_size} processes")
        share = parallel.local_rows(n) if parallel is not None else slice(0, n)
        chunks = [fn(state.params, read(np.arange(i, min(i + batch_size, share.stop))))
                  for i in range(share.start, share.stop, batch_size)]
        xp = B.xp
        metric = MetricState(*(xp.concatenate(parts_j, axis=0) for parts_j in zip(*chunks)))
        if parallel is not None and parallel.world_size > 1:
            metric = MetricState(*(parallel.gather_rows(a) for a in metric))
        if weight != 1.0:
            metric = metric._replace(M=weight * metric.M, M_packed=weight * metric.M_packed)
        return state.replace(metric=metric)

    # ------------------------------------------------------------------ training

    def batch_arrays(self, state: TrainState, x_in: np.ndarray, x_out: np.ndarray, noise: Noise) -> tuple:
        """``(centroid_x, x_in, x_out, eps, xi)`` as backend arrays: the arguments after
        ``(params[, opt_state])`` of :func:`rhvae.steps.make_loss` and :func:`~rhvae.steps.make_train_step`
        (``centroid_x`` is ``None`` with ``centroids="batch"``: the batch is its own centroid set)."""
        return (state.centroid_data, *map(self.to_backend, (x_in, x_out, noise.eps, noise.xi)))

    def train_step_function(self, parallel: DataParallel | None = None) -> Callable:
        """The model's compiled training step (:func:`rhvae.steps.make_train_step`)."""
        return self.compile_once("step" if parallel is None else "step:parallel", lambda: steps.make_train_step(
            self.backend, self.components, self.flow, self.optimizer, parallel))

    def step(self, state: TrainState, x: Any, x_out: Any | None = None, *,
             noise: Noise | None = None) -> tuple[TrainState, float]:
        """One Adam step on the batch ``x``; returns the new state and the loss before the step.

        A step whose loss or gradient is not finite leaves the parameters as they were (and
        :meth:`fit` counts it in ``history["skipped_steps"]``).
        """
        x_in, x_o = self.data_arrays(x, x_out)
        new_state, value, _ = self.train_step(state, x_in, x_o,
                                               self.draw_noise(x_in.shape[0], noise, self.step_seed(state)))
        return new_state, value

    def step_seed(self, state: TrainState) -> tuple:
        """The seed of the noise of the state's next training step."""
        return state.seed, seeds.NOISE, state.step

    def train_step(self, state: TrainState, x_in: np.ndarray, x_out: np.ndarray, noise: Noise,
                   parallel: DataParallel | None = None, n: int | None = None) -> tuple[TrainState, float, bool]:
        """One Adam step on checked rows: ``(new state, loss before the step, whether the update was
        skipped for a non-finite loss or gradient)``. With ``parallel``, the rows are this process's
        share of a global batch of ``n`` rows (and ``noise`` its rows of the global batch's noise);
        the returned parameters are as ``parallel.replicate`` left them: ``parallel.local`` them
        before working outside the step."""
        fn = self.train_step_function(parallel)
        centroid_x, *batch = self.batch_arrays(state, x_in, x_out, noise)
        params, opt_state, weight = state.params, state.opt_state, 1.0
        if parallel is not None:
            n = x_in.shape[0] if n is None else n
            weight = x_in.shape[0] / n
            params, opt_state = parallel.replicate(params), parallel.replicate(opt_state)
            batch = [parallel.place(a, n) for a in batch]
            if centroid_x is None and parallel.world_size > 1:  # "batch" mode: the global batch
                centroid_x = parallel.gather_rows(batch[0])
            elif centroid_x is not None:
                centroid_x = parallel.replicate(centroid_x)
        params, opt_state, value, _, finite = fn(params, opt_state, centroid_x, *batch, weight)
        batch_centroids = state.batch_centroids
        if state.centroid_data is None:  # "batch" mode: this step summed n (global) centroids
            batch_centroids = x_in.shape[0] if n is None else n
        return (state.replace(params=params, opt_state=opt_state, step=state.step + 1,
                              batch_centroids=batch_centroids), float(value), not bool(finite))

    def loss(self, state: TrainState, x: Any, x_out: Any | None = None, *,
             noise: Noise | None = None, seed: int = 0) -> float:
        """The training objective ``-ELBO`` on ``x``, with the metric built from the centroid data
        (the batch itself when ``centroids="batch"``) under the current parameters."""
        x_in, x_o = self.data_arrays(x, x_out)
        noise = self.draw_noise(x_in.shape[0], noise, (seed, seeds.EVALUATION))
        fn = self.compile_once("loss", lambda: steps.make_loss(self.backend, self.components, self.flow))
        return float(fn(state.params, *self.batch_arrays(state, x_in, x_o, noise)))

    def loss_and_grad(self, state: TrainState, x: Any, x_out: Any | None = None, *,
                      noise: Noise | None = None, seed: int = 0) -> tuple[float, dict]:
        """``(loss, ∂loss/∂params)`` with the gradient as a numpy tree shaped like ``state.params``.

        Shares the compiled training step (whose update is discarded): one compilation, not two.
        """
        x_in, x_o = self.data_arrays(x, x_out)
        noise = self.draw_noise(x_in.shape[0], noise, (seed, seeds.EVALUATION))
        fn = self.train_step_function()
        _, _, value, grads, _ = fn(state.params, state.opt_state, *self.batch_arrays(state, x_in, x_o, noise))
        return float(value), tree_map(self.backend.to_numpy, grads)

    fit = training.fit
    save = checkpoint.save
    load = checkpoint.load
    elbo_terms = evaluation.elbo_terms
    elbo = evaluation.elbo
    nll = evaluation.nll
    sample = generation.sample
    sample_prior = generation.sample_prior
    log_target = generation.log_target
    G_inv = geometry.G_inv
    metric_tensor = geometry.metric_tensor
    log_det_metric = geometry.log_det_metric
    pullback_metric = geometry.pullback_metric
    geodesic = geometry.geodesic
    hamiltonian = geometry.hamiltonian
    grad_hamiltonian = geometry.grad_hamiltonian
    leapfrog = geometry.leapfrog

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, backend: str | None = None, device: str = "cpu",
                        compile: bool | None = None, registry: Registry | None = None) -> tuple[RHVAE, TrainState]:
        """``(model, state)`` rebuilt from the checkpoint file alone: its configuration, and every
        component from the registry recipe it was created with, on ``backend`` (default: the one
        that wrote it); see :func:`rhvae.checkpoint.model_arguments`."""
        saved = checkpoint.read(path)
        try:
            model = cls(device=device, compile=compile, **checkpoint.model_arguments(saved, backend, registry))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, RhvaeError):
                raise
            raise checkpoint.CheckpointError(f"{saved.file}: its field 'config' does not build a model: {exc}") from exc
        return model, checkpoint.state_from(model, saved, check_version=False)

    # ------------------------------------------------------------------ encoder and decoder

    def encode(self, state: TrainState, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(μ, log σ)`` of ``q(z | x)``, each ``(B, d)``."""
        B, enc = self.backend, self.components.encoder
        fn = self.compile_once("encode", lambda: lambda p, xb: enc(B, p, xb))
        mu, log_sigma = fn(state.params["encoder"], self.to_backend(self.checked(x)))
        return B.to_numpy(mu), B.to_numpy(log_sigma)

    def decoder_outputs(self, state: TrainState, z: Any) -> tuple[np.ndarray, ...]:
        """The decoder's raw outputs at ``z`` (e.g. Bernoulli logits), each ``(B, *output_shape)``."""
        B, dec, shape = self.backend, self.components.decoder, self.config.output_shape
        fn = self.compile_once("decode", lambda: lambda p, zb: shaped(dec(B, p, zb), shape))
        return tuple(B.to_numpy(o) for o in fn(state.params["decoder"], self.to_backend(self.latent_points(z))))

    def decode(self, state: TrainState, z: Any) -> np.ndarray:
        """The mean of ``p(x | z)`` (probabilities for Bernoulli), ``(B, *output_shape)``."""
        B = self.backend
        outputs = tuple(self.to_backend(o) for o in self.decoder_outputs(state, z))
        return B.to_numpy(self.components.decoder.likelihood.mean(B, outputs))

    def reconstruct(self, state: TrainState, x: Any) -> np.ndarray:
        """``decode(μ(x))``."""
        return self.decode(state, self.encode(state, x)[0])


def _check_betas(betas: Any, config: RHVAEConfig) -> np.ndarray:
    betas = np.asarray(betas, dtype=np.float64)
    if betas.shape != (config.K + 1,):
        raise InputError(f"the tempering schedule returned shape {betas.shape}; expected ({config.K + 1},)")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0):
        raise InputError(f"the tempering schedule returned non-positive or non-finite values: {betas}")
    if not np.isclose(betas[0], config.beta0, rtol=1e-12, atol=0):
        raise InputError(f"the tempering schedule must start at beta0={config.beta0}; got {betas[0]}")
    return betas
