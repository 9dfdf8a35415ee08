"""MADE: a masked MLP whose output i sees only the inputs before i in an ordering
(Germain, Gregor, Murray & Larochelle, 2015).

Each unit k of hidden layer l gets a degree m_l(k) in 1..D-1; an input d gets its rank in
the ordering, m_0(d) = 1..D. A hidden unit sees the units of the layer below whose degree
is at most its own (m_l(k) >= m_{l-1}(k')), and output d sees the last hidden units of
degree strictly below its rank (m_0(d) > m_L(k)), so logit d depends only on the inputs
earlier in the ordering and the chain rule gives an exactly normalised
p(x) = prod_d p(x_d | x_<d) from one forward pass.

With ``num_masks`` K > 1 the model holds K (ordering, degrees) draws: orderings are
independent random permutations when ``ordering="random"`` (order-agnostic training) and
all the same otherwise (connectivity-agnostic), and the hidden degrees are redrawn per
mask. Training picks one mask per step; `log_prob_ensemble` is the exact log-likelihood
of the uniform mixture of the K autoregressive models, log (1/K) sum_k p_k(x).

The masks are `Mask` variables, not `nnx.Param`: split with
``nnx.split(model, nnx.Param, ...)`` and keep the second state out of the optimiser.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import logsumexp

from genjax.losses import autoregressive as ar
from genjax.models import ancestral

ORDERINGS = ("natural", "reverse", "random")


class Mask(nnx.Variable):
    """A fixed (non-trained) array of a model: connectivity masks, orderings."""


def made_masks(dim: int, hidden: Sequence[int], *, ordering: str = "natural",
               num_masks: int = 1, seed: int = 0):
    """Draws the connectivity of ``num_masks`` MADEs. Returns (orders [K, D] int32,
    masks: one float32 array [K, n_in, n_out] per layer, input->hidden ... ->output),
    numpy, deterministic in ``seed``. orders[k, t] is the dimension drawn t-th by mask k."""
    if ordering not in ORDERINGS:
        raise ValueError(f"unknown ordering {ordering!r}; expected one of {ORDERINGS}")
    if dim < 2:
        raise ValueError(f"MADE needs at least 2 dimensions, got {dim}")
    rng = np.random.default_rng(seed)
    orders, per_layer = [], [[] for _ in range(len(hidden) + 1)]
    for _ in range(num_masks):
        if ordering == "natural":
            order = np.arange(dim)
        elif ordering == "reverse":
            order = np.arange(dim)[::-1]
        else:
            order = rng.permutation(dim)
        rank = np.empty(dim, np.int64)
        rank[order] = np.arange(1, dim + 1)                    # m_0(d) in 1..D
        below = rank
        for l, width in enumerate(hidden):
            deg = rng.integers(int(below.min()) if l else 1, dim, size=width)  # 1..D-1
            per_layer[l].append((deg[None, :] >= below[:, None]).astype(np.float32))
            below = deg
        per_layer[-1].append((rank[None, :] > below[:, None]).astype(np.float32))
        orders.append(order.astype(np.int32))
    return np.stack(orders), [np.stack(m) for m in per_layer]


class MADE(nnx.Module):
    """logits(x [B, *E], mask=0) -> [B, D]; log_prob(x, mask=0) -> [B] nats;
    log_prob_ensemble(x) -> [B]; sample(key, num, mask=0) -> (x [num, *E], log p [num]).
    ``mask`` may be a traced int (order-agnostic training draws it per step). ReLU hidden
    layers; ``bias_init`` [D] sets the output bias (zeros by default)."""

    def __init__(self, example_shape: Sequence[int], *, hidden: Sequence[int] = (500,),
                 ordering: str = "natural", num_masks: int = 1, mask_seed: int = 0,
                 bias_init=None, rngs: nnx.Rngs):
        self.example_shape = tuple(example_shape)
        d = math.prod(self.example_shape)
        self.dim, self.num_masks = d, int(num_masks)
        orders, masks = made_masks(d, tuple(hidden), ordering=ordering,
                                   num_masks=num_masks, seed=mask_seed)
        self.orders = Mask(jnp.asarray(orders))
        self.masks = nnx.List([Mask(jnp.asarray(m)) for m in masks])
        sizes = [d, *hidden, d]
        self.kernels = nnx.List([
            nnx.Param(jax.random.normal(rngs.params(), (a, b)) / math.sqrt(a))
            for a, b in zip(sizes[:-1], sizes[1:])])
        out_bias = (jnp.zeros((d,)) if bias_init is None
                    else jnp.asarray(bias_init, jnp.float32).reshape(d))
        self.biases = nnx.List([nnx.Param(jnp.zeros((b,))) for b in sizes[1:-1]]
                               + [nnx.Param(out_bias)])

    def _logits_flat(self, x, mask):                        # x [B, D] -> [B, D]
        h = x
        n = len(self.kernels)
        for l in range(n):
            w = self.kernels[l][...] * self.masks[l][...][mask]
            h = h @ w + self.biases[l][...]
            if l < n - 1:
                h = jax.nn.relu(h)
        return h

    def logits(self, x, mask=0):
        return self._logits_flat(x.reshape(x.shape[0], -1), mask)

    def log_prob(self, x, mask=0):
        x = x.reshape(x.shape[0], -1)
        return ar.autoregressive_log_likelihood(
            x, logits_fn=lambda v: self._logits_flat(v, mask))

    def log_prob_ensemble(self, x):
        """log (1/K) sum_k p_k(x) over the K masks: [B, *E] -> [B] nats (exact)."""
        per_mask = jax.lax.map(lambda k: self.log_prob(x, k), jnp.arange(self.num_masks))
        return logsumexp(per_mask, axis=0) - math.log(self.num_masks)

    def sample(self, key, num: int, mask=0):
        """Ancestral sampling in mask ``mask``'s ordering: D forward passes in a scan."""
        x, log_p = ancestral.sample_bernoulli(
            key, lambda x, i: self._logits_flat(x, mask)[:, i], num, self.dim,
            order=self.orders[...][mask])
        return x.reshape((num,) + self.example_shape), log_p
