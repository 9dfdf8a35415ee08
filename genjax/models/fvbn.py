"""The fully visible sigmoid belief network (FVBN): one logistic regression per pixel,

    p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j),

D(D-1)/2 + D parameters instead of the 2^D - 1 of a full table. ``context=k`` keeps only
the k previous pixels (the Markov / AR(k) truncation; 0 = all of them). Each conditional
is a logistic regression, so the log-likelihood is concave in (W, b).
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
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

    def pixel_log_probs(self, x):
        """log p(x_i | x_<i) for every pixel: [B, *E] -> [B, D] nats."""
        flat = x.reshape(x.shape[0], -1)
        logits = self.logits(flat)
        return flat * logits - jax.nn.softplus(logits)

    def conditional_log_prob(self, x, given_mask):
        """The sum over the pixels outside ``given_mask`` ([*E] or [B, *E], bool) of
        log p(x_i | x_<i): [B] nats; the exact log p(x_missing | x_given) when every given
        pixel comes before every missing one (e.g. the top rows)."""
        missing = ~jnp.broadcast_to(jnp.asarray(given_mask, bool).reshape(-1, self.dim),
                                    (x.shape[0], self.dim))
        return jnp.sum(jnp.where(missing, self.pixel_log_probs(x), 0.0), axis=-1)

    def sample(self, key, num: int, *, given=None, given_mask=None):
        """Ancestral sampling, O(D^2) per sample: step i computes only row i's logit.
        ``given`` [num, *E] / ``given_mask``: completion (`ancestral.sample_bernoulli`)."""
        W = self.W[...] * ar.fvbn_mask(self.dim, self.context, self.W[...].dtype)
        b = self.b[...]
        if given is not None:
            given = given.reshape(num, self.dim)
        x, log_p = ancestral.sample_bernoulli(
            key, lambda x, i: x @ W[i] + b[i], num, self.dim, dtype=W.dtype, given=given,
            given_mask=given_mask)
        return x.reshape((num,) + self.example_shape), log_p

    def complete(self, key, x, given_mask):
        """Fills in the pixels of x [N, *E] outside ``given_mask`` by sampling them given
        the rest: (completed x [N, *E], log p(completed part | given) [N])."""
        return self.sample(key, x.shape[0], given=x, given_mask=given_mask)
