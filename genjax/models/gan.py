"""GAN players for low-dimensional data (the 2-D toy densities): MLP generator and
discriminator. Modules hold parameters only; the objectives are in ``genjax.losses.gan``
and the two-player step in ``genjax.train.gan_step``.

    generator(z [N, Z]) -> x [N, D]          (unbounded outputs: points)
    discriminator(x [N, D]) -> logits [N]    (D(x) = sigmoid(logit), or a critic's score)

The image players (DCGAN) are in `genjax.models.dcgan`, with the same interface.
"""

from __future__ import annotations

from typing import Sequence

import jax
from flax import nnx

from genjax.nn import MLP


def leaky_relu(x):
    """LeakyReLU with slope 0.2, the usual GAN discriminator activation."""
    return jax.nn.leaky_relu(x, 0.2)


class MLPGenerator(nnx.Module):
    """z [N, latent_dim] -> x [N, out_dim]: ReLU MLP with a linear output layer."""

    def __init__(self, latent_dim: int, out_dim: int, *, hidden: Sequence[int] = (128, 128),
                 rngs: nnx.Rngs):
        self.latent_dim = latent_dim
        self.net = MLP(latent_dim, tuple(hidden), out_dim, activation=jax.nn.relu, rngs=rngs)

    def __call__(self, z):
        return self.net(z)


class MLPDiscriminator(nnx.Module):
    """x [N, in_dim] -> logits [N]: LeakyReLU(0.2) MLP with one linear output unit. No
    batch statistics, so each example is scored on its own (as WGAN-GP requires)."""

    def __init__(self, in_dim: int, *, hidden: Sequence[int] = (128, 128), rngs: nnx.Rngs):
        self.net = MLP(in_dim, tuple(hidden), 1, activation=leaky_relu, rngs=rngs)

    def __call__(self, x):
        return self.net(x.reshape(x.shape[0], -1))[:, 0]
