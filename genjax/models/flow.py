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

Class-conditional flows (``num_classes=K > 0``): the class y [B] (0..K-1, K = the null
class of `genjax.conditioning`) is an extra input of every conditioner network, as in
flowjax's ``condition=`` and the conditional MAF of Papamakarios et al. (2017), and the
base distribution stays N(0, I), so for each y the flow is a bijection of x and

    log p(x | y) = log N(f(x; y); 0, I) + log|det df(x; y)/dx|

exactly. The label enters as c = one_hot(y, K) [B, K+1] (`genjax.conditioning.one_hot`):

* MLP conditioners (vector couplings) take [x_masked, c] as their input;
* conv conditioners add a learned per-class vector to their first hidden layer's
  channels at every pixel (a linear map of c: a label embedding added as a bias) and a
  zero-initialised one to their output;
* MADE conditioners (MAF / IAF) add a linear map of c to the first hidden layer (every
  hidden unit, whatever its degree) and a zero-initialised one to every output, so that
  the first dimension in the ordering, which MADE connects to nothing but a bias, also
  depends on the class.

forward(x, y) / inverse(z, y) / log_prob(x, y) / sample(key, num, y=y) need y in a
conditional flow and refuse it in an unconditional one; with ``num_classes=0`` (the
default) no context layer exists and every map is the unconditional one, bit for bit.
Layers take the encoded context directly: ``layer.forward(x, context=c)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import conditioning
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


def label_log_prior(labels, num_classes: int) -> np.ndarray:
    """log p(y) [K] float32: the label frequencies of ``labels`` [N] (the training split's:
    the maximum-likelihood prior, which a conditional flow does not learn); -inf for a
    class that never occurs."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=num_classes)[:num_classes]
    with np.errstate(divide="ignore"):
        return np.log(counts / counts.sum()).astype(np.float32)


def class_log_probs(log_prob_given, x, num_classes: int):
    """log p(x | y = k) for every class: log_prob_given(x [B, ...], y [B]) -> [B] (a
    conditional flow's `log_prob`); returns [B, K], one class at a time (`jax.lax.map`:
    memory of one batch, not K)."""
    b = x.shape[0]
    out = jax.lax.map(lambda k: log_prob_given(x, jnp.full((b,), k, jnp.int32)),
                      jnp.arange(num_classes))                          # [K, B]
    return out.T


def marginal_log_prob(log_p_given, log_prior):
    """log p(x) = log sum_y p(y) p(x | y), exactly: log_p_given [B, K] (`class_log_probs`)
    and log_prior [K] -> [B] nats, comparable with an unconditional model's log p(x)."""
    return jax.scipy.special.logsumexp(log_p_given + log_prior, axis=-1)


def label_posterior_metrics(log_p_given, labels, log_prior) -> dict:
    """Host-side means over N examples with their true labels [N] (log_p_given [N, K]):
    "log_likelihood" (log p(x), the marginal), "log_likelihood_given_label" (log p(x | y)
    at the true y) and "bayes_accuracy" (the share whose true y maximises p(y) p(x | y):
    the flow used as a generative classifier; chance is the largest class share)."""
    lp = np.asarray(log_p_given, np.float64)
    labels, prior = np.asarray(labels), np.asarray(log_prior, np.float64)
    joint = lp + prior
    top = joint.max(-1, keepdims=True)
    marginal = top[:, 0] + np.log(np.exp(joint - top).sum(-1))
    return {"log_likelihood": float(marginal.mean()),
            "log_likelihood_given_label": float(lp[np.arange(len(lp)), labels].mean()),
            "bayes_accuracy": float(np.mean(joint.argmax(-1) == labels))}


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

    def forward(self, x, context=None):
        return bij.actnorm()[0](self._params(), x)

    def inverse(self, y, context=None):
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

    def forward(self, x, context=None):
        return bij.conv1x1()[0](self._params(), x)

    def inverse(self, y, context=None):
        return bij.conv1x1()[1](self._params(), y)


def _check_context(context, context_dim: int, batch: int, where: str):
    """The context a conditioner was built for: none when context_dim = 0, else [B, E]."""
    if context_dim == 0:
        if context is not None:
            raise ValueError(f"{where} was built without a context (context_dim=0) but got "
                             f"one of shape {jnp.shape(context)}")
        return
    if context is None:
        raise ValueError(f"{where} was built for a context of width {context_dim}; pass "
                         "context=[B, E] (a conditional flow needs its label)")
    if jnp.ndim(context) != 2 or context.shape != (batch, context_dim):
        raise ValueError(f"{where}: context must have shape {(batch, context_dim)}, got "
                         f"{jnp.shape(context)}")


class MLPConditioner(nnx.Module):
    """x [B, D] (, context [B, E]) -> theta [B, D, P]: an MLP (ReLU hidden layers) on x,
    or on [x, context] when ``context_dim`` = E > 0, whose last layer starts at zero."""

    def __init__(self, dim: int, hidden: Sequence[int], num_params: int, *,
                 context_dim: int = 0, rngs: nnx.Rngs):
        sizes = [dim + context_dim, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs)
                                for a, b in zip(sizes[:-1], sizes[1:])])
        self.out = nnx.Linear(sizes[-1], dim * num_params, rngs=rngs)
        _zeros_like_param(self.out.kernel)
        self.num_params = num_params
        self.context_dim = int(context_dim)

    def __call__(self, x, context=None):
        _check_context(context, self.context_dim, x.shape[0], "MLPConditioner")
        h = x if context is None else jnp.concatenate([x, context.astype(x.dtype)], -1)
        for layer in self.hidden:
            h = jax.nn.relu(layer(h))
        return self.out(h).reshape(x.shape + (self.num_params,))


class ConvConditioner(nnx.Module):
    """x [B, H, W, C] (, context [B, E]) -> theta [B, H, W, C, P]: 3x3 conv, ReLU, 1x1
    conv, ReLU, 3x3 conv (RealNVP / Glow's coupling network, without normalisation), the
    last conv zero. With ``context_dim`` = E > 0 a linear map of the context [B, E] ->
    [B, hidden] is added to the first conv's output at every pixel (with a one-hot class:
    a learned embedding per class, broadcast over the image, as a bias), and a
    zero-initialised one -> [B, C P] to the output (a per-class shift of every channel's
    transformer parameters; the layer still starts as the identity)."""

    def __init__(self, channels: int, hidden: int, num_params: int, *,
                 context_dim: int = 0, rngs: nnx.Rngs):
        self.conv1 = Conv(channels, hidden, (3, 3), rngs=rngs)
        self.conv2 = Conv(hidden, hidden, (1, 1), rngs=rngs)
        self.conv3 = Conv(hidden, channels * num_params, (3, 3), rngs=rngs)
        _zeros_like_param(self.conv3.kernel)
        self.num_params = num_params
        self.context_dim = int(context_dim)
        if context_dim:
            self.context = nnx.Linear(context_dim, hidden, rngs=rngs)
            self.context_out = nnx.Linear(context_dim, channels * num_params,
                                          use_bias=False, rngs=rngs)
            _zeros_like_param(self.context_out.kernel)

    def __call__(self, x, context=None):
        _check_context(context, self.context_dim, x.shape[0], "ConvConditioner")
        h = self.conv1(x)
        if context is not None:
            context = context.astype(x.dtype)
            h = h + self.context(context)[:, None, None, :]
        h = jax.nn.relu(h)
        h = jax.nn.relu(self.conv2(h))
        out = self.conv3(h)
        if context is not None:
            out = out + self.context_out(context)[:, None, None, :]
        return out.reshape(x.shape + (self.num_params,))


class Coupling(nnx.Module):
    """`genjax.flows.bijectors.coupling` with a conditioner network and a fixed mask."""

    def __init__(self, mask, net, transformer: transformers.Transformer):
        self.mask, self.net, self.transformer = Mask(jnp.asarray(mask)), net, transformer

    def _bijector(self):
        return bij.coupling(self.mask[...], lambda _, xm, *c: self.net(xm, *c),
                            self.transformer)

    def forward(self, x, context=None):
        return self._bijector()[0](None, x, condition=context)

    def inverse(self, y, context=None):
        return self._bijector()[1](None, y, condition=context)


class Autoregressive(nnx.Module):
    """A MAF layer (``inverse_flow=False``: density in one MADE pass, sampling a scan of
    D passes) or an IAF layer (``True``: the reverse), on `genjax.nn.masked_mlp.MaskedMLP`.

    With ``context_dim`` = E > 0 the MADE is conditional: a linear map of the context
    [B, E] is added to its first hidden layer's pre-activations (every unit: the context
    is not in the ordering) and a zero-initialised one to its outputs (so every
    dimension's parameters, the first in the ordering's too, see the context)."""

    def __init__(self, dim: int, hidden: Sequence[int], transformer, *, ordering: str,
                 inverse_flow: bool, seed: int, context_dim: int = 0, rngs: nnx.Rngs):
        self.net = MaskedMLP(dim, hidden, transformer.num_params, ordering=ordering,
                             mask_seed=seed, rngs=rngs)
        self.transformer, self.inverse_flow, self.dim = transformer, inverse_flow, dim
        self.context_dim = int(context_dim)
        if context_dim:
            if hidden:
                self.context_hidden = nnx.Linear(context_dim, hidden[0], use_bias=False,
                                                 rngs=rngs)
            self.context_out = nnx.Linear(context_dim, dim * transformer.num_params,
                                          use_bias=False, rngs=rngs)
            _zeros_like_param(self.context_out.kernel)

    def _conditioner(self, x, context=None):
        """MaskedMLP's pass (`genjax.nn.masked_mlp`), plus the context's terms."""
        _check_context(context, self.context_dim, x.shape[0], "Autoregressive")
        if context is None:
            return self.net(x)
        net, context = self.net, context.astype(x.dtype)
        h, n = x, len(net.kernels)
        for l in range(n):
            h = h @ (net.kernels[l][...] * net.masks[l][...]) + net.biases[l][...]
            if l == 0 and n > 1:
                h = h + self.context_hidden(context)
            if l < n - 1:
                h = net.activation(h)
        h = h + self.context_out(context)                         # [B, D P]
        return h.reshape(x.shape[0], net.dim, net.num_params)

    def _bijector(self):
        make = ar.inverse_autoregressive if self.inverse_flow else ar.masked_autoregressive
        return make(lambda _, x, *c: self._conditioner(x, *c), self.transformer, self.dim,
                    order=self.net.order[...])

    def forward(self, x, context=None):
        return self._bijector()[0](None, x, condition=context)

    def inverse(self, y, context=None):
        return self._bijector()[1](None, y, condition=context)


class Reverse(nnx.Module):
    """Reverses the last axis (between couplings or autoregressive layers); logdet 0."""

    def __init__(self, dim: int):
        self.dim = dim

    def forward(self, x, context=None):
        return bij.permute(np.arange(self.dim)[::-1])[0](None, x)

    def inverse(self, y, context=None):
        return bij.permute(np.arange(self.dim)[::-1])[1](None, y)


def _run(layers, x, *, initialize: bool = False, context=None):
    """Applies layers in order (each given ``context``); with ``initialize`` each layer
    that has an `initialize` (actnorm) first sets itself from its input (eagerly, once, at
    build time)."""
    total = jnp.zeros((x.shape[0],), x.dtype)
    for layer in layers:
        if initialize and hasattr(layer, "initialize"):
            layer.initialize(x)
        x, ld = layer.forward(x, context=context)
        total = total + ld
    return x, total


def _run_inverse(layers, y, *, context=None):
    total = jnp.zeros((y.shape[0],), y.dtype)
    for layer in reversed(layers):
        y, ld = layer.inverse(y, context=context)
        total = total + ld
    return y, total


class _Flow(nnx.Module):
    """log_prob(x [B, *E], y=None) -> [B] nats; sample(key, num, temperature=1.0, y=None)
    -> [num, *E]; forward(x, y=None) -> (z [B, D], log|det dz/dx| [B]); inverse(z [B, D],
    y=None) -> (x, log|det dx/dz|). y [B] int: the class of a conditional flow
    (``num_classes`` > 0; required there, refused otherwise)."""

    example_shape: tuple
    num_classes: int = 0

    def context(self, y, batch: int):
        """The conditioners' context for labels y [B]: one_hot(y, K) [B, K+1], or None for
        an unconditional flow (which must get y=None)."""
        if not conditioning.check_label("this flow", self.num_classes, y):
            return None
        y = jnp.asarray(y)
        if y.shape != (batch,):
            raise ValueError(f"labels y must have shape ({batch},), got {y.shape}")
        return conditioning.one_hot(y, self.num_classes)

    def log_prob(self, x, y=None):
        z, ld = self.forward(x, y)
        return standard_normal_log_prob(z) + ld

    def sample(self, key, num: int, temperature: float = 1.0, y=None):
        z = temperature * jax.random.normal(key, (num, math.prod(self.example_shape)))
        return self.inverse(z, y)[0]


class VectorFlow(_Flow):
    """A flow on vectors; examples of any shape E are flattened to D = prod(E)."""

    def __init__(self, example_shape: Sequence[int], *, name: str = "realnvp",
                 num_layers: int = 4, hidden: Sequence[int] = (64, 64),
                 transformer: str = "affine", max_log_scale: float = 3.0,
                 num_bins: int = 8, tail_bound: float = 3.0, num_classes: int = 0,
                 rngs: nnx.Rngs):
        if name not in NAMES:
            raise ValueError(f"unknown flow {name!r}; expected one of {NAMES}")
        self.example_shape = tuple(example_shape)
        d = math.prod(self.example_shape)
        if d < 2:
            raise ValueError(f"a flow needs at least 2 dimensions, got {d}")
        t = make_transformer(transformer, max_log_scale=max_log_scale, num_bins=num_bins,
                             tail_bound=tail_bound)
        self.num_classes = _check_num_classes(num_classes)
        ctx = self.num_classes + 1 if self.num_classes else 0     # one_hot's width
        layers = []
        for i in range(num_layers):
            if name in ("maf", "iaf"):
                layers.append(Autoregressive(d, hidden, t, ordering="natural",
                                             inverse_flow=name == "iaf", seed=i,
                                             context_dim=ctx, rngs=rngs))
                layers.append(Reverse(d))
                continue
            if name == "glow":
                layers += [ActNorm(d), InvertibleLinear(d, index=i)]
            mask = bij.channel_mask(d, parity=i % 2)
            layers.append(Coupling(mask, MLPConditioner(d, hidden, t.num_params,
                                                        context_dim=ctx, rngs=rngs), t))
        self.layers = nnx.List(layers)

    def forward(self, x, y=None, *, initialize: bool = False):
        return _run(self.layers, x.reshape(x.shape[0], -1), initialize=initialize,
                    context=self.context(y, x.shape[0]))

    def inverse(self, z, y=None):
        x, ld = _run_inverse(self.layers, z, context=self.context(y, z.shape[0]))
        return x.reshape((z.shape[0],) + self.example_shape), ld

    def initialize(self, x, y=None):
        """Data-dependent initialisation (actnorm) from a batch x [B, *E] (and its labels
        y [B] for a conditional flow)."""
        self.forward(x, y, initialize=True)


def _check_num_classes(num_classes) -> int:
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0 (0: unconditional), got "
                         f"{num_classes!r}")
    return int(num_classes)


class _Squeeze(nnx.Module):
    def forward(self, x, context=None):
        return bij.squeeze()[0](None, x)

    def inverse(self, y, context=None):
        return bij.squeeze()[1](None, y)


class MultiScaleFlow(_Flow):
    """RealNVP's / Glow's multi-scale flow on images [B, H, W, C]; H and W divisible by
    2^levels (RealNVP: 2^(levels-1))."""

    def __init__(self, example_shape: Sequence[int], *, name: str = "realnvp",
                 levels: int = 2, steps: int = 3, hidden: int = 64,
                 transformer: str = "affine", max_log_scale: float = 3.0,
                 num_bins: int = 8, tail_bound: float = 3.0, num_classes: int = 0,
                 rngs: nnx.Rngs):
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
        self.num_classes = _check_num_classes(num_classes)
        ctx = self.num_classes + 1 if self.num_classes else 0     # one_hot's width

        def couple(mask, channels):
            return Coupling(mask, ConvConditioner(channels, hidden, t.num_params,
                                                  context_dim=ctx, rngs=rngs), t)

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

    def forward(self, x, y=None, *, initialize: bool = False):
        context = self.context(y, x.shape[0])
        total = jnp.zeros((x.shape[0],), x.dtype)
        out = []
        for layers, (_, _, keep) in zip(self.levels, self.kept):
            x, ld = _run(layers, x, initialize=initialize, context=context)
            total = total + ld
            out.append(x[..., keep:].reshape(x.shape[0], -1))     # factored out
            x = x[..., :keep]
        out.append(x.reshape(x.shape[0], -1))
        return jnp.concatenate(out, -1), total

    def inverse(self, z, y=None):
        b = z.shape[0]
        context = self.context(y, b)
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
            x, ld = _run_inverse(self.levels[i], x, context=context)
            total = total + ld
        return x, total

    def _channels_out(self):
        """Channels at the end of each level, before factoring out."""
        return [keep if i == len(self.kept) - 1 else 2 * keep
                for i, (_, _, keep) in enumerate(self.kept)]

    def initialize(self, x, y=None):
        """Data-dependent initialisation (actnorm) from a batch x [B, H, W, C] (and its
        labels y [B] for a conditional flow)."""
        self.forward(x, y, initialize=True)
