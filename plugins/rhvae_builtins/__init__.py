"""The built-in components of rhvae, registered through the same hook as any third party.

All are neutral (written over ``B.xp``), hence available on every backend.
"""

import rhvae

_M = "rhvae_builtins"


@rhvae.hookimpl
def rhvae_register(registry):
    add = registry.add
    add("encoder", "mlp", f"{_M}.nets:MLPEncoder", doc="MLP encoder x -> (mu, log sigma); hidden=(512,)")
    add("decoder", "bernoulli_mlp", f"{_M}.decoders:bernoulli_mlp", doc="MLP decoder, Bernoulli likelihood on logits")
    add("decoder", "gaussian_mlp", f"{_M}.decoders:gaussian_mlp", doc="MLP decoder, Gaussian likelihood with fixed sigma")
    add("decoder", "gaussian_logscale_mlp", f"{_M}.decoders:gaussian_logscale_mlp",
        doc="MLP decoder, Gaussian likelihood with learned per-feature log sigma")
    add("metric", "mlp", f"{_M}.nets:MLPMetric", doc="MLP metric network x -> L(x); hidden=(400,)")
    add("encoder", "conv", f"{_M}.conv:ConvEncoder", doc="convolutional encoder for (C, H, W) images; channels=(32, 64)")
    for likelihood in ("bernoulli", "gaussian", "gaussian_logscale"):
        add("decoder", f"{likelihood}_conv", f"{_M}.decoders:{likelihood}_conv",
            doc=f"transposed-convolution decoder, {likelihood} likelihood; channels=(64, 32)")
    add("metric", "conv", f"{_M}.conv:ConvMetric", doc="convolutional metric network (C, H, W) -> L(x)")
    add("prior", "spherical", f"{_M}.priors:Spherical", doc="standard normal N(0, I)")
    add("tempering", "quadratic", f"{_M}.tempering:Quadratic", doc="1/sqrt(beta_k) quadratic in k/K, beta_K = 1")
    add("tempering", "none", f"{_M}.tempering:Constant", doc="constant beta0: no momentum rescaling")
    add("grad_h", "autodiff", f"{_M}.grad_h:Autodiff", doc="torch.func.grad / jax.grad partial derivatives")
    add("grad_h", "analytic", f"{_M}.grad_h:Analytic",
        doc="closed form: G^-1 rho, contractions over centroids, one decoder VJP")
    add("grad_h", "finite", f"{_M}.grad_h:FiniteDifference", doc="central finite differences, step cbrt(eps)")
    add("integrator", "implicit", "rhvae.math.leapfrog:GeneralizedLeapfrog",
        doc="the paper's generalized leapfrog: implicit updates by guarded fixed-point iterations")
    add("integrator", "aetk", "rhvae.math.aetk:FrozenLeapfrog",
        doc="AutoEncoderToolkit.jl's leapfrog: frozen likelihood and metric, accumulating updates")
