"""NADE for binary data (Larochelle & Murray, 2011).

    h_i = sigmoid(W[:, <i] x_<i + c),   p(x_i = 1 | x_<i) = sigmoid(V_i . h_i + b_i)

Parameters W [H, D], c [H], V [D, H], b [D]; an explicit model whose log p(x) is exact
(`genjax.losses.autoregressive.nade_log_likelihood`, O(HD) per example) and whose
samples are exact (ancestral sampling, one lax.scan over the D dimensions carrying the
running pre-activation, also O(HD) per sample). The module holds parameters only.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import numerics, random as grandom
from genjax.losses import autoregressive as ar
from genjax.models import ancestral


class NADE(nnx.Module):
    """log_prob(x [B, *E] in {0, 1}) -> [B] nats; logits(x) -> [B, D];
    sample(key, num) -> (x [num, *E], log p [num]). D = prod(E), pixels in row-major order.

    ``bias_init`` [D]: initial b (e.g. the log-odds of the training pixel means, so the
    untrained model already matches the marginals); zeros by default.
    """

    def __init__(self, example_shape: Sequence[int], *, hidden: int = 500,
                 bias_init=None, rngs: nnx.Rngs):
        self.example_shape = tuple(example_shape)
        d = math.prod(self.example_shape)
        self.dim, self.hidden = d, hidden
        # W: small enough that a_i, a sum of up to D terms, starts in sigmoid's linear range
        self.W = nnx.Param(jax.random.normal(rngs.params(), (hidden, d)) / math.sqrt(d))
        self.c = nnx.Param(jnp.zeros((hidden,)))
        self.V = nnx.Param(jax.random.normal(rngs.params(), (d, hidden)) / math.sqrt(hidden))
        self.b = nnx.Param(jnp.zeros((d,)) if bias_init is None
                           else jnp.asarray(bias_init, jnp.float32).reshape(d))

    def _params(self):
        return dict(W=self.W[...], c=self.c[...], V=self.V[...], b=self.b[...])

    def logits(self, x):
        return ar.nade_logits(x.reshape(x.shape[0], -1), **self._params())

    def log_prob(self, x, *, groups: int = 1):
        """Exact log p(x): [B, *E] -> [B]; ``groups``: see `nade_log_likelihood`."""
        return ar.nade_log_likelihood(x.reshape(x.shape[0], -1), **self._params(),
                                      groups=groups)

    def sample(self, key, num: int):
        p = self._params()

        def step(a, k, inp):                                  # a [N, H]: running sum
            w_i, v_i, b_i = inp                               # [H], [H], []
            logits = numerics.sigmoid(a) @ v_i + b_i           # [N]
            x_i = grandom.bernoulli(k, jax.nn.sigmoid(logits)).astype(a.dtype)
            return (a + x_i[:, None] * w_i, x_i,
                    x_i * logits - numerics.softplus(logits))

        a0 = jnp.broadcast_to(p["c"], (num, self.hidden))
        _, x, log_p = ancestral.ancestral_sample(key, step, a0, self.dim,
                                                 xs=(p["W"].T, p["V"], p["b"]))
        return x.reshape((num,) + self.example_shape), log_p
