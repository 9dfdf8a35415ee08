"""Batch normalisation by the current batch's statistics only (no running averages).

DCGAN's generator normalises every hidden layer over the batch (Radford et al., 2016).
nnx.BatchNorm keeps running averages in mutable ``BatchStat`` variables, which a pure
step would have to thread through as extra state; this layer instead always uses the
statistics of the batch it is given, in training and in sampling alike (as the original
DCGAN code samples in training mode), so the module holds parameters only. The price: an
example's output depends on the rest of its batch, so sample in batches of more than a
few examples (genjax samples 64 or more at a time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx


class BatchStatNorm(nnx.Module):
    """x [B, ..., C] -> (x - mean) / sqrt(var + eps) * scale + bias, with mean and the
    biased variance over every axis but the last (the batch and spatial axes), as
    PyTorch's BatchNorm with ``track_running_stats=False``."""

    def __init__(self, num_features: int, *, eps: float = 1e-5, rngs: nnx.Rngs | None = None):
        del rngs                                        # deterministic initialisation
        self.scale = nnx.Param(jnp.ones((num_features,)))
        self.bias = nnx.Param(jnp.zeros((num_features,)))
        self.eps = eps

    def __call__(self, x):
        axes = tuple(range(x.ndim - 1))
        mean = jnp.mean(x, axes, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axes, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.scale[...] + self.bias[...]
