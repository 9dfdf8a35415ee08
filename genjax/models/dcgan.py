"""DCGAN (Radford et al., 2016) sized for 28x28 digits and 32x32 CIFAR-10: transposed
convolutions in the generator, strided convolutions in the discriminator.

    generator(z [N, Z]) -> images [N, H, W, C] in [-1, 1] (tanh; data preprocess
                           "symmetric")
    discriminator(images [N, H, W, C]) -> logits [N]

Generator: dense to an (H/4, W/4, 2c) grid, batch norm, ReLU (no biases before the batch
norms: the batch mean removes them); 4x4 stride-2 transposed
convolution to (H/2, W/2, c), batch norm, ReLU; 4x4 stride-2 transposed convolution to
(H, W, C), tanh. Discriminator: 4x4 stride-2 convolutions to (H/2, W/2, c) and
(H/4, W/4, 2c), LeakyReLU(0.2) after each, then a dense logit. The discriminator has
no batch normalisation, so each example is scored on its own (WGAN-GP needs that, and
the real and generated halves can share one forward pass). Weights start from
N(0, 0.02^2) as in the paper; biases at 0.

The convolutions are `genjax.nn.loop_conv`'s: nnx.Conv / nnx.ConvTranspose's parameters
and outputs, with gradients that stay fast inside the compiled training loop on CPUs (6x
faster training steps here). The generator's batch norm uses the batch's own statistics
(`genjax.nn.batch_stat_norm`), so the modules hold parameters only; sample in batches of
tens of images or more.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax.models.gan import leaky_relu
from genjax.nn.batch_stat_norm import BatchStatNorm
from genjax.nn.loop_conv import Conv, ConvTranspose

INIT = nnx.initializers.normal(0.02)


def _check(image_shape):
    h, w, _ = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"DCGAN needs image sides divisible by 4, got {tuple(image_shape)}")


class DCGANGenerator(nnx.Module):
    """z [N, latent_dim] -> images [N, H, W, C] in [-1, 1]; ``channels`` = c (the
    second-to-last feature maps), the first grid has 2c. ``norm=False`` drops the batch
    norm (then each sample depends on its own z only)."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], *, channels: int = 64,
                 norm: bool = True, rngs: nnx.Rngs):
        _check(image_shape)
        h, w, c_out = image_shape
        self.latent_dim = latent_dim
        self.grid = (h // 4, w // 4, 2 * channels)
        # no bias before a batch norm: it would be subtracted again with the batch mean
        self.dense = nnx.Linear(latent_dim, math.prod(self.grid), use_bias=not norm,
                                kernel_init=INIT, rngs=rngs)
        self.deconv1 = ConvTranspose(2 * channels, channels, (4, 4), strides=2,
                                     padding="SAME", use_bias=not norm, kernel_init=INIT,
                                     rngs=rngs)
        self.deconv2 = ConvTranspose(channels, c_out, (4, 4), strides=2, padding="SAME",
                                     kernel_init=INIT, rngs=rngs)
        self.norm0 = BatchStatNorm(2 * channels) if norm else None
        self.norm1 = BatchStatNorm(channels) if norm else None

    def __call__(self, z):
        x = self.dense(z).reshape((z.shape[0],) + self.grid)           # [N, H/4, W/4, 2c]
        x = jax.nn.relu(self.norm0(x) if self.norm0 is not None else x)
        x = self.deconv1(x)                                              # [N, H/2, W/2, c]
        x = jax.nn.relu(self.norm1(x) if self.norm1 is not None else x)
        return jnp.tanh(self.deconv2(x))                                 # [N, H, W, C]


class DCGANDiscriminator(nnx.Module):
    """images [N, H, W, C] -> logits [N]."""

    def __init__(self, image_shape: Sequence[int], *, channels: int = 64, rngs: nnx.Rngs):
        _check(image_shape)
        h, w, c_in = image_shape
        self.conv1 = Conv(c_in, channels, (4, 4), strides=2, padding="SAME",
                          kernel_init=INIT, rngs=rngs)
        self.conv2 = Conv(channels, 2 * channels, (4, 4), strides=2, padding="SAME",
                          kernel_init=INIT, rngs=rngs)
        self.dense = nnx.Linear((h // 4) * (w // 4) * 2 * channels, 1, kernel_init=INIT,
                                rngs=rngs)

    def __call__(self, x):
        x = leaky_relu(self.conv1(x))                                    # [N, H/2, W/2, c]
        x = leaky_relu(self.conv2(x))                                    # [N, H/4, W/4, 2c]
        return self.dense(x.reshape(x.shape[0], -1))[:, 0]               # [N]
