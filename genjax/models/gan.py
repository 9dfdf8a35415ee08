"""GAN players for low-dimensional data (the 2-D toy densities): MLP generator and
discriminator. Modules hold parameters only; the objectives are in ``genjax.losses.gan``
and the two-player step in ``genjax.train.gan_step``.

    generator(z [N, Z]) -> x [N, D]          (unbounded outputs: points)
    discriminator(x [N, D]) -> logits [N]    (D(x) = sigmoid(logit), or a critic's score)

Class-conditional players (``num_classes=K > 0``; `genjax.conditioning`) take the label
y [N] (int in 0..K-1, K the null class) as a second input: the generator reads
[z, one_hot(y)], the discriminator is a projection discriminator (Miyato & Koyama 2018,
`genjax.nn.projection`): D(x, y) = psi(phi(x)) + <embed(y), phi(x)> with phi(x) the last
hidden layer and psi the unconditional output unit.

    generator(z [N, Z], y [N]) -> x [N, D]
    discriminator(x [N, D], y [N]) -> logits [N]

The image players (DCGAN) are in `genjax.models.dcgan`, with the same interface.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import conditioning
from genjax.nn import MLP
from genjax.nn.projection import Projection


def leaky_relu(x):
    """LeakyReLU with slope 0.2, the usual GAN discriminator activation."""
    return jax.nn.leaky_relu(x, 0.2)


def check_label(module, y):
    """A conditional module needs y, an unconditional one must not get one (a label that
    would be silently ignored is an error)."""
    conditioning.check_label(type(module).__name__, getattr(module, "num_classes", 0), y)


class MLPGenerator(nnx.Module):
    """z [N, latent_dim] (and y [N] with ``num_classes``) -> x [N, out_dim]: ReLU MLP with
    a linear output layer; a conditional one reads [z, one_hot(y)] ([N, Z + K + 1])."""

    def __init__(self, latent_dim: int, out_dim: int, *, hidden: Sequence[int] = (128, 128),
                 num_classes: int = 0, rngs: nnx.Rngs):
        self.latent_dim = latent_dim
        self.num_classes = int(num_classes)
        in_dim = latent_dim + (self.num_classes + 1 if self.num_classes else 0)
        self.net = MLP(in_dim, tuple(hidden), out_dim, activation=jax.nn.relu, rngs=rngs)

    def __call__(self, z, y=None):
        check_label(self, y)
        if self.num_classes:
            z = jnp.concatenate([z, conditioning.one_hot(y, self.num_classes)], -1)
        return self.net(z)


class MLPDiscriminator(nnx.Module):
    """x [N, in_dim] (and y [N] with ``num_classes``) -> logits [N]: LeakyReLU(0.2) MLP
    with one linear output unit, plus the projection term <embed(y), phi(x)> on its last
    hidden layer phi when conditional. No batch statistics, so each example is scored on
    its own (as WGAN-GP requires). The conditional discriminator's MLP is initialised as
    the unconditional one of the same ``rngs`` (the embedding is drawn after it)."""

    def __init__(self, in_dim: int, *, hidden: Sequence[int] = (128, 128),
                 num_classes: int = 0, rngs: nnx.Rngs):
        self.net = MLP(in_dim, tuple(hidden), 1, activation=leaky_relu, rngs=rngs)
        self.num_classes = int(num_classes)
        self.projection = (Projection(num_classes, (in_dim, *hidden)[-1], rngs=rngs)
                           if self.num_classes else None)

    def features(self, x):
        """phi(x) [N, F]: the last hidden layer's activations (x itself without hidden
        layers)."""
        h = x.reshape(x.shape[0], -1)
        for layer in self.net.layers[:-1]:
            h = self.net.activation(layer(h))
        return h

    def __call__(self, x, y=None):
        check_label(self, y)
        if not self.num_classes:
            return self.net(x.reshape(x.shape[0], -1))[:, 0]
        phi = self.features(x)                                           # [N, F]
        return self.projection(self.net.layers[-1](phi)[:, 0], phi, y)   # [N]
