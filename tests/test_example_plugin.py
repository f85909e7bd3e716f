"""The example plugin distribution ``rhvae-student-t`` and ``rhvae.testing.check_component``.

The plugin must be installed (``pip install ./plugins/examples/rhvae-student-t``); without it
these tests skip, naming the command.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import rhvae
from rhvae.errors import ProtocolError
from rhvae.model import RHVAE
from rhvae.testing import assert_close_normwise, check_component, normwise_error

student_t = pytest.importorskip(
    "rhvae_student_t", reason="rhvae-student-t is not installed: pip install ./plugins/examples/rhvae-student-t"
)
StudentT, Linear = student_t.StudentT, student_t.Linear


class _NumpyBackend:
    """Enough of a backend for a component written over ``B.xp``, in plain numpy (no autodiff)."""

    name = "numpy"
    xp = np


NP = _NumpyBackend()


# ---------------------------------------------------------------- check_component on the plugin

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_student_t_passes_check_component(dtype):
    results = check_component("prior", StudentT(df=4.0), dtype=dtype)
    assert set(results) == {"torch", "jax"}
    assert results["jax"]["log_prob"].shape == (5,)


def test_linear_tempering_passes_check_component():
    check_component("tempering", Linear())


def test_linear_schedule_formula():
    betas = Linear()(4, 0.25)
    np.testing.assert_allclose(1 / np.sqrt(betas), [2.0, 1.75, 1.5, 1.25, 1.0], rtol=1e-14)
    assert betas[0] == pytest.approx(0.25, rel=1e-14) and betas[-1] == pytest.approx(1.0, rel=1e-14)


def test_registered_through_the_entry_point():
    spec = rhvae.get_registry().get("prior", "student_t")
    assert (spec.distribution, spec.version, spec.backends) == ("rhvae-student-t", "0.1.0", None)
    assert rhvae.get_registry().get("tempering", "linear").plugin == "rhvae-student-t"
    prior = rhvae.get_registry().create("prior", "student_t", df=5.0, scale=2.0)
    assert (prior.df, prior.scale) == (5.0, 2.0)


@pytest.mark.parametrize("kwargs, message", [({"df": 0.0}, "df must be > 0"), ({"scale": -1.0}, "scale must be > 0"),
                                             ({"df": float("nan")}, "df must be > 0")])
def test_student_t_rejects_bad_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StudentT(**kwargs)


# ---------------------------------------------------------------- correctness of the density

@pytest.mark.parametrize("df, scale, d", [(3.0, 1.0, 1), (4.0, 2.0, 3), (0.7, 0.5, 5)])
def test_student_t_matches_scipy(df, scale, d):
    stats = pytest.importorskip("scipy.stats")
    z = np.random.default_rng(7).standard_normal((6, d)) * 2.0
    expected = stats.multivariate_t(loc=np.zeros(d), shape=scale**2 * np.eye(d), df=df).logpdf(z)
    assert normwise_error(StudentT(df, scale).log_prob(NP, z), np.atleast_1d(expected)) < 1e-12


def test_student_t_closed_form_in_one_dimension():
    # df = 1 is the Cauchy density 1 / (π s (1 + z²/s²))
    z = np.linspace(-5, 5, 11)[:, None]
    expected = -np.log(np.pi * 2.0 * (1 + (z[:, 0] / 2.0) ** 2))
    assert_close_normwise(StudentT(df=1.0, scale=2.0).log_prob(NP, z), expected, 1e-14)


@pytest.mark.parametrize("df", [3.0, 10.0])
def test_student_t_integrates_to_one_in_one_dimension(df):
    # the substitution z = tan(u) maps the real line to (-π/2, π/2) with density p(tan u) / cos² u
    u = np.linspace(-np.pi / 2, np.pi / 2, 20001)[1:-1]
    density = np.exp(StudentT(df=df, scale=1.5).log_prob(NP, np.tan(u)[:, None])) / np.cos(u) ** 2
    integral = np.sum((density[1:] + density[:-1]) / 2 * np.diff(u))  # trapezoid rule
    assert integral == pytest.approx(1.0, abs=1e-6)


def test_student_t_gradient_formula():
    z = np.random.default_rng(3).standard_normal((4, 3))
    prior, h = StudentT(df=2.5, scale=0.8), 1e-6
    numeric = np.stack([(prior.log_prob(NP, z + h * e) - prior.log_prob(NP, z - h * e)) / (2 * h)
                        for e in np.eye(3)], axis=-1)
    assert_close_normwise(prior.grad_log_prob(NP, z), numeric, 1e-8)


# ---------------------------------------------------------------- check_component catches mistakes

class _WrongShapePrior:
    def __repr__(self) -> str:
        return "WrongShapePrior()"

    def log_prob(self, B, z):
        return -0.5 * z * z  # (B, d): forgot to sum over the latent axis


class _WrongGradientPrior(StudentT):
    def grad_log_prob(self, B, z):
        return 0.5 * super().grad_log_prob(B, z)


class _NoLogProb:
    def grad_log_prob(self, B, z):
        return -z


def test_check_component_reports_a_wrong_shape():
    with pytest.raises(AssertionError, match=r"prior WrongShapePrior\(\) on torch: log_prob has shape \(5, 3\); "
                                             r"expected \(5,\)"):
        check_component("prior", _WrongShapePrior())


def test_check_component_reports_a_wrong_gradient():
    with pytest.raises(AssertionError, match="on torch: grad_log_prob vs autodiff_grad: normwise error"):
        check_component("prior", _WrongGradientPrior())


class _KinkedPrior:
    """A finite ``log_prob`` whose gradient is NaN: ``sqrt`` at 0 times 0."""

    def log_prob(self, B, z):
        return -0.5 * B.xp.sum(z * z, axis=-1) + 0.0 * B.xp.sum(B.xp.sqrt(z - z), axis=-1)


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_check_component_reports_a_finite_output_with_a_non_finite_gradient(backend):
    with pytest.raises(AssertionError, match=rf"on {backend}: log_prob is finite but its gradient with respect to z "
                                             r"is not \(15 non-finite entries\)"):
        check_component("prior", _KinkedPrior(), backends=(backend,), dtype="float32")


def test_check_component_reports_a_bad_schedule():
    with pytest.raises(AssertionError, match=r"tempering .* expected beta0 = 0.3"):
        check_component("tempering", lambda K, beta0: np.linspace(1.0, 0.5, K + 1))


def test_check_component_rejects_a_protocol_violation():
    with pytest.raises(ProtocolError, match="missing log_prob"):
        check_component("prior", _NoLogProb())


def test_check_component_skips_a_missing_backend_with_a_warning():
    with pytest.warns(RuntimeWarning, match="skips backend 'nonexistent'"):
        results = check_component("prior", StudentT(), backends=("torch", "nonexistent"))
    assert list(results) == ["torch"]


# ---------------------------------------------------------------- training by registered name

def test_trains_with_the_plugin_components_by_name(backend):
    name, device = backend
    reg = rhvae.get_registry()
    x = (np.random.default_rng(11).uniform(size=(200, 20)) < np.linspace(0.1, 0.9, 20)).astype(np.float64)
    model = RHVAE(name, device=device, input_dim=20, latent_dim=2, position_prior="student_t", tempering="linear",
                  encoder=reg.create("encoder", "mlp", hidden=(32,)),
                  decoder=reg.create("decoder", "bernoulli_mlp", hidden=(32,)),
                  metric=reg.create("metric", "mlp", hidden=(32,)), learning_rate=1e-2)
    assert type(model.components.prior).__name__ == "StudentT"
    np.testing.assert_allclose(model.betas, Linear()(model.config.K, model.config.beta0))
    state, history = model.fit(model.init(seed=0), x, epochs=3, batch_size=50, progress=False)
    assert np.all(np.isfinite(history["loss"])) and len(history["epoch_loss"]) == 3
    assert history["epoch_loss"][-1] < history["epoch_loss"][0]
    assert math.isfinite(model.elbo(state, x, batch_size=200))
