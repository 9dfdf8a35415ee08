"""The fully visible sigmoid belief network (FVBN): one logistic regression per pixel,

    p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j),

D(D-1)/2 + D parameters instead of the 2^D - 1 of a full table. ``context=k`` keeps only
the k previous pixels (the Markov / AR(k) truncation; 0 = all of them). Each conditional
is a logistic regression, so the log-likelihood is concave in (W, b).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp
from flax import nnx

from genjax.losses import autoregressive as ar
from genjax.models import ancestral


class FVBN(nnx.Module):
    """log_prob(x [B, *E] in {0, 1}) -> [B] nats; logits(x) -> [B, D];
    sample(key, num) -> (x [num, *E], log p [num]). W [D, D] starts at zero (only its
    strictly lower band is used), b [D] at ``bias_init`` (zeros by default)."""

    def __init__(self, example_shape: Sequence[int], *, context: int = 0, bias_init=None,
                 rngs: nnx.Rngs | None = None):
        del rngs                                   # deterministic initialisation
        self.example_shape = tuple(example_shape)
        d = math.prod(self.example_shape)
        self.dim, self.context = d, int(context)
        self.W = nnx.Param(jnp.zeros((d, d)))
        self.b = nnx.Param(jnp.zeros((d,)) if bias_init is None
                           else jnp.asarray(bias_init, jnp.float32).reshape(d))

    def logits(self, x):
        return ar.fvbn_logits(x.reshape(x.shape[0], -1), W=self.W[...], b=self.b[...],
                              context=self.context)

    def log_prob(self, x):
        return ar.fvbn_log_likelihood(x.reshape(x.shape[0], -1), W=self.W[...],
                                      b=self.b[...], context=self.context)

    def sample(self, key, num: int):
        """Ancestral sampling, O(D^2) per sample: step i computes only row i's logit."""
        W = self.W[...] * ar.fvbn_mask(self.dim, self.context, self.W[...].dtype)
        b = self.b[...]
        x, log_p = ancestral.sample_bernoulli(
            key, lambda x, i: x @ W[i] + b[i], num, self.dim, dtype=W.dtype)
        return x.reshape((num,) + self.example_shape), log_p
