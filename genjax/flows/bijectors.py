"""Invertible maps with their log-determinants, as pure functions of arrays and parameters.

Every bijector here is a pair of functions on a batch, with parameters passed in:

    y, logdet = forward(params, x)      # x [B, ...] -> y [B, ...], logdet [B] = log|det dy/dx|
    x, logdet = inverse(params, y)      # logdet [B] = log|det dx/dy| = -forward's at x

Conditional flows (flowjax's ``condition=``): every bijector here also takes a keyword
``condition`` [B, ...] (e.g. a one-hot class, `genjax.conditioning.one_hot`), the same for
both directions. The coupling layers (and `genjax.flows.autoregressive`) hand it to their
conditioner as a third argument, conditioner(params, x_masked, condition); the others
accept and ignore it, so a `chain` passes one condition to all of its bijectors. With
``condition=None`` (the default) the conditioner is called with two arguments, exactly
as an unconditional flow: nothing changes, bit for bit.

so that a flow f that maps data to noise (the convention of `genjax.models.flow`) has
log p(x) = log p_Z(f(x)) + log|det df/dx|, the forward log-determinants summed over a
`chain`; sampling runs the inverses. Log-determinants are in nats, per example. The tests check every one:
inverse(forward(x)) = x, and the log-determinant equals `slogdet` of the Jacobian that
`jax.jacfwd` computes on small inputs.

* `affine_coupling` (RealNVP, Dinh et al. 2017): the masked half of x passes unchanged and
  conditions a shift t and log-scale s for the rest: y = m x + (1 - m)(x e^s + t); with
  `checkerboard_mask` or `channel_mask`.
* `coupling`: the same with any element-wise transformer (`genjax.flows.transformers`:
  affine, or the rational-quadratic spline of `genjax.flows.splines`).
* `actnorm` (Glow, Kingma & Dhariwal 2018): y = (x + b) e^{log_s} per channel, with the
  data-dependent initialisation `actnorm_init` (zero mean, unit variance on a batch).
* `conv1x1` (Glow's invertible 1x1 convolution) in the LU parameterisation
  W = P L (U + diag(sign * e^{log_s})), whose log-determinant is H W sum(log_s): O(C).
* `permute` (a fixed permutation of the last axis) and `squeeze` ([B, H, W, C] ->
  [B, H/2, W/2, 4C], RealNVP's space-to-channel reshaping), both volume-preserving.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Bijector = tuple[Callable, Callable]     # (forward, inverse), each (params, x) -> (y, logdet)


def _per_example(a):
    """Sum over every axis but the first: [B, ...] -> [B]."""
    return a.reshape(a.shape[0], -1).sum(-1)


# ----------------------------------------------------------------------- affine coupling

def checkerboard_mask(height: int, width: int, channels: int = 1, *, parity: int = 0):
    """[H, W, C] float mask, 1 where (i + j + parity) is even: RealNVP's spatial
    checkerboard (the masked pixels pass through unchanged)."""
    i, j = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    m = ((i + j + parity) % 2 == 0).astype(np.float32)
    return jnp.asarray(np.repeat(m[..., None], channels, -1))


def channel_mask(channels: int, *, parity: int = 0):
    """[C] float mask, 1 on the first half of the channels (the second with parity=1)."""
    m = (np.arange(channels) < channels // 2).astype(np.float32)
    return jnp.asarray(1.0 - m if parity else m)


def affine_coupling(mask, conditioner: Callable) -> Bijector:
    """RealNVP's affine coupling. ``mask`` broadcasts against one example (1 = passes
    through and conditions); ``conditioner(params, x_masked[, condition]) -> (shift,
    log_scale)``, each of x's shape (a network; bound the log-scale, e.g. with tanh, for
    stability). The log-scale only acts where mask = 0, so logdet = sum((1 - m)
    log_scale). It is `coupling` with the affine transformer."""
    from genjax.flows.transformers import affine
    return coupling(mask, lambda params, xm, *c: jnp.stack(conditioner(params, xm, *c), -1),
                    affine())


def coupling(mask, conditioner: Callable, transformer) -> Bijector:
    """A coupling layer with any element-wise `genjax.flows.transformers.Transformer`
    (affine: RealNVP; `genjax.flows.splines.rq_spline`: the coupling neural spline flow).
    ``mask`` broadcasts against one example (1 = passes through unchanged, bit for bit, and
    conditions); ``conditioner(params, x_masked) -> theta`` of shape x.shape +
    (transformer.num_params,) (a network; start it at zero output for the identity). Only
    the elements where mask = 0 are transformed, so logdet [B] is the per-example sum of
    their log|dy/dx|.

    Conditional: forward(params, x, condition=c) and inverse(params, y, condition=c) call
    ``conditioner(params, x_masked, c)``; for a fixed c the layer is a bijection of x with
    the same log-determinant formula (c only moves theta)."""
    keep = jnp.asarray(mask) != 0

    def _theta(params, v, condition):
        xm = v * keep
        theta = (conditioner(params, xm) if condition is None
                 else conditioner(params, xm, condition))
        want = v.shape + (transformer.num_params,)
        if theta.shape != want:
            raise ValueError(f"coupling: the conditioner must return shape {want} (x's "
                             f"shape + (num_params,)), got {theta.shape}")
        return theta

    def apply(params, x, direction, condition):
        z, ld = direction(x, _theta(params, x, condition))  # inverse: y's masked part is x's
        return jnp.where(keep, x, z), _per_example(jnp.where(keep, 0.0, ld).astype(x.dtype))

    return (lambda params, x, condition=None: apply(params, x, transformer.forward,
                                                    condition),
            lambda params, y, condition=None: apply(params, y, transformer.inverse,
                                                    condition))


# ------------------------------------------------------------------------------ actnorm

def actnorm_init(x, eps: float = 1e-6) -> dict:
    """Glow's data-dependent initialisation: {"bias": -mean, "log_scale": -log std} per
    channel (last axis) of the batch x [B, ..., C], so that actnorm's output has zero mean
    and unit variance on it."""
    axes = tuple(range(x.ndim - 1))
    mean, std = jnp.mean(x, axes), jnp.std(x, axes)
    return {"bias": -mean, "log_scale": -jnp.log(std + eps)}


def _spatial_size(x) -> int:
    return int(np.prod(x.shape[1:-1]))      # H * W for images, 1 for vectors


def actnorm() -> Bijector:
    """y = (x + bias) * exp(log_scale), per channel (last axis); params from
    `actnorm_init`. logdet = (H W) sum(log_scale)."""

    def forward(params, x, condition=None):
        y = (x + params["bias"]) * jnp.exp(params["log_scale"])
        ld = _spatial_size(x) * jnp.sum(params["log_scale"])
        return y, jnp.full((x.shape[0],), ld, x.dtype)

    def inverse(params, y, condition=None):
        x = y * jnp.exp(-params["log_scale"]) - params["bias"]
        ld = -_spatial_size(y) * jnp.sum(params["log_scale"])
        return x, jnp.full((y.shape[0],), ld, y.dtype)

    return forward, inverse


# ------------------------------------------------------------------ invertible 1x1 conv

def conv1x1_init(key, channels: int) -> dict:
    """LU parameters of a random rotation (Glow): W = P L (U + diag(sign e^{log_s})) with
    P a fixed permutation, L unit lower-triangular, U strictly upper-triangular."""
    q = jnp.linalg.qr(jax.random.normal(key, (channels, channels)))[0]
    p, lower, upper = (np.asarray(a) for a in jax.scipy.linalg.lu(q))
    s = np.diag(upper)
    return {"p": jnp.asarray(p, jnp.float32), "lower": jnp.asarray(lower, jnp.float32),
            "upper": jnp.asarray(np.triu(upper, 1), jnp.float32),
            "sign": jnp.asarray(np.sign(s), jnp.float32),
            "log_s": jnp.asarray(np.log(np.abs(s)), jnp.float32)}


def conv1x1_weight(params):
    """W [C, C] from the LU parameters (the masks keep L and U triangular under
    gradient updates)."""
    c = params["log_s"].shape[0]
    lower = jnp.tril(params["lower"], -1) + jnp.eye(c)
    upper = jnp.triu(params["upper"], 1) + jnp.diag(params["sign"] * jnp.exp(params["log_s"]))
    return params["p"] @ lower @ upper


def conv1x1() -> Bijector:
    """Glow's invertible 1x1 convolution: y = x W over the last axis at every position;
    logdet = (H W) sum(log_s), O(C) from the LU parameters (`conv1x1_init`)."""

    def forward(params, x, condition=None):
        y = x @ conv1x1_weight(params)
        ld = _spatial_size(x) * jnp.sum(params["log_s"])
        return y, jnp.full((x.shape[0],), ld, x.dtype)

    def inverse(params, y, condition=None):
        x = y @ jnp.linalg.inv(conv1x1_weight(params))
        ld = -_spatial_size(y) * jnp.sum(params["log_s"])
        return x, jnp.full((y.shape[0],), ld, y.dtype)

    return forward, inverse


# ------------------------------------------------------------ volume-preserving reshapes

def permute(perm: Sequence[int]) -> Bijector:
    """A fixed permutation of the last axis (e.g. reversal between couplings); logdet 0."""
    perm = np.asarray(perm)
    inv = np.argsort(perm)

    def forward(params, x, condition=None):
        return x[..., perm], jnp.zeros((x.shape[0],), x.dtype)

    def inverse(params, y, condition=None):
        return y[..., inv], jnp.zeros((y.shape[0],), y.dtype)

    return forward, inverse


def squeeze() -> Bijector:
    """[B, H, W, C] -> [B, H/2, W/2, 4C]: each 2x2 block of pixels becomes one position
    with 4C channels (RealNVP's squeeze); logdet 0."""

    def forward(params, x, condition=None):
        b, h, w, c = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"squeeze needs even sides, got {x.shape[1:3]}")
        y = x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, h // 2, w // 2, 4 * c), jnp.zeros((b,), x.dtype)

    def inverse(params, y, condition=None):
        b, h, w, c4 = y.shape
        x = y.reshape(b, h, w, 2, 2, c4 // 4).transpose(0, 1, 3, 2, 4, 5)
        return x.reshape(b, 2 * h, 2 * w, c4 // 4), jnp.zeros((b,), y.dtype)

    return forward, inverse


# -------------------------------------------------------------------------------- chain

def chain(bijectors: Sequence[Bijector]) -> Bijector:
    """The composition: forward applies bijectors[0] first; params is a sequence with one
    entry per bijector (None where it has none). Log-determinants add. A ``condition``
    goes to every bijector (as ``condition=``; with None none is passed, so bijectors
    written without the keyword still chain)."""
    bijectors = list(bijectors)

    def _call(fn, p, v, condition):
        return fn(p, v) if condition is None else fn(p, v, condition=condition)

    def forward(params, x, condition=None):
        total = jnp.zeros((x.shape[0],), x.dtype)
        for (fwd, _), p in zip(bijectors, params, strict=True):
            x, ld = _call(fwd, p, x, condition)
            total = total + ld
        return x, total

    def inverse(params, y, condition=None):
        total = jnp.zeros((y.shape[0],), y.dtype)
        for (_, inv), p in zip(reversed(bijectors), list(params)[::-1], strict=True):
            y, ld = _call(inv, p, y, condition)
            total = total + ld
        return y, total

    return forward, inverse
