"""Class conditioning, the same way in every family.

A conditional model takes the class ``y`` as one more input of its pure functions: an
integer array [B] with values 0..K-1 for the K classes of the dataset, and K itself for
the **null class** ("no label"), which classifier-free guidance trains by dropping labels
(`drop_labels`) and samples from as the unconditional model. Every family feeds the label
to its networks through the same two encodings:

* `one_hot(y, K)` -> [B, K + 1] floats (the null class has its own slot), concatenated to
  an MLP's input (VAE encoder and decoder, MLP GAN generator, NADE/MADE, flow
  conditioners);
* `LabelEmbedding(K, dim)`: a learned table [K + 1, dim] (U-Net, DCGAN, projection
  discriminator).

    y = conditioning.drop_labels(key, y, rate=0.1, num_classes=10)   # [B], 10 = null
    h = jnp.concatenate([x.reshape(B, -1), conditioning.one_hot(y, 10)], -1)

The evaluation side (`balanced_labels`, the classifier's conditional accuracy and
per-class Fréchet distance) is `genjax.eval.conditional`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def null_label(num_classes: int) -> int:
    """The label of the null class ("unconditional"): ``num_classes``."""
    return int(num_classes)


def one_hot(y, num_classes: int):
    """Labels y [B] int in 0..K (K = num_classes = the null class) -> float32 [B, K + 1]."""
    return jax.nn.one_hot(y, num_classes + 1, dtype=jnp.float32)


def check_label(what: str, num_classes: int, y):
    """The label check every conditional model makes (``what`` names it in the message,
    e.g. "this NADE"): a class-conditional model (``num_classes`` K > 0) needs the labels
    y, and an unconditional one (K = 0 or None) must not get any, since it would silently
    ignore them (a bug seen in several codebases). Raises ValueError; returns whether the
    model is conditional."""
    if not num_classes:
        if y is not None:
            raise ValueError(f"{what} is unconditional (num_classes={num_classes}) and would "
                             "ignore the labels y: build it with num_classes=K to condition "
                             "on a class")
        return False
    if y is None:
        raise ValueError(f"{what} is class-conditional (num_classes={num_classes}): pass the "
                         f"labels y [B] (0..{num_classes - 1}, {num_classes} = the null "
                         "class)")
    return True


def context(what: str, num_classes: int, y, batch: int):
    """one_hot(y) [batch, K + 1] (y [batch] or a scalar label, broadcast) of a conditional
    model, None for an unconditional one (`check_label` first)."""
    if not check_label(what, num_classes, y):
        return None
    y = jnp.broadcast_to(jnp.asarray(y, jnp.int32), (batch,))
    return one_hot(y, num_classes)


def drop_labels(key, y, rate, num_classes: int):
    """Each label of y [B] replaced by the null class with probability ``rate`` (a float or
    a traced scalar; 0 keeps every label, 1 drops all) -> int32 [B]."""
    y = jnp.asarray(y, jnp.int32)
    drop = jax.random.uniform(key, y.shape) < rate
    return jnp.where(drop, jnp.int32(null_label(num_classes)), y)


def balanced_labels(num: int, num_classes: int) -> np.ndarray:
    """int32 [num]: ``num // K`` of each class in order 0, 0, ..., 1, 1, ..., then the
    remainder cycling from class 0 (100 per class for num = 1,000 and K = 10)."""
    per, rest = divmod(int(num), int(num_classes))
    return np.concatenate([np.repeat(np.arange(num_classes), per),
                           np.arange(rest) % num_classes]).astype(np.int32)


class LabelEmbedding(nnx.Module):
    """A learned vector per class and one for the null class: y [B] int in 0..K ->
    [B, dim]. Initialised N(0, 1/dim) so the embedding starts at the scale of a
    normalised feature."""

    def __init__(self, num_classes: int, dim: int, *, rngs: nnx.Rngs):
        self.num_classes = int(num_classes)
        self.table = nnx.Param(jax.random.normal(rngs.params(), (num_classes + 1, dim))
                               / np.sqrt(dim))

    def __call__(self, y):
        return jnp.take(self.table[...], jnp.asarray(y, jnp.int32), axis=0)
