"""Group normalisation computed from per-channel statistics.

    norm = GroupNorm(num_features=16, num_groups=8, rngs=nnx.Rngs(0))
    y = norm(x)                      # x [B, ..., C] -> [B, ..., C]

The same function and parameters (``scale`` [C], ``bias`` [C], epsilon 1e-6) as
``flax.nnx.GroupNorm``: each example's channels are split into ``num_groups`` contiguous
groups, normalised by the mean and variance over the spatial axes and the group's
channels, then scaled and shifted per channel. Flax reshapes the activation to
[B, ..., G, C/G] and reduces over it; with few channels per group (2 in the default DDPM
U-Net) that puts a tiny axis last, which XLA:CPU does not vectorise: a forward and
backward pass over [64, 28, 28, 16] took 8.1 ms. Here the spatial reduction runs per
channel on [B, HW, C] (mean of x and of x^2), the groups are combined on the small
[B, C] statistics, and the normalisation is one per-channel multiply-add: 1.9 ms for the
same pass, the same values to float rounding (tested against flax, gradients included).
The variance is E[x^2] - E[x]^2 in float32, as flax's default ``use_fast_variance``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


def group_norm(x, scale, bias, num_groups: int, epsilon: float = 1e-6):
    """x [B, *S, C] -> [B, *S, C]; scale, bias [C]; C divisible by num_groups."""
    b, c = x.shape[0], x.shape[-1]
    if c % num_groups:
        raise ValueError(f"{c} channels do not split into {num_groups} groups")
    per = c // num_groups
    flat = x.reshape(b, -1, c)                                          # [B, HW, C]
    mean = jnp.mean(flat, axis=1).reshape(b, num_groups, per).mean(-1)  # [B, G]
    mean_sq = jnp.mean(flat * flat, axis=1).reshape(b, num_groups, per).mean(-1)
    inv = jax.lax.rsqrt(jnp.maximum(mean_sq - mean * mean, 0.0) + epsilon)
    mul = jnp.repeat(inv, per, axis=-1) * scale                         # [B, C]
    add = bias - jnp.repeat(mean, per, axis=-1) * mul
    shape = (b,) + (1,) * (x.ndim - 2) + (c,)
    return x * mul.reshape(shape) + add.reshape(shape)


class GroupNorm(nnx.Module):
    """Drop-in for ``nnx.GroupNorm(num_features, num_groups=...)`` on [B, ..., C] inputs,
    with the same parameter names, initial values (scale 1, bias 0) and epsilon."""

    def __init__(self, num_features: int, *, num_groups: int, epsilon: float = 1e-6,
                 rngs: nnx.Rngs | None = None):
        del rngs                                       # deterministic initialisation
        if num_features % num_groups:
            raise ValueError(f"{num_features} channels do not split into {num_groups} "
                             f"groups")
        self.num_features, self.num_groups, self.epsilon = num_features, num_groups, epsilon
        self.scale = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))

    def __call__(self, x):
        return group_norm(x, self.scale[...], self.bias[...], self.num_groups, self.epsilon)
