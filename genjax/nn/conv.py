"""Small convolutional encoder/decoder pair for images whose sides are divisible by 4
(28x28 MNIST, 32x32 CIFAR-10, 8x8 digits)."""

from __future__ import annotations

import math

import jax
from flax import nnx

from genjax.nn.loop_conv import Conv, ConvTranspose


class ConvEncoder(nnx.Module):
    """x [B, H, W, C] -> [B, out_features]: two stride-2 3x3 convolutions (channels c, 2c),
    then a hidden dense layer."""

    def __init__(self, image_shape, out_features: int, *, channels: int = 32,
                 hidden: int = 256, rngs: nnx.Rngs):
        h, w, c = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvEncoder needs sides divisible by 4, got {image_shape}")
        self.conv1 = Conv(c, channels, (3, 3), strides=2, rngs=rngs)
        self.conv2 = Conv(channels, 2 * channels, (3, 3), strides=2, rngs=rngs)
        self.dense = nnx.Linear((h // 4) * (w // 4) * 2 * channels, hidden, rngs=rngs)
        self.out = nnx.Linear(hidden, out_features, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.conv1(x))
        x = jax.nn.relu(self.conv2(x))
        x = jax.nn.relu(self.dense(x.reshape(x.shape[0], -1)))
        return self.out(x)


class ConvDecoder(nnx.Module):
    """z [B, in_features] -> [B, H, W, C]: dense to (H/4, W/4, 2c), then two stride-2
    transposed convolutions. Outputs are unconstrained (logits or means)."""

    def __init__(self, in_features: int, image_shape, *, channels: int = 32,
                 hidden: int = 256, rngs: nnx.Rngs):
        h, w, c = image_shape
        self.grid = (h // 4, w // 4, 2 * channels)
        self.dense1 = nnx.Linear(in_features, hidden, rngs=rngs)
        self.dense2 = nnx.Linear(hidden, math.prod(self.grid), rngs=rngs)
        self.deconv1 = ConvTranspose(2 * channels, channels, (3, 3), strides=2, rngs=rngs)
        self.deconv2 = ConvTranspose(channels, c, (3, 3), strides=2, rngs=rngs)

    def __call__(self, z):
        x = jax.nn.relu(self.dense1(z))
        x = jax.nn.relu(self.dense2(x)).reshape((z.shape[0],) + self.grid)
        x = jax.nn.relu(self.deconv1(x))
        return self.deconv2(x)
