"""Bring-your-own networks: ``TorchNetwork``, ``FlaxNetwork`` and ``EquinoxNetwork`` as components.

Each adapter: a model built from it trains; its forward pass is the module's own; a module that
reproduces the built-in MLPs gives the built-in model's ELBO to float64 round-off (so every
∇H method, the analytic one included, sees the same network); checkpoints round-trip; and each
refusal names its argument. The JAX models that train use ``K=1, steps=1`` and trace the
probe only: compiling the training step then costs 3 s instead of 7.
"""

from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import rhvae
from rhvae.errors import BackendUnavailableError, ComponentError, InputError, InputTypeError, ProtocolError
from rhvae.state import Noise
from rhvae_jax import EquinoxNetwork, FlaxNetwork
from rhvae_torch import TorchNetwork

pytestmark = pytest.mark.xdist_group("adapters")  # one worker trains each adapter model, once

D, d, H = 10, 2, 8  # input, latent, hidden widths
HEADS = {"encoder": (d, d), "metric": (d, d * (d - 1) // 2)}  # (mu, log_sigma) and (diag, lower)
LAYERS = {"encoder": ("hidden0", "mu", "log_sigma"), "decoder": ("hidden0", "out0"),
          "metric": ("hidden0", "diag", "lower")}  # the built-in MLPs' dense layers, "<layer>.w" (in, out) and ".b"
FAST = {"K": 1, "steps": 1, "probe": "shapes"}


def data(n: int = 40, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(n, D))


def backend_obj(name: str):
    return rhvae.get_registry().create("backend", name)


def shapes(params: dict) -> dict[str, dict[str, tuple[int, ...]]]:
    return {kind: {k: tuple(v.shape) for k, v in p.items()} for kind, p in params.items()}


def numpy_params(model: rhvae.RHVAE, state: rhvae.TrainState) -> dict[str, dict[str, np.ndarray]]:
    return {kind: {k: model.backend.to_numpy(v) for k, v in p.items()} for kind, p in state.params.items()}


# ------------------------------------------------------------------ the networks, one per framework


class TorchHeads(nn.Module):
    """``relu(x W + b)`` then one linear head per output: the built-in MLP's layout."""

    def __init__(self, n_in: int, outs: tuple[int, ...]) -> None:
        super().__init__()
        self.hidden0 = nn.Linear(n_in, H)
        self.heads = nn.ModuleList(nn.Linear(H, o) for o in outs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = torch.relu(self.hidden0(x))
        return tuple(head(h) for head in self.heads)


def torch_nets(**kwargs) -> dict[str, TorchNetwork]:
    return {"encoder": TorchNetwork(TorchHeads(D, HEADS["encoder"]), **kwargs),
            "decoder": TorchNetwork(nn.Sequential(nn.Linear(d, H), nn.ReLU(), nn.Linear(H, D)),  # one tensor out
                                    likelihood="bernoulli", **kwargs),
            "metric": TorchNetwork(TorchHeads(D, HEADS["metric"]), **kwargs)}


def flax_nets() -> dict[str, FlaxNetwork]:
    import flax.linen as fnn

    class Heads(fnn.Module):
        outs: tuple[int, ...]

        @fnn.compact
        def __call__(self, x):
            h = fnn.relu(fnn.Dense(H)(x))  # Dense_0, then one Dense per head
            outs = tuple(fnn.Dense(o)(h) for o in self.outs)
            return outs[0] if len(outs) == 1 else outs

    return {"encoder": FlaxNetwork(Heads(HEADS["encoder"])),
            "decoder": FlaxNetwork(Heads((D,)), likelihood="bernoulli"),
            "metric": FlaxNetwork(Heads(HEADS["metric"]))}


def equinox_nets(weights: dict[str, dict[str, np.ndarray]] | None = None) -> dict[str, EquinoxNetwork]:
    """Equinox networks; with ``weights`` (the built-in layout) they carry those weights."""
    import equinox as eqx

    class Heads(eqx.Module):
        hidden0: eqx.nn.Linear
        heads: tuple[eqx.nn.Linear, ...]

        def __init__(self, n_in: int, outs: tuple[int, ...], key: jax.Array) -> None:
            k0, *ks = jax.random.split(key, 1 + len(outs))
            self.hidden0 = eqx.nn.Linear(n_in, H, key=k0)
            self.heads = tuple(eqx.nn.Linear(H, o, key=k) for o, k in zip(outs, ks))

        def __call__(self, x: jax.Array):  # one example
            h = jax.nn.relu(self.hidden0(x))
            return tuple(head(h) for head in self.heads)

    keys = jax.random.split(jax.random.key(0), 3)
    modules = {"encoder": Heads(D, HEADS["encoder"], keys[0]),
               "decoder": eqx.nn.MLP(d, D, H, 1, activation=jax.nn.relu, key=keys[1]),  # one array out
               "metric": Heads(D, HEADS["metric"], keys[2])}
    if weights is not None:
        def leaves(m: eqx.Module) -> list[jax.Array]:
            linears = m.layers if isinstance(m, eqx.nn.MLP) else (m.hidden0, *m.heads)
            return [a for layer in linears for a in (layer.weight, layer.bias)]

        for kind, module in modules.items():
            new = [jnp.asarray(a) for n in LAYERS[kind] for a in (weights[kind][f"{n}.w"].T, weights[kind][f"{n}.b"])]
            modules[kind] = eqx.tree_at(leaves, module, new)
    return {"encoder": EquinoxNetwork(modules["encoder"]),
            "decoder": EquinoxNetwork(modules["decoder"], likelihood="bernoulli"),
            "metric": EquinoxNetwork(modules["metric"])}


def torch_layout(kind: str, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The built-in's ``"hidden0.w" (in, out)`` as the ``nn.Linear`` entry ``"hidden0.weight" (out, in)``, etc."""
    modules = ("0", "2") if kind == "decoder" else ("hidden0", "heads.0", "heads.1")
    out = {}
    for layer, module in zip(LAYERS[kind], modules):
        out[f"{module}.weight"] = torch.from_numpy(weights[f"{layer}.w"].T.copy())
        out[f"{module}.bias"] = torch.from_numpy(weights[f"{layer}.b"])
    return out


def flax_layout(kind: str, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The built-in's layout as ``Dense_i.kernel`` (in, out) and ``Dense_i.bias``: the same arrays."""
    return {f"Dense_{i}.{flax_name}": weights[f"{layer}.{ours}"]
            for i, layer in enumerate(LAYERS[kind]) for flax_name, ours in (("kernel", "w"), ("bias", "b"))}


def adapter_model(backend: str, nets: dict, **hyper) -> rhvae.RHVAE:
    return rhvae.RHVAE(backend, input_dim=D, latent_dim=d, **nets, **hyper)


# ------------------------------------------------------------------ (a) training, (d) checkpoints

BUILDERS = {
    "torch": ("torch", lambda: torch_nets(), {}),
    "flax": ("jax", lambda: flax_nets(), FAST),
    "equinox": ("jax", lambda: equinox_nets(), FAST),
}


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def trained(request):
    """``(adapter, model, state before, state after)`` of two training steps (float32)."""
    backend, build, hyper = BUILDERS[request.param]
    model = adapter_model(backend, build(), **hyper)
    before = model.init(seed=0)
    after, history = model.fit(before, data(), epochs=1, batch_size=20, progress=False)
    return request.param, model, before, after, history


def test_a_model_of_adapters_trains(trained):
    name, model, before, after, history = trained
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all(), history["loss"]
    start, end = numpy_params(model, before), numpy_params(model, after)
    for kind in ("encoder", "decoder", "metric"):
        assert start[kind].keys() == end[kind].keys()
        unchanged = [k for k in start[kind] if np.array_equal(start[kind][k], end[kind][k])]
        assert not unchanged, f"{name} {kind}: parameters {unchanged} did not train"
        assert all(v.dtype == np.float32 for v in end[kind].values())


def test_a_checkpoint_restores_the_weights(trained, tmp_path):
    name, model, _, after, _ = trained
    backend, build, hyper = BUILDERS[name]
    path = model.save(after, tmp_path / "adapters")
    again = adapter_model(backend, build(), **hyper)  # the same construction, new module objects
    loaded = again.load(path)
    saved, restored = numpy_params(model, after), numpy_params(again, loaded)
    assert saved.keys() == restored.keys()
    for kind in saved:
        assert saved[kind].keys() == restored[kind].keys()
        for k in saved[kind]:
            np.testing.assert_array_equal(restored[kind][k], saved[kind][k], err_msg=f"{name} {kind} {k}")
    assert loaded.step == after.step == 2


# ------------------------------------------------------------------ (c) the built-in MLP, reproduced


def builtin_model(backend: str, **hyper) -> rhvae.RHVAE:
    reg = rhvae.get_registry()
    return rhvae.RHVAE(backend, input_dim=D, latent_dim=d, dtype="float64",
                       encoder=reg.create("encoder", "mlp", hidden=(H,)),
                       decoder=reg.create("decoder", "bernoulli_mlp", hidden=(H,)),
                       metric=reg.create("metric", "mlp", hidden=(H,)), **hyper)


def same_elbo(reference: rhvae.RHVAE, ref_state, model: rhvae.RHVAE, state) -> tuple[float, float]:
    x = data(12, seed=1)
    noise = Noise(*np.random.default_rng(2).standard_normal((2, len(x), d)))
    ref_state, state = reference.refresh_metric(ref_state, x), model.refresh_metric(state, x)
    return reference.elbo(ref_state, x, noise=noise), model.elbo(state, x, noise=noise)


@pytest.mark.parametrize("grad_h", ["analytic", "autodiff", "finite"])
def test_a_torch_module_that_is_the_builtin_mlp_gives_its_elbo(grad_h):
    hyper = {"grad_h": grad_h, "K": 2, "steps": 2}
    reference = builtin_model("torch", **hyper)
    ref_state = reference.init(seed=0)
    weights = numpy_params(reference, ref_state)
    nets = torch_nets(reset=False)  # keep the weights loaded here
    for kind, net in nets.items():
        net.module.double().load_state_dict(torch_layout(kind, weights[kind]))
    model = adapter_model("torch", nets, dtype="float64", **hyper)
    state = model.init(seed=0)
    expected, got = same_elbo(reference, ref_state, model, state)
    assert np.isfinite(expected) and abs(got - expected) <= 1e-10 * abs(expected), (got, expected)


@pytest.mark.parametrize("framework", ["flax", "equinox"])
def test_a_jax_module_that_is_the_builtin_mlp_gives_its_elbo(framework):
    hyper = {"K": 2, "steps": 2}  # grad_h="analytic", the default
    reference = builtin_model("jax", probe="shapes", **hyper)
    ref_state = reference.init(seed=0)
    weights = numpy_params(reference, ref_state)
    nets = flax_nets() if framework == "flax" else equinox_nets(weights)
    model = adapter_model("jax", nets, dtype="float64", probe="shapes", **hyper)
    state = model.init(seed=0)
    if framework == "flax":  # a linen module holds no weights: put the built-in's into the state
        params = {kind: flax_layout(kind, weights[kind]) for kind in weights}
        assert shapes(params) == shapes(state.params)
        state = state.replace(params={kind: {k: jnp.asarray(v) for k, v in p.items()} for kind, p in params.items()})
    else:
        adapted = numpy_params(model, state)["encoder"]["hidden0.weight"]
        np.testing.assert_array_equal(adapted, weights["encoder"]["hidden0.w"].T)
    expected, got = same_elbo(reference, ref_state, model, state)
    assert np.isfinite(expected) and abs(got - expected) <= 1e-10 * abs(expected), (got, expected)


# ------------------------------------------------------------------ (b) the forward pass is the module's


def test_torch_forward_is_the_modules_own():
    net = TorchNetwork(TorchHeads(D, HEADS["encoder"]))  # reset: parameters differ from the module's
    params = net.init(np.random.default_rng(3), D, d)
    x = torch.from_numpy(data(5)).float()
    got = net(backend_obj("torch"), {k: torch.from_numpy(v).float() for k, v in params.items()}, x)
    module = TorchHeads(D, HEADS["encoder"])
    module.load_state_dict({k: torch.from_numpy(v).float() for k, v in params.items()})
    with torch.no_grad():
        expected = module(x)
    assert isinstance(got, tuple) and len(got) == 2
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-6, atol=1e-6)


def test_flax_forward_is_the_modules_own():
    import flax.linen as fnn

    module = fnn.Sequential([fnn.Dense(H), fnn.tanh, fnn.Dense(D)])
    net = FlaxNetwork(module, likelihood="gaussian")
    params = net.init(np.random.default_rng(3), d, D)
    variables = module.init(jax.random.key(int(np.random.default_rng(3).integers(2**31 - 1))), jnp.zeros((1, d)))
    z = jnp.asarray(np.random.default_rng(4).standard_normal((5, d)), dtype=jnp.float32)
    (got,) = net(backend_obj("jax"), {k: jnp.asarray(v, dtype=jnp.float32) for k, v in params.items()}, z)
    np.testing.assert_allclose(np.asarray(got), np.asarray(module.apply(variables, z)), rtol=1e-6, atol=1e-6)
    assert sorted(params) == ["layers_0.bias", "layers_0.kernel", "layers_2.bias", "layers_2.kernel"]


def test_equinox_forward_is_the_modules_own_example_by_example():
    net = equinox_nets()["metric"]
    params = net.init(np.random.default_rng(3), D, d)
    x = jnp.asarray(data(5))
    diag, lower = net(backend_obj("jax"), {k: jnp.asarray(v) for k, v in params.items()}, x)
    for i in range(len(x)):  # the module itself, one example at a time
        e_diag, e_lower = net.module(x[i])
        np.testing.assert_allclose(np.asarray(diag[i]), np.asarray(e_diag), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(np.asarray(lower[i]), np.asarray(e_lower), rtol=1e-6, atol=1e-6)
    assert sorted(params) == ["heads.0.bias", "heads.0.weight", "heads.1.bias", "heads.1.weight",
                              "hidden0.bias", "hidden0.weight"]


# ------------------------------------------------------------------ (e) initialisation


def test_torch_reset_draws_from_the_seed_and_leaves_torch_rng_alone():
    module = TorchHeads(D, HEADS["encoder"])
    own = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    net = TorchNetwork(module)
    torch.manual_seed(123)
    rng_state = torch.random.get_rng_state()
    a, a_again, b = (net.init(np.random.default_rng(s), D, d) for s in (1, 1, 2))
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert all(np.array_equal(a[k], a_again[k]) for k in a)
    assert all(not np.array_equal(a[k], b[k]) for k in a)
    assert all(np.array_equal(own[k], v.detach().numpy()) for k, v in module.state_dict().items())  # untouched
    kept = TorchNetwork(module, reset=False).init(np.random.default_rng(1), D, d)
    assert all(np.array_equal(kept[k], own[k]) and kept[k].dtype == np.float64 for k in own)


def test_model_init_differs_across_seeds_with_reset_adapters():
    model = adapter_model("torch", torch_nets())
    one, two = (numpy_params(model, model.init(seed=s)) for s in (1, 2))
    again = numpy_params(model, model.init(seed=1))
    for kind in one:
        assert all(np.array_equal(one[kind][k], again[kind][k]) for k in one[kind])
        assert all(not np.array_equal(one[kind][k], two[kind][k]) for k in one[kind])


def test_flax_init_draws_from_the_seed_and_equinox_keeps_the_modules_arrays():
    net = flax_nets()["encoder"]
    a, a_again, b = (net.init(np.random.default_rng(s), D, d) for s in (1, 1, 2))
    assert all(np.array_equal(a[k], a_again[k]) for k in a)
    assert all(not np.array_equal(a[k], b[k]) for k in a if k.endswith("kernel"))  # flax's biases start at 0
    eq = equinox_nets()["encoder"]
    for seed in (1, 2):
        params = eq.init(np.random.default_rng(seed), D, d)
        np.testing.assert_array_equal(params["hidden0.weight"], np.asarray(eq.module.hidden0.weight))


# ------------------------------------------------------------------ (f) refusals and contracts


def test_torch_refusals_name_the_argument():
    with pytest.raises(InputTypeError, match=r"module must be a torch.nn.Module; got function"):
        TorchNetwork(lambda x: x)
    with pytest.raises(InputError, match=r"module Sequential has buffers \['1.running_mean'.*GroupNorm or LayerNorm"):
        TorchNetwork(nn.Sequential(nn.Linear(D, H), nn.BatchNorm1d(H)))
    with pytest.raises(InputError, match=r"module ReLU has no parameters"):
        TorchNetwork(nn.ReLU())
    with pytest.raises(InputError, match=r"likelihood must be one of \['bernoulli', .*got 'bernouli'"):
        TorchNetwork(nn.Linear(d, D), likelihood="bernouli")
    with pytest.raises(InputTypeError, match=r"likelihood must be a name or an object .*got int"):
        TorchNetwork(nn.Linear(d, D), likelihood=3)


def test_jax_refusals_name_the_argument():
    import equinox as eqx
    import flax.linen as fnn

    with pytest.raises(InputTypeError, match=r"module must be a flax.linen.Module; got Linear"):
        FlaxNetwork(nn.Linear(D, H))
    with pytest.raises(InputTypeError, match=r"module must be an equinox.Module; got Dense"):
        EquinoxNetwork(fnn.Dense(H))
    rng = np.random.default_rng(0)
    batch_norm = FlaxNetwork(fnn.Sequential([fnn.Dense(H), fnn.BatchNorm(use_running_average=True)]))
    with pytest.raises(InputError, match=r"collections \['batch_stats'\] besides 'params'.*GroupNorm or LayerNorm"):
        batch_norm.init(rng, D, d)
    with pytest.raises(InputError, match=r"module Sequential has no parameters"):
        FlaxNetwork(fnn.Sequential([fnn.relu, fnn.tanh])).init(rng, D, d)
    with pytest.raises(InputError, match=r"module Sequential holds eqx.nn.State.*GroupNorm or LayerNorm"):
        EquinoxNetwork(eqx.nn.Sequential([eqx.nn.Linear(D, H, key=jax.random.key(0)),
                                          eqx.nn.BatchNorm(H, "batch", mode="batch")]))
    with pytest.raises(InputError, match=r"module Lambda has no floating-point arrays"):
        EquinoxNetwork(eqx.nn.Lambda(jax.nn.relu))


@pytest.mark.parametrize("backend, nets", [("jax", torch_nets), ("torch", flax_nets), ("torch", equinox_nets)],
                         ids=["torch-on-jax", "flax-on-torch", "equinox-on-torch"])
def test_an_adapter_on_the_other_backend_is_refused_by_name(backend, nets):
    """Refused when the model is built, before any probe (so also with ``probe="off"``)."""
    other = "jax" if backend == "torch" else "torch"
    with pytest.raises(BackendUnavailableError, match=rf"runs on the {other} backend only; this model's backend "
                                                      rf"is '{backend}'"):
        adapter_model(backend, nets(), probe="off")


def test_output_contracts():
    with pytest.raises(ProtocolError, match="missing likelihood"):  # a decoder needs its likelihood
        adapter_model("torch", {**torch_nets(), "decoder": TorchNetwork(nn.Sequential(nn.Linear(d, D)))})
    assert not hasattr(torch_nets()["encoder"], "likelihood")
    with pytest.raises(ComponentError, match=r"returned one Tensor; expected a pair: \(mu, log_sigma\) for an enc"):
        adapter_model("torch", {**torch_nets(), "encoder": TorchNetwork(nn.Linear(D, 2 * d))})
    two_outputs = TorchNetwork(nn.Linear(d, D), likelihood="gaussian_logscale")
    with pytest.raises(ComponentError, match=r"returned one Tensor; expected a tuple of 2 tensors \(a decoder for "
                                             r"GaussianLogScale\(\)\)"):
        adapter_model("torch", {**torch_nets(), "decoder": two_outputs})
    with pytest.raises(ComponentError, match=r"output 0 of shape \(\d+, 7\); expected \(\d+, 10\)"):  # by the probe
        adapter_model("torch", {**torch_nets(), "decoder": TorchNetwork(nn.Linear(d, 7), likelihood="bernoulli")})
    assert repr(torch_nets()["decoder"]) == "TorchNetwork(Sequential, likelihood=Bernoulli())"


def test_packages_export_the_adapters_without_importing_frameworks():
    code = ("import sys, rhvae_torch, rhvae_jax; heavy = sorted(m for m in ('torch', 'jax', 'flax', 'equinox') "
            "if m in sys.modules); assert not heavy, heavy; "
            "from rhvae_torch import TorchNetwork; assert 'torch' in sys.modules and 'jax' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    import rhvae_jax.adapters
    import rhvae_torch.adapters

    assert TorchNetwork is rhvae_torch.adapters.TorchNetwork and FlaxNetwork is rhvae_jax.adapters.FlaxNetwork


# ------------------------------------------------------------------ docs/networks.md

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "networks.md"
GUIDE_BLOCKS = [(GUIDE.read_text(encoding="utf-8").count("\n", 0, m.start()) + 1, m.group(1))
                for m in re.finditer(r"^```python\n(.*?)^```$", GUIDE.read_text(encoding="utf-8"),
                                     flags=re.DOTALL | re.MULTILINE)]


@pytest.mark.parametrize("line, code", [
    pytest.param(line, code, id=f"line{line}", marks=[] if "rhvae_torch" in code else [pytest.mark.slow])
    for line, code in GUIDE_BLOCKS])  # compiling a JAX training step takes about 8 s per block
def test_the_networks_guide_runs(monkeypatch, line, code):
    module = types.ModuleType("docs_networks")  # dataclasses (flax, equinox) look their module up
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile("\n" * line + code, str(GUIDE), "exec"), module.__dict__)  # tracebacks cite the guide


def test_the_networks_guide_has_an_example_per_adapter():
    assert [next(n for n in ("TorchNetwork", "FlaxNetwork", "EquinoxNetwork") if n in code)
            for _, code in GUIDE_BLOCKS] == ["TorchNetwork", "FlaxNetwork", "EquinoxNetwork"]
