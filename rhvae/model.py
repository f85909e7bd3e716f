"""The user-facing model: components by registered name or object, explicit state, numpy in and out."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from rhvae import checkpoint, validation
from rhvae.config import RHVAEConfig
from rhvae.errors import BackendUnavailableError, InputError, InputTypeError, RhvaeError
from rhvae.data import Rows
from rhvae.diagnostics import chain_diagnostics
from rhvae.interfaces import Array, Backend, DataParallel
from rhvae.math import elbo as elbo_math
from rhvae.math import geodesic as geodesic_math
from rhvae.math import pullback
from rhvae.math import sampler as sampler_math
from rhvae.math.hamiltonian import Hamiltonian, shaped
from rhvae.math.metric import MetricSpec, MetricState, local_metric, metric_tensor
from rhvae.optim import Adam
from rhvae.probe import PROBES
from rhvae.probe import probe as run_probe
from rhvae.registry import Registry, get_registry
from rhvae.state import Geodesic, Noise, Samples, TrainState
from rhvae.tree import flatten, tree_map

# seed streams; 2 shuffles (training)
_NOISE_STREAM, _EVAL_STREAM, _CENTROID_STREAM, _SAMPLE_STREAM, _NLL_STREAM = 1, 3, 4, 5, 6
_JITTER = 0.2
"""Each transition of each chain draws its step as ``ε·U(1 - 0.2, 1 + 0.2)``, independently of the
chain's state (so every transition is still exact): with a fixed step and trajectory length the
acceptance rate is not monotone in ``ε`` (trajectories that resonate with the target's scales),
and step-size adaptation could settle far from its target."""


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

    def _data(self, x: Any, name: str = "x", *, target: bool = False) -> np.ndarray:
        """``x`` checked and converted in full (see :meth:`_rows`)."""
        return self._rows(x, name, target=target).all()

    def _pair(self, x: Any, x_out: Any | None) -> tuple[np.ndarray, np.ndarray]:
        rows_in, rows_out = self.data_pair(x, x_out)
        return rows_in.all(), rows_out.all()

    def _rows(self, x: Any, name: str = "x", *, target: bool = False) -> Rows:
        """``x`` as :class:`rhvae.data.Rows`, read batch by batch (a ``Rows`` passes through)."""
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
        rows_in = self._rows(x, "x")
        if x_out is None:
            if self.config.output_dim != self.config.input_dim:
                raise InputError("x_out is required when output_dim differs from input_dim")
            likelihood = self.components.decoder.likelihood
            return rows_in, rows_in.as_target(getattr(likelihood, "support", None), likelihood)
        rows_out = self._rows(x_out, "x_out", target=True)
        if len(rows_out) != len(rows_in):
            raise InputError(f"x_out has {len(rows_out)} rows; x has {len(rows_in)}")
        return rows_in, rows_out

    def data_parallel(self) -> DataParallel:
        """The backend's :class:`rhvae.interfaces.DataParallel` (torch processes, JAX devices)."""
        return self.backend.data_parallel()

    def _latent(self, z: Any, name: str = "z") -> np.ndarray:
        return validation.check_array(z, name, self.config.latent_dim, self.config.dtype,
                                      feature_name="dimensions", expected_by="the latent space")

    def _endpoint(self, z: Any, name: str) -> np.ndarray:
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
            eps_rng, xi_rng = _noise_streams(seed)
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

    def _compile(self, name: str, build: Callable[[], Callable]) -> Callable:
        if name not in self._compiled:
            self._compiled[name] = self.backend.jit(build())
        return self._compiled[name]

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
            pool = self._rows(data, "data")  # a memory-mapped file is read only at the chosen rows
            if centroids > len(pool):
                raise InputError(f"centroids={centroids} exceeds the {len(pool)} rows of data")
            rng = np.random.default_rng((seed, _CENTROID_STREAM))
            return self.to_backend(pool.read(rng.choice(len(pool), centroids, replace=False)))
        return self.to_backend(self._data(centroids, "centroids"))

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
            rows = self._rows(x, "x")
            n, read = len(rows), lambda idx: self.to_backend(rows.read(idx))
        if weight is None:
            c = self.config
            batch = state.batch_centroids if state.centroid_data is None and c.reweight_frozen_metric else None
            weight = batch / n if batch is not None and c.reduction == "sum" else 1.0
        weight = validation.check_positive("weight", weight)
        B, parts, M_max = self.backend, self.components, self.metric_spec.M_max
        fn = self._compile("metric", lambda: lambda p, xb: tuple(
            B.stop_gradient(a) for a in elbo_math.metric_from_data(B, parts, p, xb, M_max=M_max)))
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
            metric = MetricState(metric.centroids, weight * metric.M, weight * metric.M_packed)
        return state.replace(metric=metric)

    # ------------------------------------------------------------------ training

    def _loss_fn(self) -> Callable:
        B, parts, flow = self.backend, self.components, self.flow

        def loss(params, centroid_x, x_in, x_out, eps, xi):
            return elbo_math.loss(B, parts, flow, params, centroid_x, x_in, x_out, eps, xi)

        return loss

    def _step_fn(self, parallel: DataParallel | None = None) -> Callable:
        B, opt = self.backend, self.optimizer
        value_and_grad = B.value_and_grad(self._loss_fn())

        def step(params, opt_state, centroid_x, x_in, x_out, eps, xi, weight=1.0):
            value, grads = value_and_grad(params, centroid_x, x_in, x_out, eps, xi)
            if parallel is not None:  # Σ over processes of (n_local / n) × the local mean's gradient
                value, grads = parallel.weighted_sum((value, grads), weight)
            # a non-finite loss or gradient (an exploding trajectory) skips the update, as
            # mixed-precision loss scalers do: the parameters never become NaN. A sum is
            # non-finite when any term is (or when it overflows, which no update survives either)
            finite = B.xp.isfinite(value)
            for _, g in flatten(grads):
                finite = finite & B.xp.isfinite(B.xp.sum(g))
            new_params, new_opt_state = B.cond(finite, lambda: opt.update(B, grads, opt_state, params),
                                               lambda: (params, opt_state))
            return new_params, new_opt_state, value, grads, finite

        return step

    def _batch_arrays(self, state: TrainState, x_in: np.ndarray, x_out: np.ndarray, noise: Noise):
        xi, xo = self.to_backend(x_in), self.to_backend(x_out)
        centroid_x = state.centroid_data  # None in "batch" mode: the batch is its own centroid set
        return centroid_x, xi, xo, self.to_backend(noise.eps), self.to_backend(noise.xi)

    def step(self, state: TrainState, x: Any, x_out: Any | None = None, *,
             noise: Noise | None = None) -> tuple[TrainState, float]:
        """One Adam step on the batch ``x``; returns the new state and the loss before the step.

        A step whose loss or gradient is not finite leaves the parameters as they were (and
        :meth:`fit` counts it in ``history["skipped_steps"]``).
        """
        x_in, x_o = self._pair(x, x_out)
        new_state, value, _ = self.train_step(state, x_in, x_o,
                                               self.draw_noise(x_in.shape[0], noise, self.step_seed(state)))
        return new_state, value

    def step_seed(self, state: TrainState) -> tuple:
        """The seed of the noise of the state's next training step."""
        return state.seed, _NOISE_STREAM, state.step

    def train_step(self, state: TrainState, x_in: np.ndarray, x_out: np.ndarray, noise: Noise,
                   parallel: DataParallel | None = None, n: int | None = None) -> tuple[TrainState, float, bool]:
        """One Adam step on checked rows: ``(new state, loss before the step, whether the update was
        skipped for a non-finite loss or gradient)``. With ``parallel``, the rows are this process's
        share of a global batch of ``n`` rows (and ``noise`` its rows of the global batch's noise);
        the returned parameters are as ``parallel.replicate`` left them: ``parallel.local`` them
        before working outside the step."""
        fn = self._compile("step" if parallel is None else "step:parallel", lambda: self._step_fn(parallel))
        centroid_x, *batch = self._batch_arrays(state, x_in, x_out, noise)
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
        x_in, x_o = self._pair(x, x_out)
        noise = self.draw_noise(x_in.shape[0], noise, (seed, _EVAL_STREAM))
        fn = self._compile("loss", self._loss_fn)
        return float(fn(state.params, *self._batch_arrays(state, x_in, x_o, noise)))

    def loss_and_grad(self, state: TrainState, x: Any, x_out: Any | None = None, *,
                      noise: Noise | None = None, seed: int = 0) -> tuple[float, dict]:
        """``(loss, ∂loss/∂params)`` with the gradient as a numpy tree shaped like ``state.params``.

        Shares the compiled training step (whose update is discarded): one compilation, not two.
        """
        x_in, x_o = self._pair(x, x_out)
        noise = self.draw_noise(x_in.shape[0], noise, (seed, _EVAL_STREAM))
        fn = self._compile("step", self._step_fn)
        _, _, value, grads, _ = fn(state.params, state.opt_state, *self._batch_arrays(state, x_in, x_o, noise))
        return float(value), tree_map(self.backend.to_numpy, grads)

    def fit(self, state: TrainState, x: Any, *, epochs: int = 1, batch_size: int = 100,
            x_out: Any | None = None, validation_data: Any | None = None,
            progress: bool = True, distributed: bool = False) -> tuple[TrainState, dict]:
        """Train for ``epochs`` passes over ``x`` in shuffled batches (see :func:`rhvae.training.fit`)."""
        from rhvae.training import fit

        return fit(self, state, x, epochs=epochs, batch_size=batch_size, x_out=x_out,
                   validation_data=validation_data, progress=progress, distributed=distributed)

    # ------------------------------------------------------------------ generation

    def sample(self, state: TrainState, n: int, *, transitions: int = 100, warmup: int = 300, eps: float = 0.05,
               n_lf: int = 10, target_accept: float = 0.65, target: str = "centroids", beta0: float = 1.0,
               seed: int = 0, progress: bool = True) -> Samples:
        """``n`` draws from the Riemannian sampler: HMC on the learned volume element under the frozen metric.

        ``n`` chains start at centroids drawn from ``seed``. The first ``warmup`` transitions adapt
        the step size, shared by the chains, from ``eps`` toward the acceptance rate
        ``target_accept`` (dual averaging on the chains' mean acceptance probability), then freeze
        it; the next ``transitions`` are kept, and the final points are decoded (``warmup=0``: a
        fixed ``eps`` throughout). Each transition jitters the step by ±20 % (uniform, per chain). ``target``: ``"centroids"``,
        ``π ∝ √det(G⁻¹ - λI)`` (proper: it vanishes away from the data), or ``"volume"``,
        ``π ∝ √det G⁻¹`` (pythae's; improper, with a ``λ^{d/2}`` plateau). ``beta0 < 1`` tempers
        each trajectory, heating it to inverse temperature ``beta0`` at its middle (exact: the
        Metropolis step still applies). See :mod:`rhvae.math.sampler`.
        """
        n = validation.check_count("n", n)
        transitions = validation.check_count("transitions", transitions)
        warmup = validation.check_count("warmup", warmup, minimum=0)
        n_lf = validation.check_count("n_lf", n_lf)
        eps = validation.check_positive("eps", eps)
        beta0 = validation.check_positive("beta0", beta0)
        target_accept = validation.check_positive("target_accept", target_accept)
        if beta0 > 1:
            raise InputError(f"beta0 must lie in (0, 1]; got {beta0!r}")
        if target_accept >= 1:
            raise InputError(f"target_accept must lie in (0, 1); got {target_accept!r}")
        if target not in sampler_math.TARGETS:
            raise InputError(f"target must be one of {tuple(sampler_math.TARGETS)}; got {target!r}")
        sampler_math.tempering_factors(n_lf, beta0)  # checks n_lf >= 2 when tempering
        metric, spec, B, d = self.frozen_metric(state), self.metric_spec, self.backend, self.config.latent_dim
        make_target = sampler_math.TARGETS[target]
        fn = self._compile(f"hmc:{target}:{n_lf}:{beta0!r}", lambda: lambda m, z, p, lu, e: sampler_math.hmc_transition(
            B, make_target(m, spec), z, p, lu, e, n_lf, beta0))
        rng = np.random.default_rng((validation.check_seed("seed", seed), _SAMPLE_STREAM))
        centroids = B.to_numpy(metric.centroids)
        z = self.to_backend(centroids[rng.integers(centroids.shape[0], size=n)])
        adapt = sampler_math.DualAveraging(eps, target_accept)
        step, accepted, trace = adapt.step, np.zeros(n), np.empty((transitions, n, d))
        for t in tqdm(range(warmup + transitions), desc="sampling", disable=not progress, leave=False):
            momentum, log_u = rng.standard_normal((n, d)), np.log(rng.uniform(size=n))
            jittered = step * rng.uniform(1.0 - _JITTER, 1.0 + _JITTER, size=n)
            z, acc, prob = fn(metric, z, self.to_backend(momentum), self.to_backend(log_u), self.to_backend(jittered))
            if t < warmup:  # one step size for all chains, from their mean acceptance probability
                adapt.update(float(np.mean(B.to_numpy(prob))))
                step = adapt.step if t < warmup - 1 else adapt.final  # frozen for the kept transitions
            else:
                accepted += B.to_numpy(acc)
                trace[t - warmup] = B.to_numpy(z)
        z_np = trace[-1]
        per_chain = accepted / transitions
        return Samples(self.decode(state, z_np), z_np, float(per_chain.mean()), per_chain, float(step),
                       trace, chain_diagnostics(trace))

    def sample_prior(self, state: TrainState, n: int, *, seed: int = 0) -> Samples:
        """``n`` decoded draws ``z ~ N(0, I)``: the plain VAE generator, for comparison."""
        n = validation.check_count("n", n)
        rng = np.random.default_rng((validation.check_seed("seed", seed), _SAMPLE_STREAM))
        z = rng.standard_normal((n, self.config.latent_dim))
        return Samples(self.decode(state, z), z, float("nan"))

    def geodesic(self, state: TrainState, z0: Any, z1: Any, *, n_segments: int = 32, iterations: int = 500,
                 learning_rate: float = 1e-2, progress: bool = True) -> Geodesic:
        """The geodesic from ``z0`` to ``z1`` (each ``(d,)``) under the frozen metric ``G``.

        A path of ``n_segments`` segments starts on the straight line; ``iterations`` Adam steps
        move its interior points to minimise ``n Σ_t Δ_tᵀ G(m_t) Δ_t`` (see
        :mod:`rhvae.math.geodesic`). Returns the path, its length and energy, the straight
        segment's length for comparison, and the decoded path.
        """
        n_segments = validation.check_count("n_segments", n_segments)
        iterations = validation.check_count("iterations", iterations, minimum=0)
        learning_rate = validation.check_positive("learning_rate", learning_rate)
        ends = self._latent(np.stack([self._endpoint(z0, "z0"), self._endpoint(z1, "z1")]), "z0, z1")
        metric, spec, B = self.frozen_metric(state), self.metric_spec, self.backend
        opt = Adam(lr=learning_rate)  # the same Adam as training, on the path's interior points

        def path_of(interior, a, b):
            return B.xp.concatenate([a[None], interior, b[None]], axis=0)

        def build():
            def step(interior, opt_state, a, b, m):
                e, g = B.value_and_grad(lambda p: geodesic_math.energy(B, path_of(p, a, b), m, spec))(interior)
                new, new_state = opt.update(B, {"z": g}, opt_state, {"z": interior})
                return new["z"], new_state, e
            return step

        t = np.linspace(0.0, 1.0, n_segments + 1)[:, None]
        straight = self.to_backend((1 - t) * ends[0] + t * ends[1])
        interior, a, b = straight[1:-1], straight[0], straight[-1]
        opt_state = opt.init(B, {"z": interior})
        step = self._compile(f"geodesic:{learning_rate!r}", build)
        for _ in tqdm(range(iterations), desc="geodesic", disable=not progress, leave=False):
            interior, opt_state, _ = step(interior, opt_state, a, b, metric)
        path = path_of(interior, a, b)
        measure = lambda f, p: float(B.to_numpy(f(B, p, metric, spec)))  # noqa: E731
        z = B.to_numpy(path)
        return Geodesic(z, measure(geodesic_math.length, path), measure(geodesic_math.energy, path),
                        measure(geodesic_math.length, straight), self.decode(state, z))

    # ------------------------------------------------------------------ checkpoints

    def save(self, state: TrainState, path: str | os.PathLike, metadata: dict | None = None) -> Path:
        """Write the single file ``PATH.npz`` atomically: every array, its hash, the configuration,
        the components, versions and ``metadata`` (:mod:`rhvae.checkpoint`); returns its path."""
        return checkpoint.save(self, state, path, metadata)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, backend: str | None = None, device: str = "cpu",
                        compile: bool | None = None) -> tuple[RHVAE, TrainState]:
        """``(model, state)`` rebuilt from the checkpoint file alone (:func:`rhvae.checkpoint.load_model`)."""
        return checkpoint.load_model(path, backend=backend, device=device, compile=compile)

    def load(self, path: str | os.PathLike, *, check_version: bool = True) -> TrainState:
        """The state saved at ``path`` (by either backend), checked against this model's config
        and components; see :func:`rhvae.checkpoint.load`."""
        return checkpoint.load(self, path, check_version=check_version)

    # ------------------------------------------------------------------ evaluation

    def elbo_terms(self, state: TrainState, x: Any, x_out: Any | None = None, *,
                   noise: Noise | None = None, seed: int = 0) -> elbo_math.ElboTerms:
        """Every per-sample ELBO term and the flow's endpoints, as numpy, under the frozen metric."""
        x_in, x_o = self._pair(x, x_out)
        return self._elbo_terms_checked(state, x_in, x_o, self.draw_noise(x_in.shape[0], noise, (seed, _EVAL_STREAM)))

    def _elbo_terms_checked(self, state: TrainState, x_in: np.ndarray, x_o: np.ndarray,
                            noise: Noise) -> elbo_math.ElboTerms:
        B, parts, flow = self.backend, self.components, self.flow
        fn = self._compile("elbo_terms", lambda: lambda p, m, xi, xo, e, g: elbo_math.elbo_terms(
            B, parts, flow, p, m, xi, xo, e, g))
        terms = fn(state.params, self.frozen_metric(state), self.to_backend(x_in), self.to_backend(x_o),
                   self.to_backend(noise.eps), self.to_backend(noise.xi))
        return elbo_math.ElboTerms(*(B.to_numpy(t) for t in terms))

    def elbo(self, state: TrainState, x: Any, x_out: Any | None = None, *, noise: Noise | None = None,
             seed: int = 0, batch_size: int = 500) -> float:
        """The held-out ELBO ``mean_b(log p̄ - log q̄)`` under the frozen metric, ``batch_size`` rows
        at a time: ``x`` may be any source :class:`rhvae.data.Rows` reads (a memory-mapped ``.npy``)."""
        batch_size = validation.check_count("batch_size", batch_size)
        rows_in, rows_out = self.data_pair(x, x_out)
        n, d = len(rows_in), self.config.latent_dim
        noise = self.draw_noise(n, noise, ()) if noise is not None else None
        streams = _noise_streams((seed, _EVAL_STREAM))  # row i gets the draws _noise would give it
        total = 0.0
        for idx, kept in _padded_chunks(n, batch_size):
            chunk = (Noise(noise.eps[idx], noise.xi[idx]) if noise is not None
                     else Noise(*(rng.standard_normal((idx.size, d)) for rng in streams)))
            x_chunk = rows_in.read(idx)
            terms = self._elbo_terms_checked(state, x_chunk, rows_out.read_as_target(idx, x_chunk, rows_in), chunk)
            total += float(np.sum(terms.elbo[:kept], dtype=np.float64))
        return total / n

    def nll(self, state: TrainState, x: Any, x_out: Any | None = None, *, n_samples: int = 500,
            batch_size: int = 5000, seed: int = 0, progress: bool = True) -> np.ndarray:
        """Importance-sampled ``-log p(x)`` per row, the RHVAE's own flow as the proposal.

        Each ELBO term ``log p̄ - log q̄`` is the log-weight ``log p(x, z_K, ρ_K) - log q(z_K, ρ_K | x)``
        of an importance sample on the extended space (the flow preserves volume up to the
        tempering Jacobian that ``log q̄`` carries), so
        ``log p(x) ≈ logsumexp_s(log w_s) - log S``; biased low by ``O(Var w / S)``. The weights
        take every term with prefactor 1 whatever the model's ``logp_prefactor``/``logq_prefactor``
        (:func:`rhvae.math.elbo.log_importance_weight`): with other prefactors the training
        objective is not a bound, and its terms are not a density ratio.
        ``batch_size`` bounds the rows × samples evaluated at once.
        """
        x_in, x_o = self._pair(x, x_out)
        n_samples = validation.check_count("n_samples", n_samples)
        rows = max(1, validation.check_count("batch_size", batch_size) // n_samples)
        rng = np.random.default_rng((validation.check_seed("seed", seed), _NLL_STREAM))
        d = self.config.latent_dim
        out = []
        chunks = _padded_chunks(x_in.shape[0], rows)
        for idx, kept in tqdm(chunks, total=len(chunks), desc="NLL", disable=not progress, leave=False):
            idx = np.repeat(idx, n_samples)
            noise = Noise(rng.standard_normal((idx.size, d)), rng.standard_normal((idx.size, d)))
            terms = self.elbo_terms(state, x_in[idx], x_o[idx], noise=noise)
            log_w = elbo_math.log_importance_weight(terms, self.flow).astype(np.float64)
            log_w = log_w.reshape(-1, n_samples)[:kept]
            top = log_w.max(axis=1, keepdims=True)
            out.append(-(top[:, 0] + np.log(np.mean(np.exp(log_w - top), axis=1))))
        return np.concatenate(out)

    def encode(self, state: TrainState, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(μ, log σ)`` of ``q(z | x)``, each ``(B, d)``."""
        B, enc = self.backend, self.components.encoder
        fn = self._compile("encode", lambda: lambda p, xb: enc(B, p, xb))
        mu, log_sigma = fn(state.params["encoder"], self.to_backend(self._data(x)))
        return B.to_numpy(mu), B.to_numpy(log_sigma)

    def decoder_outputs(self, state: TrainState, z: Any) -> tuple[np.ndarray, ...]:
        """The decoder's raw outputs at ``z`` (e.g. Bernoulli logits), each ``(B, *output_shape)``."""
        B, dec, shape = self.backend, self.components.decoder, self.config.output_shape
        fn = self._compile("decode", lambda: lambda p, zb: shaped(dec(B, p, zb), shape))
        return tuple(B.to_numpy(o) for o in fn(state.params["decoder"], self.to_backend(self._latent(z))))

    def decode(self, state: TrainState, z: Any) -> np.ndarray:
        """The mean of ``p(x | z)`` (probabilities for Bernoulli), ``(B, *output_shape)``."""
        B = self.backend
        outputs = tuple(self.to_backend(o) for o in self.decoder_outputs(state, z))
        return B.to_numpy(self.components.decoder.likelihood.mean(B, outputs))

    def reconstruct(self, state: TrainState, x: Any) -> np.ndarray:
        """``decode(μ(x))``."""
        return self.decode(state, self.encode(state, x)[0])

    def _local_metric(self, state: TrainState, z: Any):
        B, spec = self.backend, self.metric_spec
        fn = self._compile("local_metric", lambda: lambda m, zb: local_metric(B, zb, m, spec))
        return fn(self.frozen_metric(state), self.to_backend(self._latent(z)))

    def G_inv(self, state: TrainState, z: Any) -> np.ndarray:
        """``G⁻¹(z) = a Σ_i M_i exp(-‖z - c_i‖²/T²) + λI`` under the frozen metric; ``(B, d, d)``."""
        return self.backend.to_numpy(self._local_metric(state, z).G_inv)

    def metric_tensor(self, state: TrainState, z: Any) -> np.ndarray:
        """``G(z) = Xᵀ X`` from the inverse ``X`` of the Cholesky factor of ``G⁻¹(z)``; ``(B, d, d)``."""
        return self.backend.to_numpy(metric_tensor(self.backend, self._local_metric(state, z)))

    def log_det_metric(self, state: TrainState, z: Any) -> np.ndarray:
        """``log det G(z) = -log det G⁻¹(z)``; ``(B,)``."""
        return self.backend.to_numpy(self._local_metric(state, z).logdet_G)

    def pullback_metric(self, state: TrainState, z: Any) -> np.ndarray:
        """The decoder's pull-back metric ``J(z)ᵀ J(z)``, ``J = ∂ mean(p(x|z)) / ∂z``; ``(B, d, d)``.

        The geometry the decoder induces, for comparison with the learned ``G`` (see
        :mod:`rhvae.math.pullback`).
        """
        B, dec = self.backend, self.components.decoder

        def build():
            def metric(p, zb):
                shape = self.config.output_shape
                return pullback.pullback_metric(
                    B, lambda zz: dec.likelihood.mean(B, shaped(dec(B, p, zz), shape)).reshape(zz.shape[0], -1), zb)
            return metric

        return B.to_numpy(self._compile("pullback", build)(state.params["decoder"], self.to_backend(self._latent(z))))

    def _hamiltonian(self, params: dict, metric: MetricState, x: Array) -> Hamiltonian:
        parts = self.components
        return Hamiltonian(self.backend, x, parts.decoder, params["decoder"], parts.prior, metric, self.metric_spec)

    def _phase_point(self, state: TrainState, x: Any, z: Any, rho: Any) -> tuple[Array, ...]:
        xo = self._data(x, "x", target=True)
        zz, rr = self._latent(z, "z"), self._latent(rho, "rho")
        if not xo.shape[0] == zz.shape[0] == rr.shape[0]:
            raise InputError(f"x, z and rho must have the same number of rows; got "
                             f"{xo.shape[0]}, {zz.shape[0]}, {rr.shape[0]}")
        return self.to_backend(xo), self.to_backend(zz), self.to_backend(rr)

    def hamiltonian(self, state: TrainState, x: Any, z: Any, rho: Any) -> np.ndarray:
        """``H(z, ρ) = -log p(x|z) - log p(z) - log N(ρ; 0, G(z))`` per sample, ``(B,)``."""
        fn = self._compile("hamiltonian", lambda: lambda p, m, xb, zb, rb: self._hamiltonian(p, m, xb)(zb, rb))
        out = fn(state.params, self.frozen_metric(state), *self._phase_point(state, x, z, rho))
        return self.backend.to_numpy(out)

    def grad_hamiltonian(self, state: TrainState, x: Any, z: Any, rho: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(∂H/∂z, ∂H/∂ρ)`` by the model's ``grad_h`` method, each ``(B, d)``."""
        B, gh = self.backend, self.components.grad_h

        def build():
            def grads(p, m, xb, zb, rb):
                H = self._hamiltonian(p, m, xb)
                return gh.grad_z(B, H, zb, rb), gh.grad_rho(B, H, zb, rb)
            return grads

        gz, gr = self._compile("grad_hamiltonian", build)(state.params, self.frozen_metric(state),
                                                          *self._phase_point(state, x, z, rho))
        return B.to_numpy(gz), B.to_numpy(gr)

    def leapfrog(self, state: TrainState, x: Any, z: Any, rho: Any) -> tuple[np.ndarray, np.ndarray]:
        """One leapfrog step ``(z, ρ) -> (z', ρ'')`` of the configured integrator (no tempering), under
        the frozen metric."""
        B, parts, flow = self.backend, self.components, self.flow

        def step(p, m, xb, zb, rb):
            return parts.integrator.step(B, self._hamiltonian(p, m, xb), parts.grad_h, flow, zb, rb)

        fn = self._compile("leapfrog", lambda: step)
        z1, r1 = fn(state.params, self.frozen_metric(state), *self._phase_point(state, x, z, rho))
        return B.to_numpy(z1), B.to_numpy(r1)


def _noise_streams(seed: int | tuple) -> tuple[np.random.Generator, np.random.Generator]:
    """Independent generators for ``eps`` and ``xi``: drawing rows in blocks gives the same rows."""
    seed = seed if isinstance(seed, tuple) else (seed,)
    if seed:
        seed = (validation.check_seed("seed", seed[0]), *seed[1:])
    return np.random.default_rng((*seed, 0)), np.random.default_rng((*seed, 1))


def _padded_chunks(n: int, size: int) -> list[tuple[np.ndarray, int]]:
    """Row indices of ``n`` rows in chunks of ``min(size, n)``, the last padded by repeating its
    final row, with how many rows of each to keep: one compiled function serves every chunk."""
    size = min(size, n)
    return [(np.minimum(np.arange(i, i + size), n - 1), min(size, n - i)) for i in range(0, n, size)]


def _check_betas(betas: Any, config: RHVAEConfig) -> np.ndarray:
    betas = np.asarray(betas, dtype=np.float64)
    if betas.shape != (config.K + 1,):
        raise InputError(f"the tempering schedule returned shape {betas.shape}; expected ({config.K + 1},)")
    if not np.all(np.isfinite(betas)) or np.any(betas <= 0):
        raise InputError(f"the tempering schedule returned non-positive or non-finite values: {betas}")
    if not np.isclose(betas[0], config.beta0, rtol=1e-12, atol=0):
        raise InputError(f"the tempering schedule must start at beta0={config.beta0}; got {betas[0]}")
    return betas
