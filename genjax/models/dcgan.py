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

Class-conditional players (``num_classes=K > 0``; `genjax.conditioning`) take the label
y [N] (int in 0..K-1, K the null class) as a second input. The generator uses
**conditional batch norm** (de Vries et al. 2017; Miyato & Koyama 2018): after each batch
norm, a per-class gain and bias, h <- h * (1 + gamma(y)) + beta(y), both learned tables
(`ClassAffine`, one `LabelEmbedding(K, 2C)` per normalised layer). The label does not
enter before the normalisation, so it cannot dominate the batch variance and squash z's
variation (with a label embedding concatenated to z instead, the default DCGAN's
samples collapsed to about one image per class: classifier FD 106 against 7.3 for the
same run with conditional batch norm, configs/gan.py:conditional). Without batch norm (``norm=False``) the label embedding
(`LabelEmbedding(K, label_dim)`, label_dim = latent_dim by default) is concatenated to
z. The discriminator is a projection discriminator (Miyato & Koyama 2018,
`genjax.nn.projection`): D(x, y) = psi(phi(x)) + <embed(y), phi(x)> with phi(x) the
flattened (H/4, W/4, 2c) features and psi the dense logit.

    generator(z [N, Z], y [N]) -> images [N, H, W, C];  discriminator(images, y) -> [N]

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

from genjax.conditioning import LabelEmbedding
from genjax.models.gan import check_label, leaky_relu
from genjax.nn.batch_stat_norm import BatchStatNorm
from genjax.nn.loop_conv import Conv, ConvTranspose
from genjax.nn.projection import Projection

INIT = nnx.initializers.normal(0.02)


def _check(image_shape):
    h, w, _ = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"DCGAN needs image sides divisible by 4, got {tuple(image_shape)}")


class ClassAffine(nnx.Module):
    """The class-conditional part of a conditional batch norm: (h [N, ..., C] normalised,
    y [N]) -> h * (1 + gamma(y)) + beta(y), gamma and beta [N, C] from one learned table
    [K + 1, 2C] (`LabelEmbedding`, initialised N(0, 1/(2C)): the classes start close to
    the unconditional identity map)."""

    def __init__(self, num_classes: int, num_features: int, *, rngs: nnx.Rngs):
        self.embed = LabelEmbedding(num_classes, 2 * num_features, rngs=rngs)

    def __call__(self, h, y):
        gamma, beta = jnp.split(self.embed(y), 2, axis=-1)               # [N, C] each
        shape = (h.shape[0],) + (1,) * (h.ndim - 2) + (h.shape[-1],)
        return h * (1.0 + gamma.reshape(shape)) + beta.reshape(shape)


class DCGANGenerator(nnx.Module):
    """z [N, latent_dim] (and y [N] with ``num_classes``) -> images [N, H, W, C] in
    [-1, 1]; ``channels`` = c (the second-to-last feature maps), the first grid has 2c.
    ``norm=False`` drops the batch norm (then each sample depends on its own z only).
    Conditional: a per-class gain and bias after each batch norm (`ClassAffine`); without
    batch norm, [z, embed(y)] with a ``label_dim``-wide embedding (default latent_dim)."""

    def __init__(self, latent_dim: int, image_shape: Sequence[int], *, channels: int = 64,
                 norm: bool = True, num_classes: int = 0, label_dim: int | None = None,
                 rngs: nnx.Rngs):
        _check(image_shape)
        h, w, c_out = image_shape
        self.latent_dim = latent_dim
        self.num_classes = int(num_classes)
        concat = bool(num_classes) and not norm        # the label enters through z
        label_dim = (latent_dim if label_dim is None else int(label_dim)) if concat else 0
        self.grid = (h // 4, w // 4, 2 * channels)
        # no bias before a batch norm: it would be subtracted again with the batch mean
        self.dense = nnx.Linear(latent_dim + label_dim, math.prod(self.grid),
                                use_bias=not norm, kernel_init=INIT, rngs=rngs)
        self.deconv1 = ConvTranspose(2 * channels, channels, (4, 4), strides=2,
                                     padding="SAME", use_bias=not norm, kernel_init=INIT,
                                     rngs=rngs)
        self.deconv2 = ConvTranspose(channels, c_out, (4, 4), strides=2, padding="SAME",
                                     kernel_init=INIT, rngs=rngs)
        self.norm0 = BatchStatNorm(2 * channels) if norm else None
        self.norm1 = BatchStatNorm(channels) if norm else None
        self.embed = LabelEmbedding(num_classes, label_dim, rngs=rngs) if concat else None
        cbn = bool(num_classes) and norm
        self.affine0 = ClassAffine(num_classes, 2 * channels, rngs=rngs) if cbn else None
        self.affine1 = ClassAffine(num_classes, channels, rngs=rngs) if cbn else None

    def _norm(self, norm, affine, x, y):
        if norm is None:
            return x
        x = norm(x)
        return affine(x, y) if affine is not None else x

    def __call__(self, z, y=None):
        check_label(self, y)
        if self.embed is not None:
            z = jnp.concatenate([z, self.embed(y)], -1)                  # [N, Z + E]
        x = self.dense(z).reshape((z.shape[0],) + self.grid)           # [N, H/4, W/4, 2c]
        x = jax.nn.relu(self._norm(self.norm0, self.affine0, x, y))
        x = self.deconv1(x)                                              # [N, H/2, W/2, c]
        x = jax.nn.relu(self._norm(self.norm1, self.affine1, x, y))
        return jnp.tanh(self.deconv2(x))                                 # [N, H, W, C]


class DCGANDiscriminator(nnx.Module):
    """images [N, H, W, C] (and y [N] with ``num_classes``) -> logits [N]; conditional:
    plus <embed(y), phi(x)> (the projection term). The conditional discriminator's
    layers are initialised as the unconditional one's of the same ``rngs``."""

    def __init__(self, image_shape: Sequence[int], *, channels: int = 64,
                 num_classes: int = 0, rngs: nnx.Rngs):
        _check(image_shape)
        h, w, c_in = image_shape
        self.conv1 = Conv(c_in, channels, (4, 4), strides=2, padding="SAME",
                          kernel_init=INIT, rngs=rngs)
        self.conv2 = Conv(channels, 2 * channels, (4, 4), strides=2, padding="SAME",
                          kernel_init=INIT, rngs=rngs)
        num_features = (h // 4) * (w // 4) * 2 * channels
        self.dense = nnx.Linear(num_features, 1, kernel_init=INIT, rngs=rngs)
        self.num_classes = int(num_classes)
        self.projection = (Projection(num_classes, num_features, rngs=rngs)
                           if self.num_classes else None)

    def features(self, x):
        """phi(x) [N, (H/4) (W/4) 2c]: the flattened features under the dense logit."""
        x = leaky_relu(self.conv1(x))                                    # [N, H/2, W/2, c]
        x = leaky_relu(self.conv2(x))                                    # [N, H/4, W/4, 2c]
        return x.reshape(x.shape[0], -1)

    def __call__(self, x, y=None):
        check_label(self, y)
        phi = self.features(x)
        logits = self.dense(phi)[:, 0]                                   # [N]
        return self.projection(logits, phi, y) if self.num_classes else logits
