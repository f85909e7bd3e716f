"""Convolutional encoder, decoder and metric network for images ``(B, C, H, W)``, written once over
the backend's ``conv2d``/``conv_transpose2d`` (channels first, kernels ``(out, in, k, k)``).

The defaults suit 28×28 MNIST on a CPU (two stride-2 layers of 32 and 64 channels). pythae's
MNIST architecture (``Encoder_Conv_VAE_MNIST``/``Decoder_Conv_AE_MNIST``) has the layer sizes of
``ConvEncoder(channels=(128, 256, 512, 1024))`` with ``ConvDecoder(channels=(1024, 512, 256),
kernel=3)``; two differences remain: no batch norm here (a functional step carries no running
statistics), and one bias per output pixel in the last layer (pythae: one per channel). Layers
are initialised as torch's ``nn.Conv2d``/``nn.ConvTranspose2d`` are, ``U(±1/√fan_in)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from rhvae.errors import InputError
from rhvae.interfaces import Array, Backend, Likelihood, Params


def _uniform(rng: np.random.Generator, fan_in: int, weight_shape: tuple[int, ...], n_bias: int):
    bound = 1.0 / math.sqrt(fan_in)
    return rng.uniform(-bound, bound, size=weight_shape), rng.uniform(-bound, bound, size=n_bias)


def _image_shape(dim, role: str) -> tuple[int, int, int]:
    if not (isinstance(dim, tuple) and len(dim) == 3):
        raise InputError(f"a convolutional {role} needs images: input_dim/output_dim must be a shape "
                         f"(channels, height, width); got {dim!r}")
    return dim


def conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """The side after one convolution: ``⌊(size + 2p - k)/s⌋ + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


class _Conv:
    """Settings shared by the three networks: ``channels`` per layer, square ``kernel``, ``stride``,
    ``padding`` and the ``activation`` after every layer but the output (and, in the decoder, but
    the linear layer)."""

    def __init__(self, channels: Sequence[int], kernel: int, stride: int, padding: int, activation: str) -> None:
        self.channels = tuple(int(c) for c in channels)
        if not self.channels or any(c < 1 for c in self.channels):
            raise InputError(f"channels must be a non-empty sequence of positive integers; got {channels!r}")
        if not (kernel >= 1 and stride >= 1 and 0 <= padding < kernel):
            raise InputError(f"need kernel >= 1, stride >= 1 and 0 <= padding < kernel; got kernel={kernel}, "
                             f"stride={stride}, padding={padding}")
        self.kernel, self.stride, self.padding, self.activation = int(kernel), int(stride), int(padding), activation

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(channels={self.channels}, kernel={self.kernel}, stride={self.stride}, "
                f"padding={self.padding}, activation={self.activation!r})")


class _ConvTrunk(_Conv):
    """``x (B, C, H, W)`` through ``conv → act`` layers, flattened, then linear heads."""

    def __init__(self, channels: Sequence[int] = (32, 64), kernel: int = 4, stride: int = 2, padding: int = 1,
                 activation: str = "relu") -> None:
        super().__init__(channels, kernel, stride, padding, activation)

    def _init(self, rng: np.random.Generator, input_dim, heads: dict[str, int]) -> dict[str, np.ndarray]:
        c_in, h, w = _image_shape(input_dim, "network")
        k, params = self.kernel, {}
        for i, c_out in enumerate(self.channels):
            params[f"conv{i}.w"], params[f"conv{i}.b"] = _uniform(rng, c_in * k * k, (c_out, c_in, k, k), c_out)
            c_in, h, w = c_out, *(conv_size(s, k, self.stride, self.padding) for s in (h, w))
            if h < 1 or w < 1:
                raise InputError(f"{self!r} shrinks {input_dim} to nothing at layer {i}; use fewer layers")
        for name, n_out in heads.items():
            W, b = _uniform(rng, c_in * h * w, (c_in * h * w, n_out), n_out)
            params[f"{name}.w"], params[f"{name}.b"] = W, b
        return params

    def _apply(self, B: Backend, params: Params, x: Array, heads: Sequence[str]) -> tuple[Array, ...]:
        act = B.activation(self.activation)
        h = x
        for i in range(len(self.channels)):
            h = act(B.conv2d(h, params[f"conv{i}.w"], self.stride, self.padding) + params[f"conv{i}.b"][:, None, None])
        h = h.reshape(h.shape[0], -1)
        return tuple(h @ params[f"{name}.w"] + params[f"{name}.b"] for name in heads)


class ConvEncoder(_ConvTrunk):
    """``x (B, C, H, W) -> (μ, log σ)``: a convolutional trunk and two linear heads."""

    def init(self, rng: np.random.Generator, input_dim, latent_dim: int) -> dict[str, np.ndarray]:
        return self._init(rng, input_dim, {"mu": latent_dim, "log_sigma": latent_dim})

    def __call__(self, B: Backend, params: Params, x: Array) -> tuple[Array, Array]:
        return self._apply(B, params, x, ("mu", "log_sigma"))


class ConvMetric(_ConvTrunk):
    """``x (B, C, H, W) -> (diag (d,), lower (d(d-1)/2,))``, the raw entries of ``L(x)``."""

    def init(self, rng: np.random.Generator, input_dim, latent_dim: int) -> dict[str, np.ndarray]:
        return self._init(rng, input_dim, {"diag": latent_dim, "lower": latent_dim * (latent_dim - 1) // 2})

    def __call__(self, B: Backend, params: Params, x: Array) -> tuple[Array, Array]:
        return self._apply(B, params, x, ("diag", "lower"))


class ConvDecoder(_Conv):
    """``z -> outputs (B, C, H, W)``: a linear layer to ``channels[0]`` maps of side ``s_0``, then
    transposed convolutions through ``channels[1:]`` to ``C × n_outputs`` maps of side ``H × W``
    (split into the likelihood's outputs), with the activation between transposed convolutions
    but none after the linear layer (as pythae's); the last layer has one bias per pixel, whose
    shape ``(C n_outputs, H, W)`` also tells the decoder its image size.

    The sides run backwards from the image, ``s_{l-1} = ⌊(s_l + 2p - k)/s⌋ + 1``, and each layer's
    ``output_padding = s_l - ((s_{l-1} - 1)s - 2p + k)`` makes it land exactly on ``s_l``.
    """

    def __init__(self, likelihood: Likelihood, channels: Sequence[int] = (64, 32), kernel: int = 4, stride: int = 2,
                 padding: int = 1, activation: str = "relu") -> None:
        super().__init__(channels, kernel, stride, padding, activation)
        self.likelihood = likelihood

    def __repr__(self) -> str:
        return f"ConvDecoder({self.likelihood!r}, {super().__repr__().split('(', 1)[1]}"

    def _sides(self, image_side: int) -> list[tuple[int, int]]:
        """``(s_{l-1}, output_padding_l)`` for each transposed convolution, first layer first."""
        k, s, p, layers, side = self.kernel, self.stride, self.padding, [], image_side
        for layer in range(len(self.channels), 0, -1):
            before = conv_size(side, k, s, p)
            pad = side - ((before - 1) * s - 2 * p + k)
            if before < 1 or not 0 <= pad < s:
                raise InputError(f"{self!r} cannot produce images of side {image_side}: its layer {layer} would "
                                 f"need side {before} to make {side}; change kernel/stride/padding or use fewer "
                                 f"layers")
            layers.append((before, pad))
            side = before
        return layers[::-1]

    def init(self, rng: np.random.Generator, latent_dim: int, output_dim) -> dict[str, np.ndarray]:
        c, h, w = _image_shape(output_dim, "decoder")
        h0, w0 = self._sides(h)[0][0], self._sides(w)[0][0]
        k, params, n_fc = self.kernel, {}, self.channels[0] * h0 * w0
        params["fc.w"], params["fc.b"] = _uniform(rng, latent_dim, (latent_dim, n_fc), n_fc)
        widths = [*self.channels, c * self.likelihood.n_outputs]
        for i, (c_in, c_out) in enumerate(zip(widths[:-1], widths[1:])):
            params[f"deconv{i}.w"], params[f"deconv{i}.b"] = _uniform(rng, c_out * k * k, (c_in, c_out, k, k), c_out)
        last = f"deconv{len(self.channels) - 1}.b"
        params[last] = np.broadcast_to(params[last][:, None, None], (widths[-1], h, w)).copy()
        return params

    def precompute(self, B: Backend, params: Params) -> Params:
        """``params`` with the stem's linear map ``(A, c)`` (:meth:`_stem`) added, computed once for
        all the calls of one evaluation (the leapfrog decodes ``K + 1`` positions): the gradient
        through the first transposed convolution is then taken once, not once per call."""
        A, c = self._stem_map(B, params)
        return {**params, "stem.A": A, "stem.c": c}

    def __call__(self, B: Backend, params: Params, z: Array) -> tuple[Array, ...]:
        act, n = B.activation(self.activation), len(self.channels)
        c_out, h, w = params[f"deconv{n - 1}.b"].shape
        x = self._stem(B, params, z)
        for i, ((_, pad_h), (_, pad_w)) in enumerate(zip(self._sides(h)[1:], self._sides(w)[1:]), start=1):
            bias = params[f"deconv{i}.b"]
            x = B.conv_transpose2d(act(x), params[f"deconv{i}.w"], self.stride, self.padding, (pad_h, pad_w)) \
                + (bias if i == n - 1 else bias[:, None, None])
        per = c_out // self.likelihood.n_outputs
        return tuple(x[:, j * per:(j + 1) * per] for j in range(self.likelihood.n_outputs))

    def _first_layer(self, B: Backend, params: Params) -> tuple[Callable[[Array], Array], Array]:
        """The first transposed convolution as a function of the linear layer's output ``(N, n_fc)``,
        and its bias (per channel, or per pixel when it is also the last layer)."""
        _, h, w = params[f"deconv{len(self.channels) - 1}.b"].shape
        (h0, pad_h), (w0, pad_w) = self._sides(h)[0], self._sides(w)[0]
        bias = params["deconv0.b"]

        def conv_t(u: Array) -> Array:
            return B.conv_transpose2d(u.reshape(u.shape[0], self.channels[0], h0, w0), params["deconv0.w"],
                                      self.stride, self.padding, (pad_h, pad_w))

        return conv_t, bias if len(self.channels) == 1 else bias[:, None, None]

    def _stem_map(self, B: Backend, params: Params) -> tuple[Array, Array]:
        """``(A, c)`` with ``A = convT(W)`` (the rows of ``W`` as ``d`` images) and ``c = convT(b) + β``."""
        conv_t, bias = self._first_layer(B, params)
        return conv_t(params["fc.w"]), conv_t(params["fc.b"][None])[0] + bias

    def _stem(self, B: Backend, params: Params, z: Array) -> Array:
        """The linear layer and the first transposed convolution, ``convT(z W + b) + β``. With
        nothing between them (as in pythae's MNIST decoder) they are one linear map of ``z``,
        ``z A + c``: ``d + 1`` images through the convolution instead of the batch's, the cheaper
        form for a batch larger than ``d + 1`` or when :meth:`precompute` has made ``(A, c)``."""
        d = params["fc.w"].shape[0]
        if "stem.A" in params:
            A, c = params["stem.A"], params["stem.c"]
        elif z.shape[0] > d + 1:
            A, c = self._stem_map(B, params)
        else:
            conv_t, bias = self._first_layer(B, params)
            return conv_t(z @ params["fc.w"] + params["fc.b"]) + bias
        return (z @ A.reshape(d, -1)).reshape(z.shape[0], *A.shape[1:]) + c
