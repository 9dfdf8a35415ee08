"""The VAE: a Gaussian encoder q(z | x) and a Bernoulli or Gaussian decoder p(x | z), and
the conditional VAE (Sohn et al., 2015): q(z | x, y) and p(x | z, y) for a class y.

The module holds parameters only. Training and evaluation go through the pure objectives
in ``genjax.losses.vae`` with ``model.encode`` / ``model.decode`` as the callables; for a
conditional model bind the labels first (`given`), the objectives stay the same:

    vae = VAE((28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))
    m = given(vae, y)                                   # y: int [B] in 0..9 (10 = null)
    loss, metrics = losses.elbo(x, key, encode=m.encode, decode=m.decode)   # log p(x | y)
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import conditioning
from genjax.nn import MLP, ConvDecoder, ConvEncoder

ARCHITECTURES = ("mlp", "conv")


class VAE(nnx.Module):
    """encode: x [B, *E] float -> (mean [B, Z], log_var [B, Z]);
    decode: z [N, Z] -> logits [N, *E] (bernoulli) or (mean [N, *E], log_var []) (gaussian,
    one learned scalar observation log-variance).

    arch="mlp" with hidden=(400,) and latent_dim=20 is the 784-400-20 reference model of
    Kingma & Welling (2014).

    num_classes = K > 0 makes it the conditional VAE: encode(x, y) is q(z | x, y) and
    decode(z, y) is p(x | z, y), the label y entering as `conditioning.one_hot(y, K)`
    ([B, K + 1], the null class K has its own slot). The MLP concatenates the one-hot to
    the encoder's input [x, y] and to the decoder's input [z, y]; the conv net
    concatenates it at its dense layers (the encoder's hidden dense layer, the decoder's
    first). y is int [N] (labels 0..K, K = null), or float [N, K + 1] (a one-hot or any
    mixture of them, e.g. to differentiate with respect to the label). decode's y may
    also have B rows for z of N = S * B rows, sample-major as `genjax.losses.vae`'s
    importance weights lay them out: row s * B + b gets y[b]. With K = 0 (default) the
    model and its parameters are the unconditional VAE's, and y must not be given.
    """

    def __init__(self, example_shape: Sequence[int], *, latent_dim: int = 20,
                 hidden: Sequence[int] = (400,), arch: str = "mlp",
                 likelihood: str = "bernoulli", num_classes: int = 0, rngs: nnx.Rngs):
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown VAE arch {arch!r}; expected one of {ARCHITECTURES}")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) \
                or num_classes < 0:
            raise ValueError(f"num_classes must be an int >= 0 (0 = unconditional), got "
                             f"{num_classes!r}")
        self.example_shape = tuple(example_shape)
        self.latent_dim = latent_dim
        self.arch = arch
        self.likelihood = likelihood
        self.num_classes = num_classes
        d = math.prod(self.example_shape)
        c = num_classes + 1 if num_classes else 0          # width of the label's one-hot
        if arch == "mlp":
            self.encoder = MLP(d + c, hidden, 2 * latent_dim, activation=nnx.relu,
                               rngs=rngs)
            self.decoder = MLP(latent_dim + c, tuple(reversed(hidden)), d,
                               activation=nnx.relu, rngs=rngs)
        else:
            width = hidden[0] if hidden else 256
            self.encoder = ConvEncoder(self.example_shape, 2 * latent_dim, hidden=width,
                                       rngs=rngs)
            self.decoder = ConvDecoder(latent_dim + c, self.example_shape, hidden=width,
                                       rngs=rngs)
            if c:   # the one-hot's rows of the encoder's hidden dense layer ([h, y] @ W)
                self.encoder_label = nnx.Linear(c, width, use_bias=False, rngs=rngs)
        if likelihood == "gaussian":
            self.obs_log_var = nnx.Param(jnp.zeros(()))

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def _label(self, y, n: int, where: str):
        """The label encoding [n, K + 1] of y (see the class docstring), or None for the
        unconditional model."""
        if not conditioning.check_label(f"VAE.{where}: this VAE", self.num_classes, y):
            return None
        y = jnp.asarray(y)
        c = self.num_classes + 1
        if y.ndim == 2 and jnp.issubdtype(y.dtype, jnp.floating) and y.shape[1] == c:
            h = y.astype(jnp.float32)                                   # [b, K + 1]
        elif y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer):
            h = conditioning.one_hot(y, self.num_classes)               # [b, K + 1]
        else:
            raise ValueError(f"VAE.{where}: y must be int labels [B] or a float label "
                             f"encoding [B, {c}], got {y.dtype} {y.shape}")
        b = h.shape[0]
        if b == n:
            return h
        if b and n % b == 0:                        # sample-major: row s * b + i gets y[i]
            return jnp.tile(h, (n // b, 1))
        raise ValueError(f"VAE.{where}: {b} labels for {n} rows (expected {n}, or a "
                         "divisor of it for sample-major repeats)")

    def encode(self, x, y=None):
        """x [B, *E] (and y [B] when conditional) -> (mean [B, Z], log_var [B, Z])."""
        lab = self._label(y, x.shape[0], "encode")
        if self.arch == "mlp":
            x = x.reshape(x.shape[0], -1)
            h = self.encoder(x if lab is None else jnp.concatenate([x, lab], -1))
        elif lab is None:
            h = self.encoder(x)
        else:                # ConvEncoder's layers, the label joining its hidden dense layer
            e = self.encoder
            f = jax.nn.relu(e.conv2(jax.nn.relu(e.conv1(x))))
            f = jax.nn.relu(e.dense(f.reshape(f.shape[0], -1)) + self.encoder_label(lab))
            h = e.out(f)
        mean, log_var = jnp.split(h, 2, axis=-1)
        return mean, log_var

    def decode(self, z, y=None):
        """z [N, Z] (and y when conditional) -> logits [N, *E] (bernoulli) or (mean
        [N, *E], log_var []) (gaussian)."""
        lab = self._label(y, z.shape[0], "decode")
        h = z if lab is None else jnp.concatenate([z, lab], -1)
        out = self.decoder(h).reshape((z.shape[0],) + self.example_shape)
        if self.likelihood == "gaussian":
            return out, self.obs_log_var[...]
        return out

    def decode_mean(self, z, y=None):
        """The decoder's mean image E[x | z] (E[x | z, y]) in the data's scale: [N, *E]."""
        out = self.decode(z, y)
        if self.likelihood == "gaussian":
            return out[0]
        return nnx.sigmoid(out)


class Conditioned(NamedTuple):
    """A VAE's callables with the label bound (`given`): what `genjax.losses.vae`, the
    evaluation and the figures take."""
    encode: object        # x [B, *E] -> (mean, log_var) of q(z | x, y)
    decode: object        # z [N, Z] -> parameters of p(x | z, y)
    decode_mean: object   # z [N, Z] -> E[x | z, y]


def given(vae: VAE, y=None) -> Conditioned:
    """The callables of ``vae`` with the labels y bound (y [B] int, or a float encoding
    [B, K + 1]; decode accepts z of N = S * B rows, sample-major, as the IWAE bound and
    the importance-weighted estimate call it). For an unconditional VAE y must be None and
    these are its own methods, so the objectives compute exactly what they compute with
    ``vae.encode`` / ``vae.decode``."""
    if not conditioning.check_label("given: this VAE", vae.num_classes, y):
        return Conditioned(vae.encode, vae.decode, vae.decode_mean)
    return Conditioned(lambda x: vae.encode(x, y), lambda z: vae.decode(z, y),
                       lambda z: vae.decode_mean(z, y))
