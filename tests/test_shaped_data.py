"""Image-shaped data ``(B, C, H, W)`` and the convolutional built-ins.

The convolutions are checked against an independent numpy computation and against each other
through their defining property (the transposed convolution is the adjoint of the convolution);
the image models against the flat ones they must equal, and torch against jax.
"""

from __future__ import annotations

import numpy as np
import pytest

import rhvae
from rhvae.state import Noise
from rhvae.testing import normwise_error, numpy_conv2d
from rhvae.tree import flatten
from rhvae_builtins.conv import ConvDecoder, conv_size
from rhvae_builtins.likelihoods import Bernoulli, GaussianLogScale


def _backend(name: str, device: str = "cpu"):
    return rhvae.get_registry().create("backend", name, device=device)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (4, 2, 1), (3, 2, 0), (5, 3, 2), (3, 3, 0)])
def test_conv2d_matches_numpy_and_its_transpose_is_the_adjoint(backend, kernel, stride, padding, rng):
    B = _backend(*backend)
    x = rng.standard_normal((2, 3, 9, 8))
    w = rng.standard_normal((4, 3, kernel, kernel))
    y = B.to_numpy(B.conv2d(B.asarray(x, "float64"), B.asarray(w, "float64"), stride, padding))
    np.testing.assert_allclose(y, numpy_conv2d(x, w, stride, padding), rtol=1e-12, atol=1e-12)
    # <conv(x), u> = <x, convᵀ(u)>: the output padding restores the input's size exactly
    u = rng.standard_normal(y.shape)
    pad = tuple(s - ((o - 1) * stride - 2 * padding + kernel) for s, o in zip(x.shape[2:], y.shape[2:]))
    back = B.to_numpy(B.conv_transpose2d(B.asarray(u, "float64"), B.asarray(w, "float64"), stride, padding, pad))
    assert back.shape == x.shape
    np.testing.assert_allclose(np.vdot(y, u), np.vdot(x, back), rtol=1e-12)


def _conv_model(name, dtype="float64", device="cpu", **hyper):
    """Small conv networks (4 and 8 channels): what is checked does not depend on the width."""
    reg = rhvae.get_registry()  # created by name, so a checkpoint can rebuild them
    return rhvae.RHVAE(name, device=device, input_dim=(1, 12, 12), latent_dim=2,
                       encoder=reg.create("encoder", "conv", channels=(4, 8)),
                       decoder=reg.create("decoder", "bernoulli_conv", channels=(8, 4)),
                       metric=reg.create("metric", "conv", channels=(4,)), K=1, steps=2, dtype=dtype, **hyper)


def _images(n=6, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 1, 12, 12))


def test_conv_model_torch_jax_parity():
    """ELBO, loss and every parameter gradient of a conv encoder/decoder/metric model, float64."""
    x = _images()
    noise = Noise(*np.random.default_rng(1).standard_normal((2, 6, 2)))
    out = {}  # (elbo, loss, gradient)
    for name in ("torch", "jax"):
        model = _conv_model(name)
        state = model.init(seed=0, centroids=x)
        loss, grads = model.loss_and_grad(state, x, noise=noise)
        out[name] = (model.elbo(state, x, noise=noise), loss,
                     np.concatenate([np.asarray(v).ravel() for _, v in sorted(flatten(grads))]))
    assert abs(out["torch"][0] - out["jax"][0]) <= 1e-10 * abs(out["torch"][0])
    assert abs(out["torch"][1] - out["jax"][1]) <= 1e-10 * abs(out["torch"][1])
    assert normwise_error(out["torch"][2], out["jax"][2]) <= 1e-10


def test_images_through_an_mlp_equal_the_flat_rows(backend):
    """An MLP model on ``(B, 1, 4, 4)`` images is the flat model on ``(B, 16)`` rows: same
    parameters, same ELBO, NLL and decoded shape."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (8, 1, 4, 4))
    noise = Noise(*rng.standard_normal((2, 8, 2)))
    kw = dict(latent_dim=2, K=1, steps=1, dtype="float64", device=backend[1])
    image = rhvae.RHVAE(backend[0], input_dim=(1, 4, 4), **kw)
    flat = rhvae.RHVAE(backend[0], input_dim=16, **kw)
    si, sf = image.init(seed=3, centroids=x), flat.init(seed=3, centroids=x.reshape(8, 16))
    assert image.elbo(si, x, noise=noise) == pytest.approx(flat.elbo(sf, x.reshape(8, 16), noise=noise), rel=1e-12)
    np.testing.assert_allclose(image.nll(si, x[:2], n_samples=4, seed=1, progress=False),
                               flat.nll(sf, x[:2].reshape(2, 16), n_samples=4, seed=1, progress=False), rtol=1e-12)
    assert image.decode(si, np.zeros((3, 2))).shape == (3, 1, 4, 4)


# JAX compiles each of the five functions for about 6 s on 2 cores: its variant runs under -m slow
@pytest.mark.parametrize("backend", [("torch", "cpu"), pytest.param(("jax", "cpu"), marks=pytest.mark.slow)],
                         ids=["torch", "jax"])
def test_conv_model_trains_samples_saves_and_reads_memory_mapped_images(backend, tmp_path):
    x = _images(24).astype("float32")
    model = _conv_model(backend[0], dtype="float32", device=backend[1])
    start = model.init(seed=0)
    state, history = model.fit(start, x, epochs=2, batch_size=8, progress=False)
    assert np.isfinite(history["loss"]).all()
    assert all(not np.array_equal(model.backend.to_numpy(v), model.backend.to_numpy(start.params[k][n]))
               for k, p in state.params.items() for n, v in p.items())
    np.save(tmp_path / "x.npy", x)
    state, _ = model.fit(state, str(tmp_path / "x.npy"), epochs=1, batch_size=8, progress=False)
    drawn = model.sample(state, 3, transitions=2, warmup=2, progress=False)
    assert drawn.x.shape == (3, 1, 12, 12)
    path = model.save(state, tmp_path / "conv.npz")
    loaded_model, loaded = rhvae.load(path)
    assert loaded_model.config.input_shape == (1, 12, 12)
    assert loaded_model.elbo(loaded, x, seed=2) == pytest.approx(model.elbo(state, x, seed=2), rel=1e-6)


@pytest.mark.parametrize("side", [28, 13, 9])
@pytest.mark.parametrize("kernel, stride, padding", [(4, 2, 1), (3, 2, 1), (5, 2, 2)])
def test_conv_decoder_lands_on_every_image_side(side, kernel, stride, padding):
    """The planned side before each transposed convolution, pushed forward with its output
    padding, gives back the image's side exactly."""
    decoder = ConvDecoder(Bernoulli(), channels=(4, 4, 4), kernel=kernel, stride=stride, padding=padding)
    layers = decoder._sides(side)
    s = layers[0][0]
    for before, pad in layers:
        assert before == s and 0 <= pad < stride
        s = (s - 1) * stride - 2 * padding + kernel + pad
    assert s == side


def _torch_decoder_reference(params: dict, z: np.ndarray, channels, side: int, kernel: int) -> tuple:
    """torch's own layers in float64: ``fc``, then ``conv_transpose2d`` with ReLU between layers (none
    after ``fc``, as pythae's MNIST decoder); the logits and the gradient of ``Σ logits · v``."""
    import torch
    import torch.nn.functional as F

    t = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in params.items()}
    layers = ConvDecoder(Bernoulli(), channels=channels, kernel=kernel)._sides(side)
    x = (torch.tensor(z) @ t["fc.w"] + t["fc.b"]).reshape(len(z), channels[0], layers[0][0], layers[0][0])
    for i, (_, pad) in enumerate(layers):
        last = i == len(layers) - 1
        x = F.conv_transpose2d(x, t[f"deconv{i}.w"], None if last else t[f"deconv{i}.b"], 2, 1, pad)
        x = x + t[f"deconv{i}.b"] if last else torch.relu(x)
    v = torch.tensor(np.random.default_rng(5).standard_normal(x.shape))
    grads = torch.autograd.grad((x * v).sum(), list(t.values()))
    return x.detach().numpy(), {k: g.numpy() for k, g in zip(t, grads)}, v.numpy()


@pytest.mark.parametrize("channels", [(6, 4, 3), (5,)])
def test_conv_decoder_is_the_layer_stack_in_every_form(backend, channels, rng):
    """The stem (linear layer, first transposed convolution) runs per row for a batch of at most
    ``d + 1``, folded into one linear map ``z A + c`` for larger ones, or from ``precompute``: each
    gives torch's layers' logits and parameter gradients in float64."""
    B = _backend(*backend)
    decoder = ConvDecoder(Bernoulli(), channels=channels, kernel=3)
    params = decoder.init(rng, 3, (1, 14, 14))
    z = rng.standard_normal((9, 3))

    def logits_and_grads(p, rows, V, precompute):
        def logits(q):
            return decoder(B, decoder.precompute(B, q) if precompute else q, rows)[0]
        return logits(p), B.grad(lambda q: B.xp.sum(logits(q) * V))(p)

    run = {flag: B.jit(lambda p, rows, V, flag=flag: logits_and_grads(p, rows, V, flag)) for flag in (False, True)}
    P = {k: B.asarray(a, "float64") for k, a in params.items()}
    forms = {"per row": (z[:4], False), "folded": (z, False), "precomputed": (z, True),
             "precomputed, one row": (z[:1], True)}
    for form, (rows, precompute) in forms.items():
        reference, reference_grads, v = _torch_decoder_reference(params, rows, channels, 14, 3)
        out, grads = run[precompute](P, B.asarray(rows, "float64"), B.asarray(v, "float64"))
        np.testing.assert_allclose(B.to_numpy(out), reference, rtol=1e-12, atol=1e-12, err_msg=form)
        for k, g in grads.items():
            np.testing.assert_allclose(B.to_numpy(g), reference_grads[k], rtol=1e-10, atol=1e-12,
                                       err_msg=f"{form}: {k}")


def test_a_flow_precomputes_the_decoder_once():
    """K = 3 decodes four positions; ``precompute`` runs once for them (on torch, run eagerly)."""
    calls = {"precompute": 0, "precomputed": 0, "as given": 0}

    class Counting(ConvDecoder):
        def precompute(self, B, params):
            calls["precompute"] += 1
            return super().precompute(B, params)

        def __call__(self, B, params, z):
            calls["precomputed" if "stem.A" in params else "as given"] += 1
            return super().__call__(B, params, z)

    model = rhvae.RHVAE("torch", input_dim=(1, 12, 12), latent_dim=2, encoder="conv", metric="conv",
                        decoder=Counting(Bernoulli(), channels=(8, 4)), K=3, steps=2, compile=False)
    state = model.init(seed=0, centroids=_images())
    calls.update(dict.fromkeys(calls, 0))
    model.elbo(state, _images(), seed=1)
    assert calls == {"precompute": 1, "precomputed": 4, "as given": 0}


def test_check_component_catches_a_precompute_that_changes_the_outputs():
    from rhvae.testing import check_component

    class Shifted(ConvDecoder):
        def precompute(self, B, params):
            precomputed = super().precompute(B, params)
            return {**precomputed, "stem.c": precomputed["stem.c"] + 1e-3}

    with pytest.raises(AssertionError, match="precomputed outputs, flat vs outputs, flat"):
        check_component("decoder", Shifted(Bernoulli(), channels=(4, 2)), input_shape=(1, 8, 8), dtype="float32")


def test_pythae_mnist_architecture_is_reachable():
    """pythae's Decoder_Conv_AE_MNIST: a linear layer to 1024 maps of 4×4, then kernel 3, stride 2,
    padding 1 (output paddings 0, 1, 1) to 28×28; its encoder's 4 layers take 28 to 1."""
    layers = ConvDecoder(Bernoulli(), channels=(1024, 512, 256), kernel=3)._sides(28)
    assert layers == [(4, 0), (7, 1), (14, 1)]
    side = 28
    for _ in range(4):
        side = conv_size(side, 4, 2, 1)
    assert side == 1


def test_gaussian_logscale_conv_splits_its_outputs():
    decoder = ConvDecoder(GaussianLogScale(), channels=(4,), kernel=4)
    B = _backend("torch")
    params = {k: B.asarray(v, "float32") for k, v in decoder.init(np.random.default_rng(0), 2, (3, 8, 8)).items()}
    mu, log_sigma = decoder(B, params, B.asarray(np.zeros((5, 2)), "float32"))
    assert tuple(mu.shape) == tuple(log_sigma.shape) == (5, 3, 8, 8)


def test_wrong_shapes_are_named():
    model = _conv_model("torch", dtype="float32")
    state = model.init(seed=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 1, 12, 12\).*x.reshape\(len\(x\), 1, 12, 12\)"):
        model.elbo(state, np.zeros((4, 144), np.float32))
    with pytest.raises(ValueError, match="convolutional network needs images"):
        rhvae.RHVAE("torch", input_dim=144, latent_dim=2, encoder="conv")
    with pytest.raises(ValueError, match=r"input_dim\[1\] must be >= 1"):
        rhvae.RHVAE("torch", input_dim=(1, 0, 12), latent_dim=2)


def test_figures_draw_grey_square_images_and_refuse_others():
    from rhvae.figures import square_side

    assert [square_side(np.zeros(s)) for s in ((2, 64), (2, 1, 8, 8), (2, 8, 8))] == [8, 8, 8]
    assert [square_side(np.zeros(s)) for s in ((2, 63), (2, 3, 8, 8), (2, 1, 8, 6), (2, 4, 4, 4))] == [None] * 4


@pytest.mark.parametrize("kind, name, options", [("encoder", "conv", {"channels": (2, 4)}),
                                                 ("metric", "conv", {"channels": (2, 4)}),
                                                 ("decoder", "bernoulli_conv", {"channels": (4, 2)}),
                                                 ("decoder", "gaussian_mlp", {"hidden": (5,)})])
def test_check_component_takes_image_shaped_examples(kind, name, options):
    from rhvae.testing import check_component

    out = check_component(kind, rhvae.get_registry().create(kind, name, **options), input_shape=(1, 8, 8))
    if kind == "decoder":  # a flat MLP decoder's outputs are reshaped as the model reshapes them
        assert {v.shape for k, v in out["torch"].items() if k.startswith("outputs[") or k == "likelihood.mean"} \
            == {(5, 1, 8, 8)}


def test_check_component_names_a_decoder_that_misses_the_image_shape():
    """A decoder that always draws 8×8 images fails the check for 8×9 examples, by name."""
    from rhvae.testing import check_component

    class EightByEight:
        likelihood = Bernoulli()

        def init(self, rng, latent_dim, output_dim):
            return {"W": rng.standard_normal((latent_dim, 64))}

        def __call__(self, B, params, z):
            return (z @ params["W"],)

    check_component("decoder", EightByEight(), input_shape=(1, 8, 8))
    with pytest.raises(AssertionError, match="decoder EightByEight on torch: the call raised"):
        check_component("decoder", EightByEight(), input_shape=(1, 8, 9))
