"""The DDPM U-Net (Ho et al. 2020), in Flax NNX: sinusoidal time embedding, residual
blocks with group norm and dropout, self-attention at chosen resolutions, skip
connections between the down and up paths.

    unet = UNet((28, 28, 1), channels=32, channel_mults=(1, 2, 2), rngs=nnx.Rngs(0))
    out = unet(x, t, key=dropout_key)     # x [B, H, W, C], t [B] int -> [B, H, W, C]

    cond = UNet((28, 28, 1), num_classes=10, rngs=nnx.Rngs(0))   # class-conditional
    out = cond(x, t, y)                   # y [B] int in 0..10, 10 = the null class

Each level after the first halves the resolution (28 -> 14 -> 7; 32 -> 16 -> 8 -> 4);
sides must be divisible by 2^(levels - 1). Dropout needs ``key`` (no key: no dropout, as
at evaluation); the module stores no random state. The convolutions are
`genjax.nn.loop_conv`'s: nnx.Conv's parameters and values, with gradients that stay fast
inside the training loop's `lax.scan` on CPUs.

With ``num_classes`` = K the U-Net is class-conditional (classifier-free guidance, Ho &
Salimans 2022): a `genjax.conditioning.LabelEmbedding` [K + 1, 4 * channels] of the label
y (K = the null class, "no label") is added to the time embedding, so that every residual
block sees it. It is created after every other layer, so the other parameters of a
conditional U-Net are those of the unconditional one with the same ``rngs``, and an
unconditional U-Net (``num_classes`` None) is the network it always was, bit for bit. A
conditional U-Net needs y and an unconditional one refuses it: a label is never dropped
silently.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import random as grandom
from genjax import conditioning
from genjax.conditioning import LabelEmbedding
from genjax.nn.group_norm import GroupNorm
from genjax.nn.loop_conv import Conv


def timestep_embedding(t, dim: int, max_period: float = 10_000.0):
    """Sinusoidal embedding of integer steps t [B] -> [B, dim] (sin half, cos half)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
    args = t.astype(jnp.float32)[:, None] * freqs[None]
    return jnp.concatenate([jnp.sin(args), jnp.cos(args)], axis=-1)


def _dropout(key, x, rate: float):
    if key is None or rate == 0.0:
        return x
    keep = grandom.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def _norm(channels: int, groups: int, rngs):
    return GroupNorm(channels, num_groups=math.gcd(groups, channels), rngs=rngs)


class ResBlock(nnx.Module):
    """GroupNorm-SiLU-Conv, + projected time embedding, GroupNorm-SiLU-Dropout-Conv, plus a
    (1x1-projected) skip."""

    def __init__(self, cin: int, cout: int, temb_dim: int, *, groups: int, dropout: float,
                 rngs: nnx.Rngs):
        self.norm1, self.conv1 = _norm(cin, groups, rngs), Conv(cin, cout, (3, 3), rngs=rngs)
        self.temb = nnx.Linear(temb_dim, cout, rngs=rngs)
        self.norm2, self.conv2 = _norm(cout, groups, rngs), Conv(cout, cout, (3, 3), rngs=rngs)
        self.skip = Conv(cin, cout, (1, 1), rngs=rngs) if cin != cout else None
        self.dropout = dropout

    def __call__(self, x, temb, key=None):
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.temb(jax.nn.silu(temb))[:, None, None, :]
        h = self.conv2(_dropout(key, jax.nn.silu(self.norm2(h)), self.dropout))
        return (x if self.skip is None else self.skip(x)) + h


class Attention(nnx.Module):
    """Single-head self-attention over the H*W positions, with a residual connection."""

    def __init__(self, channels: int, *, groups: int, rngs: nnx.Rngs):
        self.norm = _norm(channels, groups, rngs)
        self.qkv = nnx.Linear(channels, 3 * channels, rngs=rngs)
        self.out = nnx.Linear(channels, channels, rngs=rngs)

    def __call__(self, x, temb=None, key=None):
        b, h, w, c = x.shape
        q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 3 * c), 3, axis=-1)
        weights = jax.nn.softmax(jnp.einsum("bic,bjc->bij", q, k) / math.sqrt(c), axis=-1)
        return x + self.out(jnp.einsum("bij,bjc->bic", weights, v)).reshape(b, h, w, c)


class Downsample(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = Conv(channels, channels, (3, 3), strides=2, rngs=rngs)

    def __call__(self, x, temb=None, key=None):
        return self.conv(x)


class Upsample(nnx.Module):
    def __init__(self, channels: int, *, rngs: nnx.Rngs):
        self.conv = Conv(channels, channels, (3, 3), rngs=rngs)

    def __call__(self, x, temb=None, key=None):
        b, h, w, c = x.shape
        return self.conv(jax.image.resize(x, (b, 2 * h, 2 * w, c), "nearest"))


class UNet(nnx.Module):
    """x_t [B, H, W, C] and steps t [B] -> [B, H, W, C] (eps, x_0 or v, as trained).

    channels: width of the first level; channel_mults: width multiplier per level;
    num_res_blocks: residual blocks per level on the way down (one more on the way up);
    attention_resolutions: sides (e.g. 7 or 16) at which self-attention follows each
    block; dropout: rate inside the residual blocks (with a key); num_classes: K for a
    class-conditional U-Net, called with labels y [B] in 0..K (K = null), None (default)
    for an unconditional one.
    """

    def __init__(self, image_shape: Sequence[int], *, channels: int = 32,
                 channel_mults: Sequence[int] = (1, 2, 2), num_res_blocks: int = 1,
                 attention_resolutions: Sequence[int] = (7,), dropout: float = 0.0,
                 groups: int = 8, num_classes: int | None = None, rngs: nnx.Rngs):
        h, w, c = image_shape
        if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive int or None, got {num_classes!r}")
        levels = len(channel_mults)
        if h % 2 ** (levels - 1) or w % 2 ** (levels - 1):
            raise ValueError(f"a U-Net with {levels} levels needs sides divisible by "
                             f"{2 ** (levels - 1)}, got {tuple(image_shape)}")
        temb_dim = 4 * channels
        self.channels = channels
        self.temb1 = nnx.Linear(channels, temb_dim, rngs=rngs)
        self.temb2 = nnx.Linear(temb_dim, temb_dim, rngs=rngs)
        self.conv_in = Conv(c, channels, (3, 3), rngs=rngs)
        res = dict(groups=groups, dropout=dropout, rngs=rngs)

        down, skips, ch, side = [], [channels], channels, h
        for i, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                down.append(ResBlock(ch, channels * mult, temb_dim, **res))
                ch = channels * mult
                if side in attention_resolutions:
                    down.append(Attention(ch, groups=groups, rngs=rngs))
                skips.append(ch)
            if i < levels - 1:
                down.append(Downsample(ch, rngs=rngs))
                skips.append(ch)
                side //= 2
        self.down = nnx.List(down)
        self.mid = nnx.List([ResBlock(ch, ch, temb_dim, **res),
                             Attention(ch, groups=groups, rngs=rngs),
                             ResBlock(ch, ch, temb_dim, **res)])
        up = []
        for i, mult in reversed(list(enumerate(channel_mults))):
            for _ in range(num_res_blocks + 1):
                up.append(ResBlock(ch + skips.pop(), channels * mult, temb_dim, **res))
                ch = channels * mult
                if side in attention_resolutions:
                    up.append(Attention(ch, groups=groups, rngs=rngs))
            if i > 0:
                up.append(Upsample(ch, rngs=rngs))
                side *= 2
        self.up = nnx.List(up)
        self.norm_out = _norm(ch, groups, rngs)
        self.conv_out = Conv(ch, c, (3, 3), rngs=rngs)
        # last, so that the layers above draw the same initial values as without it
        self.num_classes = num_classes
        self.label_emb = (LabelEmbedding(num_classes, temb_dim, rngs=rngs)
                          if num_classes is not None else None)

    def __call__(self, x, t, y=None, *, key=None):
        """x [B, H, W, C], t [B] int, y [B] int in 0..K (conditional U-Net only; K = the
        null class) -> [B, H, W, C]."""
        temb = self.temb2(jax.nn.silu(self.temb1(timestep_embedding(t, self.channels))))
        if conditioning.check_label("this U-Net", self.num_classes, y):
            if jnp.shape(y) != (x.shape[0],):
                raise ValueError(f"labels y must be [B] = [{x.shape[0]}], got shape "
                                 f"{jnp.shape(y)}")
            temb = temb + self.label_emb(y)
        keys = iter(jax.random.split(key, len(self.down) + len(self.mid) + len(self.up))
                    if key is not None else [None] * (len(self.down) + len(self.mid) + len(self.up)))
        h = self.conv_in(x)
        hs = [h]
        for block in self.down:
            h = block(h, temb, next(keys))
            if not isinstance(block, Attention):
                hs.append(h)
            else:
                hs[-1] = h
        for block in self.mid:
            h = block(h, temb, next(keys))
        for block in self.up:
            if isinstance(block, ResBlock):
                h = jnp.concatenate([h, hs.pop()], axis=-1)
            h = block(h, temb, next(keys))
        return self.conv_out(jax.nn.silu(self.norm_out(h)))
