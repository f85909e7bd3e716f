"""Pure step factories: the functions a model compiles, built from its backend, components, flow
and optimiser alone (no model, no state), so a test, a benchmark or a backend can trace them."""

from __future__ import annotations

from collections.abc import Callable

from rhvae.interfaces import Backend, DataParallel
from rhvae.math import elbo as elbo_math
from rhvae.optim import Adam
from rhvae.tree import flatten


def make_loss(B: Backend, parts: elbo_math.Components, flow: elbo_math.Flow) -> Callable:
    """``loss(params, centroid_x, x_in, x_out, eps, xi) -> -ELBO``, the metric built from
    ``centroid_x`` (``None``: the batch ``x_in``) under ``params`` (:func:`rhvae.math.elbo.loss`)."""

    def loss(params, centroid_x, x_in, x_out, eps, xi):
        return elbo_math.loss(B, parts, flow, params, centroid_x, x_in, x_out, eps, xi)

    return loss


def make_train_step(B: Backend, parts: elbo_math.Components, flow: elbo_math.Flow, optimizer: Adam,
                    parallel: DataParallel | None = None) -> Callable:
    """``step(params, opt_state, centroid_x, x_in, x_out, eps, xi, weight=1) ->
    (params', opt_state', loss, grads, finite)``: one optimiser step on ``-ELBO``.

    With ``parallel``, ``(loss, grads)`` are summed over processes with the weights
    ``n_local / n`` (the global batch's mean). A non-finite loss or gradient skips the update,
    as mixed-precision loss scalers do, so the parameters never become NaN (a sum is non-finite
    when any term is, or when it overflows, which no update survives either).
    """
    value_and_grad = B.value_and_grad(make_loss(B, parts, flow))

    def step(params, opt_state, centroid_x, x_in, x_out, eps, xi, weight=1.0):
        value, grads = value_and_grad(params, centroid_x, x_in, x_out, eps, xi)
        if parallel is not None:
            value, grads = parallel.weighted_sum((value, grads), weight)
        finite = B.xp.isfinite(value)
        for _, g in flatten(grads):
            finite = finite & B.xp.isfinite(B.xp.sum(g))
        new_params, new_opt_state = B.cond(finite, lambda: optimizer.update(B, grads, opt_state, params),
                                           lambda: (params, opt_state))
        return new_params, new_opt_state, value, grads, finite

    return step


def make_elbo_terms(B: Backend, parts: elbo_math.Components, flow: elbo_math.Flow) -> Callable:
    """``terms(params, metric, x_in, x_out, eps, xi) -> ElboTerms`` under a frozen metric."""

    def terms(params, metric, x_in, x_out, eps, xi):
        return elbo_math.elbo_terms(B, parts, flow, params, metric, x_in, x_out, eps, xi)

    return terms


def make_metric_from_data(B: Backend, parts: elbo_math.Components, M_max: float | None) -> Callable:
    """``metric(params, x) -> (c, M, M_packed, log_sigma)``: the frozen metric's arrays from the rows
    ``x``, with the encoder's ``log σ(x_i)``, detached from the parameters."""

    def metric(params, x):
        mu, log_sigma = parts.encoder(B, params["encoder"], x)
        state = elbo_math.metric_from_data(B, parts, params, x, mu=mu, M_max=M_max)._replace(log_sigma=log_sigma)
        return tuple(B.stop_gradient(a) for a in state)

    return metric
