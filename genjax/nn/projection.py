"""The projection discriminator's class term (Miyato & Koyama, 2018).

A class-conditional discriminator with features phi(x) [N, F] and an unconditional
head psi (a linear map to one logit) scores

    D(x, y) = psi(phi(x)) + <embed(y), phi(x)>

with embed a learned vector per class (`genjax.conditioning.LabelEmbedding`, [K + 1, F]).
This is the form the optimal discriminator takes when p(y | x) is a log-linear model of
phi(x): log p_data(x, y) / p_G(x, y) = log p_data(x) / p_G(x) + log p_data(y | x) /
p_G(y | x), the first term psi, the second (up to a y-free part absorbed into psi) the
inner product. Unlike concatenating the label to x, the label enters only through the
inner product, so D cannot ignore it while its embedding is non-zero, and with every
embedding at zero D is exactly the unconditional discriminator.

    head = Projection(num_classes=10, num_features=F, rngs=rngs)
    logits = head(psi(phi), phi, y)                 # [N]
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from genjax.conditioning import LabelEmbedding


def projection_logits(logits, features, embedding):
    """logits [N] (psi(phi(x))), features [N, F] (phi(x)), embedding [N, F] (embed(y))
    -> logits + <embedding, features> [N]."""
    if features.shape != embedding.shape or logits.shape != features.shape[:1]:
        raise ValueError(f"projection_logits: logits {logits.shape}, features "
                         f"{features.shape} and embedding {embedding.shape} should be "
                         "[N], [N, F] and [N, F]")
    return logits + jnp.sum(features * embedding, axis=-1)


class Projection(nnx.Module):
    """The class term of a projection discriminator: (logits [N], features [N, F], y [N]
    int in 0..K, K = the null class) -> logits + <embed(y), features> [N]."""

    def __init__(self, num_classes: int, num_features: int, *, rngs: nnx.Rngs):
        self.num_classes = int(num_classes)
        self.embed = LabelEmbedding(num_classes, num_features, rngs=rngs)

    def __call__(self, logits, features, y):
        return projection_logits(logits, features, self.embed(y))
