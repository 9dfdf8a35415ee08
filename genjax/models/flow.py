"""Normalizing-flow models: a chain of bijectors (`genjax.flows`) from data to a standard
normal, with the exact log-likelihood by the change of variables

    log p(x) = log N(z; 0, I) + log|det dz/dx|,     z = f(x),

and sampling by the inverse, x = f^-1(z) with z ~ N(0, T^2 I) (T = 1: the model itself).

Two shapes of model, both Flax NNX modules that only hold parameters (the maps are the
pure bijectors of `genjax.flows`, applied to them):

* `VectorFlow` for vectors [B, D] (2-D toys; images flattened): ``name`` picks the layer
  - "realnvp": affine (or spline) couplings with MLP conditioners on alternating halves
    (Dinh et al. 2017; with a spline: the coupling RQ-NSF of Durkan et al. 2019);
  - "glow": each step is actnorm, an invertible linear map (the LU-parameterised "1x1
    convolution" on a vector), then a coupling (Kingma & Dhariwal 2018);
  - "maf": masked autoregressive layers on MADE conditioners (connectivity drawn from
    the layer index, not the seed, like the 1x1 convolutions' fixed parts), ordering
    reversed between layers (Papamakarios et al. 2017; with a spline: the autoregressive RQ-NSF); density
    in one pass per layer, sampling D passes;
  - "iaf": the inverse autoregressive flow (Kingma et al. 2016): sampling in one pass,
    density D passes per layer (use it on low-dimensional data).
* `MultiScaleFlow` for images [B, H, W, C], RealNVP's multi-scale architecture with conv
  conditioners: per level, RealNVP ("realnvp") runs checkerboard couplings, squeezes
  (H, W, C) -> (H/2, W/2, 4C), runs channel couplings and factors half the channels out
  to the base distribution; Glow ("glow") squeezes, then runs steps of actnorm,
  invertible 1x1 convolution and a channel coupling, then factors out. The last level
  keeps all its channels. Factored-out variables go to the standard normal, as in RealNVP
  (Glow's learned conditional prior for them is not used).

Conditioner networks end in a zero-initialised layer, so every coupling and MAF layer
starts as the identity; actnorm starts from the data (`initialize`). Log-densities are
in nats per example, [B].
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax.flows import autoregressive as ar
from genjax.flows import bijectors as bij
from genjax.flows import splines, transformers
from genjax.models.made import Mask
from genjax.nn.loop_conv import Conv
from genjax.nn.masked_mlp import MaskedMLP

NAMES = ("realnvp", "glow", "maf", "iaf")
TRANSFORMERS = ("affine", "spline")
LOG_2PI = math.log(2 * math.pi)


def make_transformer(kind: str, *, max_log_scale: float = 3.0, num_bins: int = 8,
                     tail_bound: float = 3.0) -> transformers.Transformer:
    """"affine" (log-scale bounded by max_log_scale * tanh) or "spline" (the
    rational-quadratic spline with linear tails outside [-tail_bound, tail_bound])."""
    if kind == "affine":
        return transformers.affine(max_log_scale=max_log_scale)
    if kind == "spline":
        return splines.rq_spline(num_bins, bound=tail_bound)
    raise ValueError(f"unknown transformer {kind!r}; expected one of {TRANSFORMERS}")


def standard_normal_log_prob(z):
    """z [B, ...] -> [B]: log N(z; 0, I) summed over every axis but the first."""
    z = z.reshape(z.shape[0], -1)
    return -0.5 * jnp.sum(z * z, -1) - 0.5 * z.shape[-1] * LOG_2PI


def _zeros_like_param(p: nnx.Param):
    p[...] = jnp.zeros_like(p[...])


# ------------------------------------------------------------------------------ layers

class ActNorm(nnx.Module):
    """Glow's actnorm on the last axis; `initialize(x)` sets zero mean and unit variance
    per channel on the batch x (the data-dependent initialisation)."""

    def __init__(self, channels: int):
        self.bias = nnx.Param(jnp.zeros((channels,)))
        self.log_scale = nnx.Param(jnp.zeros((channels,)))

    def _params(self):
        return {"bias": self.bias[...], "log_scale": self.log_scale[...]}

    def initialize(self, x):
        std = np.asarray(jnp.std(x.reshape(-1, x.shape[-1]), 0))
        if not np.all(np.isfinite(std)) or np.any(std == 0):
            bad = np.flatnonzero(~np.isfinite(std) | (std == 0)).tolist()
            raise ValueError(f"actnorm's data-dependent initialisation: channels {bad} are "
                             "constant (or not finite) on the initialisation batch, so "
                             "their scale would be infinite; dequantise the data or use "
                             "more examples")
        p = bij.actnorm_init(x)
        self.bias[...], self.log_scale[...] = p["bias"], p["log_scale"]

    def forward(self, x):
        return bij.actnorm()[0](self._params(), x)

    def inverse(self, y):
        return bij.actnorm()[1](self._params(), y)


class InvertibleLinear(nnx.Module):
    """Glow's invertible 1x1 convolution (on images: over channels at every pixel; on
    vectors: a dense invertible map) in the LU parameterisation; P and the signs of the
    diagonal are fixed (`Mask`), L, U and log|diag| are trained. Initialised at a random
    rotation drawn from ``index`` alone (not the run's seed), so the fixed P and signs are
    the same for every seed and a seed sweep shares them in one program."""

    def __init__(self, channels: int, *, index: int):
        p = bij.conv1x1_init(jax.random.key(index), channels)
        self.p, self.sign = Mask(p["p"]), Mask(p["sign"])
        self.lower, self.upper = nnx.Param(p["lower"]), nnx.Param(p["upper"])
        self.log_s = nnx.Param(p["log_s"])

    def _params(self):
        return {"p": self.p[...], "sign": self.sign[...], "lower": self.lower[...],
                "upper": self.upper[...], "log_s": self.log_s[...]}

    def forward(self, x):
        return bij.conv1x1()[0](self._params(), x)

    def inverse(self, y):
        return bij.conv1x1()[1](self._params(), y)


class MLPConditioner(nnx.Module):
    """x [B, D] -> theta [B, D, P]: an MLP (ReLU hidden layers) whose last
    layer starts at zero."""

    def __init__(self, dim: int, hidden: Sequence[int], num_params: int, *, rngs: nnx.Rngs):
        sizes = [dim, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = nnx.Linear(sizes[-1], dim * num_params, rngs=rngs)
        _zeros_like_param(self.out.kernel)
        self.num_params = num_params

    def __call__(self, x):
        h = x
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.out(h).reshape(x.shape + (self.num_params,))


class ConvConditioner(nnx.Module):
    """x [B, H, W, C] -> theta [B, H, W, C, P]: 3x3 conv, ReLU, 1x1 conv, ReLU, 3x3 conv
    (RealNVP / Glow's coupling network, without normalisation), the last conv zero."""

    def __init__(self, channels: int, hidden: int, num_params: int, *, rngs: nnx.Rngs):
        self.conv1 = Conv(channels, hidden, (3, 3), rngs=rngs)
        self.conv2 = Conv(hidden, hidden, (1, 1), rngs=rngs)
        self.conv3 = Conv(hidden, channels * num_params, (3, 3), rngs=rngs)
        _zeros_like_param(self.conv3.kernel)
        self.num_params = num_params

    def __call__(self, x):
        h = jax.nn.relu(self.conv1(x))
        h = jax.nn.relu(self.conv2(h))
        return self.conv3(h).reshape(x.shape + (self.num_params,))


class Coupling(nnx.Module):
    """`genjax.flows.bijectors.coupling` with a conditioner network and a fixed mask."""

    def __init__(self, mask, net, transformer: transformers.Transformer):
        self.mask, self.net, self.transformer = Mask(jnp.asarray(mask)), net, transformer

    def _bijector(self):
        return bij.coupling(self.mask[...], lambda _, xm: self.net(xm), self.transformer)

    def forward(self, x):
        return self._bijector()[0](None, x)

    def inverse(self, y):
        return self._bijector()[1](None, y)


class Autoregressive(nnx.Module):
    """A MAF layer (``inverse_flow=False``: density in one MADE pass, sampling a scan of
    D passes) or an IAF layer (``True``: the reverse), on `genjax.nn.masked_mlp.MaskedMLP`."""

    def __init__(self, dim: int, hidden: Sequence[int], transformer, *, ordering: str,
                 inverse_flow: bool, seed: int, rngs: nnx.Rngs):
        self.net = MaskedMLP(dim, hidden, transformer.num_params, ordering=ordering,
                             mask_seed=seed, rngs=rngs)
        self.transformer, self.inverse_flow, self.dim = transformer, inverse_flow, dim

    def _bijector(self):
        make = ar.inverse_autoregressive if self.inverse_flow else ar.masked_autoregressive
        return make(lambda _, x: self.net(x), self.transformer, self.dim,
                    order=self.net.order[...])

    def forward(self, x):
        return self._bijector()[0](None, x)

    def inverse(self, y):
        return self._bijector()[1](None, y)


class Reverse(nnx.Module):
    """Reverses the last axis (between couplings or autoregressive layers); logdet 0."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x):
        return bij.permute(np.arange(self.dim)[::-1])[0](None, x)

    def inverse(self, y):
        return bij.permute(np.arange(self.dim)[::-1])[1](None, y)


def _run(layers, x, *, initialize: bool = False):
    """Applies layers in order; with ``initialize`` each layer that has an `initialize`
    (actnorm) first sets itself from its input (eagerly, once, at build time)."""
    total = jnp.zeros((x.shape[0],), x.dtype)
    for layer in layers:
        if initialize and hasattr(layer, "initialize"):
            layer.initialize(x)
        x, ld = layer.forward(x)
        total = total + ld
    return x, total


def _run_inverse(layers, y):
    total = jnp.zeros((y.shape[0],), y.dtype)
    for layer in reversed(layers):
        y, ld = layer.inverse(y)
        total = total + ld
    return y, total


class _Flow(nnx.Module):
    """log_prob(x [B, *E]) -> [B] nats; sample(key, num, temperature=1.0) -> [num, *E];
    forward(x) -> (z [B, D], log|det dz/dx| [B]); inverse(z [B, D]) -> (x, log|det dx/dz|)."""

    example_shape: tuple

    def log_prob(self, x):
        z, ld = self.forward(x)
        return standard_normal_log_prob(z) + ld

    def sample(self, key, num: int, temperature: float = 1.0):
        z = temperature * jax.random.normal(key, (num, math.prod(self.example_shape)))
        return self.inverse(z)[0]


class VectorFlow(_Flow):
    """A flow on vectors; examples of any shape E are flattened to D = prod(E)."""

    def __init__(self, example_shape: Sequence[int], *, name: str = "realnvp",
                 num_layers: int = 4, hidden: Sequence[int] = (64, 64),
                 transformer: str = "affine", max_log_scale: float = 3.0,
                 num_bins: int = 8, tail_bound: float = 3.0, rngs: nnx.Rngs):
        if name not in NAMES:
            raise ValueError(f"unknown flow {name!r}; expected one of {NAMES}")
        self.example_shape = tuple(example_shape)
        d = math.prod(self.example_shape)
        if d < 2:
            raise ValueError(f"a flow needs at least 2 dimensions, got {d}")
        t = make_transformer(transformer, max_log_scale=max_log_scale, num_bins=num_bins,
                             tail_bound=tail_bound)
        layers = []
        for i in range(num_layers):
            if name in ("maf", "iaf"):
                layers.append(Autoregressive(d, hidden, t, ordering="natural",
                                             inverse_flow=name == "iaf", seed=i,
                                             rngs=rngs))
                layers.append(Reverse(d))
                continue
            if name == "glow":
                layers += [ActNorm(d), InvertibleLinear(d, index=i)]
            mask = bij.channel_mask(d, parity=i % 2)
            layers.append(Coupling(mask, MLPConditioner(d, hidden, t.num_params, rngs=rngs),
                                   t))
        self.layers = nnx.List(layers)

    def forward(self, x, *, initialize: bool = False):
        return _run(self.layers, x.reshape(x.shape[0], -1), initialize=initialize)

    def inverse(self, z):
        x, ld = _run_inverse(self.layers, z)
        return x.reshape((z.shape[0],) + self.example_shape), ld

    def initialize(self, x):
        """Data-dependent initialisation (actnorm) from a batch x [B, *E]."""
        self.forward(x, initialize=True)


class _Squeeze(nnx.Module):
    def forward(self, x):
        return bij.squeeze()[0](None, x)

    def inverse(self, y):
        return bij.squeeze()[1](None, y)


class MultiScaleFlow(_Flow):
    """RealNVP's / Glow's multi-scale flow on images [B, H, W, C]; H and W divisible by
    2^levels (RealNVP: 2^(levels-1))."""

    def __init__(self, example_shape: Sequence[int], *, name: str = "realnvp",
                 levels: int = 2, steps: int = 3, hidden: int = 64,
                 transformer: str = "affine", max_log_scale: float = 3.0,
                 num_bins: int = 8, tail_bound: float = 3.0, rngs: nnx.Rngs):
        if name not in ("realnvp", "glow"):
            raise ValueError(f"multi-scale flows are 'realnvp' or 'glow', got {name!r}")
        self.example_shape = tuple(example_shape)
        h, w, c = self.example_shape
        squeezes = levels if name == "glow" else levels - 1
        if h % 2 ** squeezes or w % 2 ** squeezes:
            raise ValueError(f"{name} with {levels} levels needs image sides divisible by "
                             f"{2 ** squeezes}, got {h}x{w}")
        t = make_transformer(transformer, max_log_scale=max_log_scale, num_bins=num_bins,
                             tail_bound=tail_bound)

        def couple(mask, channels):
            return Coupling(mask, ConvConditioner(channels, hidden, t.num_params, rngs=rngs), t)

        level_layers, self.kept = [], []       # kept: channels that stay after each level
        for level in range(levels):
            last = level == levels - 1
            layers = []
            if name == "realnvp":
                for i in range(4 if last else steps):
                    layers.append(couple(bij.checkerboard_mask(h, w, c, parity=i % 2), c))
                if not last:
                    layers.append(_Squeeze())
                    h, w, c = h // 2, w // 2, 4 * c
                    for i in range(steps):
                        layers.append(couple(bij.channel_mask(c, parity=i % 2), c))
            else:
                layers.append(_Squeeze())
                h, w, c = h // 2, w // 2, 4 * c
                for i in range(steps):
                    layers += [ActNorm(c), InvertibleLinear(c, index=100 * level + i),
                               couple(bij.channel_mask(c, parity=i % 2), c)]
            level_layers.append(nnx.List(layers))
            keep = c if last else c // 2
            self.kept.append((h, w, keep))
            c = keep
        self.levels = nnx.List(level_layers)

    def forward(self, x, *, initialize: bool = False):
        total = jnp.zeros((x.shape[0],), x.dtype)
        out = []
        for layers, (_, _, keep) in zip(self.levels, self.kept):
            x, ld = _run(layers, x, initialize=initialize)
            total = total + ld
            out.append(x[..., keep:].reshape(x.shape[0], -1))     # factored out
            x = x[..., :keep]
        out.append(x.reshape(x.shape[0], -1))
        return jnp.concatenate(out, -1), total

    def inverse(self, z):
        b = z.shape[0]
        sizes = [h * w * (c_out - keep) for (h, w, keep), c_out in
                 zip(self.kept, self._channels_out())] + [math.prod(self.kept[-1])]
        pieces = jnp.split(z, np.cumsum(sizes)[:-1], axis=-1)
        x = pieces[-1].reshape((b,) + self.kept[-1])
        total = jnp.zeros((b,), z.dtype)
        for i in reversed(range(len(self.levels))):
            h, w, keep = self.kept[i]
            out_c = self._channels_out()[i]
            factored = pieces[i].reshape(b, h, w, out_c - keep)
            x = jnp.concatenate([x, factored], -1)
            x, ld = _run_inverse(self.levels[i], x)
            total = total + ld
        return x, total

    def _channels_out(self):
        """Channels at the end of each level, before factoring out."""
        return [keep if i == len(self.kept) - 1 else 2 * keep
                for i, (_, _, keep) in enumerate(self.kept)]

    def initialize(self, x):
        """Data-dependent initialisation (actnorm) from a batch x [B, H, W, C]."""
        self.forward(x, initialize=True)
