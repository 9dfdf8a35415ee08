"""Noise-conditional score networks (NCSN, Song & Ermon 2019) and energy networks.

A score network s(x, i) estimates grad_x log p_sigma_i(x), the score of the data smoothed
with N(0, sigma_i^2 I), at every level i of a noise ladder sigmas [L] (descending). Both
networks divide their output by sigma_i (NCSNv2, Song & Ermon 2020): the true noisy score
scales as 1 / sigma, so the network's raw output stays O(1) at every level.

    net = ScoreMLP(2, (128, 128), rngs=nnx.Rngs(0))           # 2-D points
    net = ScoreUNet((28, 28, 1), channels=16, rngs=nnx.Rngs(0))  # images
    s = net(x, level, sigmas)       # x [B, *E], level [B] (or []) int32, sigmas [L] -> [B, *E]

An energy network E(x) [B] defines p(x) proportional to exp(-E(x)); its score is
-grad_x E (`energy_score`), so the same samplers (`genjax.mcmc`) draw from either.
"""

from __future__ import annotations

from typing import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax.nn.loop_conv import Conv
from genjax.nn.mlp import MLP
from genjax.nn.unet import UNet, timestep_embedding


def _level_sigma(level, sigmas, batch: int):
    """(the level as an embedding "step" [B], sigma_level [B]): levels 0..L-1 are spread
    over 0..1000, the range the sinusoidal embedding resolves (as the DDPM's steps)."""
    level = jnp.broadcast_to(jnp.asarray(level, jnp.int32), (batch,))
    step = level.astype(jnp.float32) * (1000.0 / len(sigmas))
    return step, jnp.asarray(sigmas, jnp.float32)[level]              # [B], [B]


class ScoreMLP(nnx.Module):
    """s(x, i) = MLP([x, emb(i)]) / sigma_i for vectors x [B, D]; emb is the sinusoidal
    embedding (width ``embed``) of the level index (spread over 0..1000); SiLU activations (smooth, so that
    sliced score matching's Jacobian-vector products are informative)."""

    def __init__(self, dim: int, hidden: Sequence[int], *, embed: int = 32,
                 rngs: nnx.Rngs):
        self.embed = embed
        self.mlp = MLP(dim + embed, tuple(hidden), dim, activation=jax.nn.silu, rngs=rngs)

    def __call__(self, x, level, sigmas):
        level, sigma = _level_sigma(level, sigmas, x.shape[0])
        h = jnp.concatenate([x, timestep_embedding(level, self.embed)], -1)
        return self.mlp(h) / sigma[:, None]


class ScoreUNet(nnx.Module):
    """s(x, i) = UNet(x, i) / sigma_i for images x [B, H, W, C] (the DDPM's U-Net, with
    the level index in place of the diffusion step)."""

    def __init__(self, image_shape: Sequence[int], *, rngs: nnx.Rngs, **unet_kwargs):
        self.unet = UNet(image_shape, rngs=rngs, **unet_kwargs)

    def __call__(self, x, level, sigmas, *, key=None):
        level, sigma = _level_sigma(level, sigmas, x.shape[0])
        return self.unet(x, level, key=key) / sigma[:, None, None, None]


class EnergyMLP(nnx.Module):
    """E(x) [B] for vectors x [B, D]: an MLP with SiLU activations (smooth energies give
    smooth Langevin dynamics) and a scalar output."""

    def __init__(self, dim: int, hidden: Sequence[int], *, rngs: nnx.Rngs):
        self.mlp = MLP(dim, tuple(hidden), 1, activation=jax.nn.silu, rngs=rngs)

    def __call__(self, x):
        return self.mlp(x)[:, 0]


class EnergyConvNet(nnx.Module):
    """E(x) [B] for images x [B, H, W, C] in [-1, 1]: 3x3 convolutions, stride 2 at each
    of ``levels`` halvings (width doubling), SiLU, global sum pooling, a linear head (the
    small IGEBM / short-run EBM architecture of Du & Mordatch 2019, Nijkamp et al. 2019,
    without spectral normalisation). The convolutions are genjax's CPU-tuned ones
    (`genjax.nn.loop_conv`, first-order gradients: enough for contrastive divergence,
    whose samples are not differentiated through)."""

    def __init__(self, image_shape: Sequence[int], *, channels: int = 32, levels: int = 2,
                 rngs: nnx.Rngs):
        c = image_shape[-1]
        convs = [Conv(c, channels, (3, 3), rngs=rngs)]
        ch = channels
        for _ in range(levels):
            convs.append(Conv(ch, 2 * ch, (3, 3), strides=2, rngs=rngs))
            ch *= 2
        convs.append(Conv(ch, ch, (3, 3), rngs=rngs))
        self.convs = nnx.List(convs)
        self.head = nnx.Linear(ch, 1, rngs=rngs)

    def __call__(self, x):
        h = x
        for conv in self.convs:
            h = jax.nn.silu(conv(h))
        return self.head(h.sum((1, 2)))[:, 0]


def energy_score(energy_fn: Callable) -> Callable:
    """The score -grad_x E(x) [B, *E] of an energy ``energy_fn(x [B, *E]) -> [B]``
    (examples independent, so the gradient of the sum)."""
    return lambda x: -jax.grad(lambda y: energy_fn(y).sum())(x)
