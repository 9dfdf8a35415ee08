"""NADE for binary data (Larochelle & Murray, 2011), unconditional or class-conditional.

    h_i = sigmoid(W[:, <i] x_<i + c),   p(x_i = 1 | x_<i) = sigmoid(V_i . h_i + b_i)

Parameters W [H, D], c [H], V [D, H], b [D]; an explicit model whose log p(x) is exact
(`genjax.losses.autoregressive.nade_log_likelihood`, O(HD) per example) and whose
samples are exact (ancestral sampling, one lax.scan over the D dimensions carrying the
running pre-activation, also O(HD) per sample). The module holds parameters only.

Class-conditional (``num_classes`` K > 0): p(x | y) = prod_i p(x_i | x_<i, y), the label
entering every conditional through the shared pre-activation,

    h_i = sigmoid(c + U one_hot(y) + W[:, <i] x_<i)           U [H, K + 1]

(`conditional_nade_log_likelihood`; `genjax.conditioning.one_hot`, whose last slot is
the null class K). Still O(HD) per example, and with K = 10 the model's own
log p(x) = log sum_y p(y) p(x | y) is exact too (`genjax.eval.completion.class_log_likelihoods`).

Completion: with ``given`` / ``given_mask`` the sampler keeps the given pixels and draws
the others in the model's order (row-major), still one scan; ``conditional_log_prob``
is the sum of the missing pixels' conditionals. When every given pixel comes before every
missing one (the top rows of an image) that is the exact log p(x_missing | x_given) =
log p(x) - log p(x_given), and the draws are exact samples of it. For any other mask it
is a normalised distribution over the missing pixels that conditions each one only on the
given pixels before it: the exact conditional would need the marginal of the given
pixels, which only a prefix of the order has in closed form.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from genjax import conditioning, numerics, random as grandom
from genjax.losses import autoregressive as ar
from genjax.models import ancestral


class NADE(nnx.Module):
    """log_prob(x [B, *E] in {0, 1}) -> [B] nats; logits(x) -> [B, D];
    sample(key, num) -> (x [num, *E], log p [num]). D = prod(E), pixels in row-major order.

    ``bias_init`` [D]: initial b (e.g. the log-odds of the training pixel means, so the
    untrained model already matches the marginals); zeros by default.

    ``num_classes`` K > 0: a class-conditional NADE; every method then takes the label
    ``y=`` (int [B], or a scalar for all, 0..K-1, K = the null class) and refuses to run
    without it. K = 0 (default): no label parameter, the unconditional model.
    """

    def __init__(self, example_shape: Sequence[int], *, hidden: int = 500,
                 bias_init=None, num_classes: int = 0, rngs: nnx.Rngs):
        self.example_shape = tuple(example_shape)
        d = math.prod(self.example_shape)
        self.dim, self.hidden = d, hidden
        # W: small enough that a_i, a sum of up to D terms, starts in sigmoid's linear range
        self.W = nnx.Param(jax.random.normal(rngs.params(), (hidden, d)) / math.sqrt(d))
        self.c = nnx.Param(jnp.zeros((hidden,)))
        self.V = nnx.Param(jax.random.normal(rngs.params(), (d, hidden)) / math.sqrt(hidden))
        self.b = nnx.Param(jnp.zeros((d,)) if bias_init is None
                           else jnp.asarray(bias_init, jnp.float32).reshape(d))
        self.num_classes = int(num_classes)
        if self.num_classes:
            # a column per class and the null class's; the label's shift of the hidden
            # pre-activation starts at the scale of the pixels' (about 0.3)
            k1 = self.num_classes + 1
            self.U = nnx.Param(jax.random.normal(rngs.params(), (hidden, k1)) / math.sqrt(k1))

    def _params(self):
        return dict(W=self.W[...], c=self.c[...], V=self.V[...], b=self.b[...])

    def _context(self, y, num: int):
        """one_hot(y) [num, K + 1], or None for the unconditional model."""
        return conditioning.context("this NADE", self.num_classes, y, num)

    def logits(self, x, *, y=None):
        flat = x.reshape(x.shape[0], -1)
        ctx = self._context(y, x.shape[0])
        if ctx is None:
            return ar.nade_logits(flat, **self._params())
        return ar.conditional_nade_logits(flat, ctx, **self._params(), U=self.U[...])

    def log_prob(self, x, *, y=None, groups: int = 1):
        """Exact log p(x) (or log p(x | y)): [B, *E] -> [B]; ``groups``: see
        `nade_log_likelihood`."""
        flat = x.reshape(x.shape[0], -1)
        ctx = self._context(y, x.shape[0])
        if ctx is None:
            return ar.nade_log_likelihood(flat, **self._params(), groups=groups)
        return ar.conditional_nade_log_likelihood(flat, ctx, **self._params(),
                                                  U=self.U[...], groups=groups)

    def pixel_log_probs(self, x, *, y=None):
        """log p(x_i | x_<i (, y)) for every pixel: [B, *E] -> [B, D] nats."""
        flat = x.reshape(x.shape[0], -1)
        logits = self.logits(flat, y=y)
        return flat * logits - numerics.softplus(logits)

    def conditional_log_prob(self, x, given_mask, *, y=None):
        """The sum over the pixels outside ``given_mask`` ([*E] or [B, *E], bool) of
        log p(x_i | x_<i (, y)): [B] nats. Exact log p(x_missing | x_given (, y)) when
        every given pixel comes before every missing one in row-major order (see the
        module docstring)."""
        missing = ~jnp.broadcast_to(jnp.asarray(given_mask, bool).reshape(-1, self.dim),
                                    (x.shape[0], self.dim))
        return jnp.sum(jnp.where(missing, self.pixel_log_probs(x, y=y), 0.0), axis=-1)

    def sample(self, key, num: int, *, y=None, given=None, given_mask=None):
        """Ancestral samples (x [num, *E], log p [num] nats), one scan over the pixels.
        ``y``: the labels of a conditional model. ``given`` [num, *E] and ``given_mask``
        ([*E] or per sample, bool): completion, the given pixels kept and only the others
        drawn; log p is then `conditional_log_prob` of the result."""
        p = self._params()
        ctx = self._context(y, num)
        a0 = (jnp.broadcast_to(p["c"], (num, self.hidden)) if ctx is None
              else p["c"] + ctx @ self.U[...].T)                    # [N, H]
        if given is None:
            def step(a, k, inp):                                  # a [N, H]: running sum
                w_i, v_i, b_i = inp                               # [H], [H], []
                logits = numerics.sigmoid(a) @ v_i + b_i           # [N]
                x_i = grandom.bernoulli(k, jax.nn.sigmoid(logits)).astype(a.dtype)
                return (a + x_i[:, None] * w_i, x_i,
                        x_i * logits - numerics.softplus(logits))

            xs = (p["W"].T, p["V"], p["b"])
        else:
            values, keep = ancestral.given_arrays(given, given_mask, num, self.dim,
                                                  a0.dtype)

            def step(a, k, inp):
                w_i, v_i, b_i, g_i, m_i = inp                      # ..., [N], [N] bool
                logits = numerics.sigmoid(a) @ v_i + b_i
                drawn = grandom.bernoulli(k, jax.nn.sigmoid(logits)).astype(a.dtype)
                x_i = jnp.where(m_i, g_i, drawn)
                log_p = jnp.where(m_i, 0.0, x_i * logits - numerics.softplus(logits))
                return a + x_i[:, None] * w_i, x_i, log_p

            xs = (p["W"].T, p["V"], p["b"], values.T, keep.T)
        _, x, log_p = ancestral.ancestral_sample(key, step, a0, self.dim, xs=xs)
        return x.reshape((num,) + self.example_shape), log_p

    def complete(self, key, x, given_mask, *, y=None):
        """Fills in the pixels of x [N, *E] outside ``given_mask`` by sampling them given
        the rest: (completed x [N, *E], log p(completed part | given) [N])."""
        return self.sample(key, x.shape[0], y=y, given=x, given_mask=given_mask)
