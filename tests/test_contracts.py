"""The ∇H and integrator contracts as code: every built-in ∇H method passes ``check_component``
(prepared forms included), a method whose prepared form disagrees fails it, and an integrator
registered from outside the core drives the model through the ``integrator`` component kind."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from helpers import small_model
from rhvae.interfaces import GradHBase, PositionTerms
from rhvae.math.leapfrog import GeneralizedLeapfrog
from rhvae.state import Noise
from rhvae.registry import Registry
from rhvae.testing import check_component


@pytest.mark.parametrize("name", ["autodiff", "analytic", "finite"])
def test_every_builtin_grad_h_passes_the_contract_check(name):
    check_component("grad_h", rhvae.get_registry().create("grad_h", name))


class _StalePrepared(GradHBase):
    """Right ``grad_z``/``grad_rho``, but a prepared form that forgets the momentum's own term."""

    def __init__(self):
        self.exact = rhvae.get_registry().create("grad_h", "autodiff")

    def grad_z(self, B, H, z, rho):
        return self.exact.grad_z(B, H, z, rho)

    def grad_rho(self, B, H, z, rho):
        return self.exact.grad_rho(B, H, z, rho)

    def grad_rho_at(self, B, H, at: PositionTerms, rho):
        return 0.5 * self.exact.grad_rho(B, H, at.z, rho)


def test_a_prepared_form_that_disagrees_fails_the_check():
    with pytest.raises(AssertionError, match="grad_rho_at vs grad_rho"):
        check_component("grad_h", _StalePrepared(), backends=("torch",))


class _CountingLeapfrog(GeneralizedLeapfrog):
    """The paper's integrator, counting the flows it runs: a stand-in for a third party's."""

    def __init__(self):
        self.flows = 0

    def flow(self, *args):
        self.flows += 1
        return super().flow(*args)


def test_an_integrator_registered_outside_the_core_drives_the_model():
    registry = Registry.from_entry_points()
    counting = _CountingLeapfrog()
    registry.add("integrator", "counted", lambda: counting, doc="the paper's, counted")
    x = np.random.default_rng(0).uniform(0.05, 0.95, size=(6, 10))
    noise = Noise(*np.random.default_rng(1).standard_normal((2, 6, 2)))
    ours = small_model("torch", integrator="counted", registry=registry, dtype="float64")
    reference = small_model("torch", dtype="float64")
    state = ours.init(seed=0, centroids=x)
    assert ours.elbo(state, x, noise=noise) == reference.elbo(reference.init(seed=0, centroids=x), x, noise=noise)
    assert counting.flows >= 1
    with pytest.raises(ValueError, match="unknown integrator 'countd'.*counted"):
        small_model("torch", integrator="countd", registry=registry)


@pytest.mark.parametrize("name", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_builtin_backends_pass_the_backend_contract(name, dtype):
    results = check_component("backend", name, dtype=dtype)
    assert "conv_transpose2d (the adjoint of conv2d)" in results[name]


class _BrokenSoftplus:
    """The torch backend with a softplus that is off by log 2 (``log(1 + eˣ) - log 2``)."""

    def __init__(self):
        self.inner = rhvae.get_registry().create("backend", "torch")

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def softplus(self, x):
        return self.inner.softplus(x) - float(np.log(2.0))


def test_a_backend_with_a_wrong_operation_fails_the_check_naming_it():
    with pytest.raises(AssertionError, match="softplus against numpy"):
        check_component("backend", _BrokenSoftplus())
