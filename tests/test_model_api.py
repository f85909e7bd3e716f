"""Bad input gets a clear error before any computation; the API's shapes and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from helpers import small_model
from rhvae.errors import TrainingDivergedError, UnknownComponentError
from rhvae.model import RHVAE


@pytest.fixture(scope="module")
def model():
    return small_model("torch")


@pytest.fixture(scope="module")
def state(model):
    return model.init(seed=0, centroids=np.random.default_rng(0).uniform(size=(8, 10)))


@pytest.mark.parametrize("x, error, words", [
    (np.zeros((4, 9)), ValueError, ["9 features", "expects 10"]),
    (np.zeros((4, 2, 5)), ValueError, ["2 dimensions", "(4, 2, 5)"]),
    (np.zeros(10), ValueError, ["2 dimensions"]),
    (np.zeros((4, 10), dtype=np.int64), TypeError, ["int64", "floating point"]),
    (np.zeros((4, 10), dtype=bool), TypeError, ["bool"]),
    (np.full((4, 10), np.nan), ValueError, ["NaN"]),
    (np.where(np.eye(4, 10) > 0, np.inf, 0.5), ValueError, ["infinite"]),
    (np.zeros((0, 10)), ValueError, ["empty"]),
    (np.full((4, 10), 2.0), ValueError, ["[0, 1]", "Bernoulli"]),
])
def test_bad_data_is_rejected_with_a_clear_error(model, state, x, error, words):
    for call in (lambda: model.elbo(state, x), lambda: model.loss(state, x),
                 lambda: model.fit(state, x, progress=False)):
        with pytest.raises(error) as info:
            call()
        assert all(w in str(info.value) for w in words), str(info.value)


@pytest.mark.parametrize("hyper, error, word", [
    ({"latent_dim": 0}, ValueError, "latent_dim"),
    ({"T": 0.0}, ValueError, "T must"),
    ({"lam": -1.0}, ValueError, "lam must"),
    ({"eps": 0.0}, ValueError, "eps must"),
    ({"beta0": 0.0}, ValueError, "beta0"),
    ({"beta0": 1.5}, ValueError, "beta0 must lie in (0, 1]"),
    ({"K": 0}, ValueError, "K must"),
    ({"steps": 0}, ValueError, "steps must"),
    ({"K": 2.5}, TypeError, "K must be an integer"),
    ({"reduction": "max"}, ValueError, "reduction"),
    ({"dtype": "float16"}, ValueError, "dtype"),
    ({"logp_prefactor": (1, 2)}, ValueError, "logp_prefactor"),
])
def test_bad_hyper_parameters_are_rejected(hyper, error, word):
    kwargs = {"input_dim": 10, "latent_dim": 2, **hyper}
    with pytest.raises(error, match=None) as info:
        RHVAE("torch", **kwargs)
    assert word in str(info.value)


def test_unknown_backend_and_components_suggest_close_matches():
    with pytest.raises(UnknownComponentError, match="did you mean 'torch'"):
        RHVAE("torhc", input_dim=4, latent_dim=2)
    with pytest.raises(UnknownComponentError, match="did you mean 'spherical'"):
        RHVAE("torch", input_dim=4, latent_dim=2, position_prior="spherica")
    with pytest.raises(UnknownComponentError, match="autodiff"):
        RHVAE("torch", input_dim=4, latent_dim=2, grad_h="autodif")


def test_bad_centroids_are_rejected(model):
    with pytest.raises(ValueError, match="at least 1"):
        model.init(seed=0, centroids=0)
    with pytest.raises(ValueError, match="needs data="):
        model.init(seed=0, centroids=5)
    with pytest.raises(ValueError, match="empty"):
        model.init(seed=0, centroids=np.zeros((0, 10)))
    with pytest.raises(ValueError, match="exceeds"):
        model.init(seed=0, centroids=20, data=np.zeros((5, 10)))


def test_bad_latent_points_and_noise_are_rejected(model, state):
    with pytest.raises(ValueError, match="3 dimensions; the latent space expects 2"):
        model.G_inv(state, np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"noise.eps must have shape \(4, 2\)"):
        model.elbo(state, np.full((4, 10), 0.5), noise=(np.zeros((3, 2)), np.zeros((4, 2))))
    with pytest.raises(ValueError, match="same number of rows"):
        model.hamiltonian(state, np.full((4, 10), 0.5), np.zeros((3, 2)), np.zeros((4, 2)))


def test_evaluation_before_a_metric_state_exists_says_what_to_do(model):
    fresh = model.init(seed=0)
    with pytest.raises(rhvae.RhvaeError, match="refresh_metric"):
        model.elbo(fresh, np.full((4, 10), 0.5))


class _NaNPrior:
    def log_prob(self, B, z):
        return B.xp.sum(z, axis=-1) * float("nan")


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_component_with_non_finite_output_is_refused_when_the_model_is_built(backend):
    with pytest.raises(rhvae.ComponentError, match=r"prior _NaNPrior \(an object passed to RHVAE\) returned "
                                                  r"non-finite values in log_prob"):
        small_model(backend, position_prior=_NaNPrior(), probe="full")
    # probe="shapes" traces shapes and dtypes only (free on JAX), "off" skips the probe
    small_model(backend, position_prior=_NaNPrior(), probe="off" if backend == "torch" else "shapes")
    with pytest.raises(rhvae.InputError, match="probe must be one of"):
        small_model(backend, probe="sometimes")


class _SwitchPrior:
    """A standard normal prior that turns NaN after ``nan_after`` calls (eager torch calls it each time)."""

    def __init__(self) -> None:
        self.calls, self.nan_after = 0, None

    def log_prob(self, B, z):
        self.calls += 1
        broken = self.nan_after is not None and self.calls > self.nan_after
        return -0.5 * B.xp.sum(z * z, axis=-1) * (float("nan") if broken else 1.0)


def test_a_nan_loss_stops_fit_naming_epoch_and_step_and_keeps_the_last_finite_state():
    prior = _SwitchPrior()
    model = small_model("torch", position_prior=prior)
    x = np.random.default_rng(1).uniform(size=(50, 10))
    state = model.init(seed=0)
    prior.calls, prior.nan_after = 0, 0
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 0") as info:
        model.fit(state, x, epochs=2, batch_size=10, progress=False)
    assert info.value.state is state and info.value.history["loss"] == []  # no finite state but the start
    assert not info.value.finite and "the starting state (its first step failed)" in str(info.value)

    prior.calls, prior.nan_after = 0, None
    model.step(state, x[:10])
    per_step, prior.calls, prior.nan_after = prior.calls, 0, 3 * prior.calls  # NaN from the 4th step on
    with pytest.raises(TrainingDivergedError, match="epoch 1, step 3") as info:
        model.fit(state, x, epochs=1, batch_size=10, progress=False)
    last, history = info.value.state, info.value.history
    assert last.step == 2 and len(history["loss"]) == 3 and per_step > 0
    assert info.value.finite
    # the state handed back is the one whose loss was measured finite: re-measure it
    prior.nan_after = None
    order = np.random.default_rng((0, 2, 0)).permutation(50)
    _, loss = model.step(last, x[order[20:30]], noise=model.draw_noise(10, None, model.step_seed(last)))
    assert np.isfinite(loss) and loss == pytest.approx(history["loss"][-1], rel=1e-12)


def test_steps_with_a_non_finite_gradient_are_counted_and_reported(monkeypatch):
    model = small_model("torch")
    x = np.random.default_rng(1).uniform(size=(30, 10))
    train_step = model.train_step

    def second_step_skipped(state, *args, **kwargs):
        new_state, value, skipped = train_step(state, *args, **kwargs)
        return (state.replace(step=state.step + 1), value, True) if state.step == 1 else (new_state, value, skipped)

    monkeypatch.setattr(model, "train_step", second_step_skipped)
    with pytest.warns(RuntimeWarning, match=r"1 step\(s\) had a finite loss but a non-finite gradient"):
        _, history = model.fit(model.init(seed=0), x, epochs=1, batch_size=10, progress=False)
    assert history["skipped_steps"] == [1]


def test_the_same_seed_gives_the_same_run_and_another_seed_does_not():
    x = np.random.default_rng(2).uniform(size=(30, 10))
    runs = []
    for seed in (0, 0, 1):
        model = small_model("torch")
        s, history = model.fit(model.init(seed=seed), x, epochs=1, batch_size=10, progress=False)
        runs.append(history["loss"])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_api_shapes(model, state):
    x = np.random.default_rng(3).uniform(size=(5, 10))
    mu, log_sigma = model.encode(state, x)
    assert mu.shape == log_sigma.shape == (5, 2)
    assert model.decode(state, mu).shape == model.reconstruct(state, x).shape == (5, 10)
    assert np.all((model.reconstruct(state, x) > 0) & (model.reconstruct(state, x) < 1))
    assert model.G_inv(state, mu).shape == model.metric_tensor(state, mu).shape == (5, 2, 2)
    assert model.hamiltonian(state, x, mu, mu).shape == (5,)
    assert [g.shape for g in model.grad_hamiltonian(state, x, mu, mu)] == [(5, 2), (5, 2)]


def test_separate_input_and_target_are_honoured():
    model = small_model("torch", output_dim=4)
    rng = np.random.default_rng(4)
    x_in, x_out = rng.uniform(size=(6, 10)), rng.uniform(size=(6, 4))
    state = model.init(seed=0, centroids=x_in)
    assert np.isfinite(model.elbo(state, x_in, x_out))
    with pytest.raises(ValueError, match="x_out is required"):
        model.elbo(state, x_in)
    with pytest.raises(ValueError, match="x_out has 5 features; the decoder expects 4"):
        model.elbo(state, x_in, rng.uniform(size=(6, 5)))
    state, history = model.fit(state, x_in, x_out=x_out, epochs=1, batch_size=3, progress=False)
    assert len(history["loss"]) == 2


def test_ctrl_c_in_fit_hands_back_the_state_after_the_last_completed_step(monkeypatch):
    model = small_model("torch")
    x = np.random.default_rng(1).uniform(size=(30, 10))
    train_step = model.train_step

    def ctrl_c_at_step_2(state, *args, **kwargs):
        if state.step == 2:
            raise KeyboardInterrupt
        return train_step(state, *args, **kwargs)

    monkeypatch.setattr(model, "train_step", ctrl_c_at_step_2)
    with pytest.raises(KeyboardInterrupt) as info:  # still a KeyboardInterrupt for callers that do not care
        model.fit(model.init(seed=0), x, epochs=1, batch_size=10, progress=False)
    assert isinstance(info.value, rhvae.TrainingInterrupted)
    assert info.value.state.step == 2 and len(info.value.history["loss"]) == 2


class _CrashingMetric:
    def init(self, rng, input_dim, latent_dim):
        return {"w": rng.standard_normal((input_dim + 1, latent_dim))}

    def __call__(self, B, params, x):
        return x @ params["w"], x[:, :1]  # (B, D) @ (D + 1, d): the backend's own shape error


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_component_that_raises_on_the_probe_is_named_with_the_cause_kept(backend):
    with pytest.raises(rhvae.ComponentError, match=r"^metric _CrashingMetric \(an object passed to RHVAE\) raised "
                                                  r"\w+ on a probe batch of 4 rows") as info:
        RHVAE(backend, input_dim=10, latent_dim=3, metric=_CrashingMetric())
    assert info.value.__cause__ is not None


def test_divergence_at_an_epochs_first_step_hands_back_the_previous_epochs_last_finite_state():
    prior = _SwitchPrior()
    model = small_model("torch", position_prior=prior)
    x = np.random.default_rng(1).uniform(size=(40, 10))
    state = model.init(seed=0)
    prior.calls = 0
    model.step(state, x[:10])
    per_step = prior.calls
    prior.calls, prior.nan_after = 0, 4 * per_step  # 4 steps per epoch: the 5th, epoch 2's first, fails
    with pytest.raises(TrainingDivergedError, match="epoch 2, step 4") as info:
        model.fit(state, x, epochs=2, batch_size=10, progress=False)
    assert info.value.finite and info.value.state.step == 3 and len(info.value.history["loss"]) == 4


def test_a_prior_returning_one_value_per_coordinate_is_refused_even_when_the_batch_equals_d():
    """``(B, d)`` instead of ``(B,)`` used to broadcast into a ``(B, B)`` loss when B == d."""

    class PerCoordinate:
        def log_prob(self, B, z):
            return -0.5 * z * z

    with pytest.raises(rhvae.ComponentError, match=r"returned log_prob of shape \(3, 4\); expected \(3,\)"):
        small_model("torch", latent_dim=4, position_prior=PerCoordinate())


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_component_computing_in_another_dtype_is_refused(backend):
    class Float64Prior:
        def log_prob(self, B, z):
            return -0.5 * B.xp.sum(z * z, axis=-1).astype("float64") if backend == "jax" else \
                -0.5 * B.xp.sum(z * z, axis=-1).double()

    with pytest.raises(rhvae.ComponentError, match="returned log_prob of dtype float64; the model computes in float32"):
        small_model(backend, position_prior=Float64Prior(), probe="full")


def test_training_interrupted_is_not_swallowed_by_except_exception():
    assert not issubclass(rhvae.TrainingInterrupted, Exception)
    assert issubclass(rhvae.TrainingInterrupted, KeyboardInterrupt)
