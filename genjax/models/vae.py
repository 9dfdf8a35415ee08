"""The VAE: a Gaussian encoder q(z | x) and a Bernoulli or Gaussian decoder p(x | z).

The module holds parameters only. Training and evaluation go through the pure objectives
in ``genjax.losses.vae`` with ``model.encode`` / ``model.decode`` as the callables.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
from flax import nnx

from genjax.nn import MLP, ConvDecoder, ConvEncoder

ARCHITECTURES = ("mlp", "conv")


class VAE(nnx.Module):
    """encode: x [B, *E] float -> (mean [B, Z], log_var [B, Z]);
    decode: z [N, Z] -> logits [N, *E] (bernoulli) or (mean [N, *E], log_var []) (gaussian,
    one learned scalar observation log-variance).

    arch="mlp" with hidden=(400,) and latent_dim=20 is the 784-400-20 reference model of
    Kingma & Welling (2014).
    """

    def __init__(self, example_shape: Sequence[int], *, latent_dim: int = 20,
                 hidden: Sequence[int] = (400,), arch: str = "mlp",
                 likelihood: str = "bernoulli", rngs: nnx.Rngs):
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown VAE arch {arch!r}; expected one of {ARCHITECTURES}")
        self.example_shape = tuple(example_shape)
        self.latent_dim = latent_dim
        self.arch = arch
        self.likelihood = likelihood
        d = math.prod(self.example_shape)
        if arch == "mlp":
            self.encoder = MLP(d, hidden, 2 * latent_dim, activation=nnx.relu, rngs=rngs)
            self.decoder = MLP(latent_dim, tuple(reversed(hidden)), d, activation=nnx.relu,
                               rngs=rngs)
        else:
            width = hidden[0] if hidden else 256
            self.encoder = ConvEncoder(self.example_shape, 2 * latent_dim, hidden=width,
                                       rngs=rngs)
            self.decoder = ConvDecoder(latent_dim, self.example_shape, hidden=width, rngs=rngs)
        if likelihood == "gaussian":
            self.obs_log_var = nnx.Param(jnp.zeros(()))

    def encode(self, x):
        if self.arch == "mlp":
            x = x.reshape(x.shape[0], -1)
        h = self.encoder(x)
        mean, log_var = jnp.split(h, 2, axis=-1)
        return mean, log_var

    def decode(self, z):
        out = self.decoder(z).reshape((z.shape[0],) + self.example_shape)
        if self.likelihood == "gaussian":
            return out, self.obs_log_var[...]
        return out

    def decode_mean(self, z):
        """The decoder's mean image E[x | z] in the data's scale: [N, *E]."""
        out = self.decode(z)
        if self.likelihood == "gaussian":
            return out[0]
        return nnx.sigmoid(out)
