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

Class-conditional (``num_classes`` K > 0): p(x | y) = prod_d p(x_d | x_<d, y), with
one_hot(y) [K + 1] (`genjax.conditioning.one_hot`, the last slot the null class) as K + 1
extra inputs connected to every unit of the first hidden layer (their mask rows are all
ones: a label may inform every conditional, the first pixel's included) and, with
``label_to_output`` (the default), directly to every output logit through a kernel that
starts at zero. The autoregressive property in x is unchanged, so p(x | y) is exactly
normalised for every y.

Completion: ``sample(..., given=, given_mask=)`` keeps the given pixels and draws the
others in the mask's ordering; `conditional_log_prob` sums the missing pixels'
conditionals. It is the exact log p(x_missing | x_given) when every given pixel comes
first in the ordering (the top rows in the natural order); for another mask it is a
normalised distribution that conditions each missing pixel only on the given pixels
before it.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.scipy.special import logsumexp

from genjax import conditioning
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
    layers; ``bias_init`` [D] sets the output bias (zeros by default). ``num_classes``
    K > 0: class-conditional (see the module docstring); every method then takes the
    label ``y=`` (int [B] or a scalar, 0..K-1, K = the null class) and refuses to run
    without it."""

    def __init__(self, example_shape: Sequence[int], *, hidden: Sequence[int] = (500,),
                 ordering: str = "natural", num_masks: int = 1, mask_seed: int = 0,
                 bias_init=None, num_classes: int = 0, label_to_output: bool = True,
                 rngs: nnx.Rngs):
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
        self.num_classes, self.label_to_output = int(num_classes), bool(label_to_output)
        if self.num_classes:
            k1 = self.num_classes + 1
            # one_hot(y) -> the first hidden layer, unmasked (about the pixels' scale)
            self.label_kernel = nnx.Param(
                jax.random.normal(rngs.params(), (k1, sizes[1])) / math.sqrt(k1))
            if self.label_to_output:                      # one_hot(y) -> every logit
                self.label_out = nnx.Param(jnp.zeros((k1, d)))

    def _context(self, y, num: int):
        """one_hot(y) [num, K + 1], or None for the unconditional model."""
        return conditioning.context("this MADE", self.num_classes, y, num)

    def _logits_flat(self, x, mask, ctx=None):   # x [B, D], ctx [B, K + 1] -> [B, D]
        h = x
        n = len(self.kernels)
        for l in range(n):
            w = self.kernels[l][...] * self.masks[l][...][mask]
            h = h @ w + self.biases[l][...]
            if ctx is not None and l == 0:
                h = h + ctx @ self.label_kernel[...]
            if ctx is not None and l == n - 1 and self.label_to_output:
                h = h + ctx @ self.label_out[...]
            if l < n - 1:
                h = jax.nn.relu(h)
        return h

    def logits(self, x, mask=0, *, y=None):
        return self._logits_flat(x.reshape(x.shape[0], -1), mask,
                                 self._context(y, x.shape[0]))

    def log_prob(self, x, mask=0, *, y=None):
        x = x.reshape(x.shape[0], -1)
        ctx = self._context(y, x.shape[0])
        return ar.autoregressive_log_likelihood(
            x, logits_fn=lambda v: self._logits_flat(v, mask, ctx))

    def log_prob_ensemble(self, x, *, y=None):
        """log (1/K) sum_k p_k(x) over the K masks: [B, *E] -> [B] nats (exact)."""
        per_mask = jax.lax.map(lambda k: self.log_prob(x, k, y=y), jnp.arange(self.num_masks))
        return logsumexp(per_mask, axis=0) - math.log(self.num_masks)

    def pixel_log_probs(self, x, mask=0, *, y=None):
        """log p(x_d | x_<d (, y)) for every pixel d: [B, *E] -> [B, D] nats."""
        flat = x.reshape(x.shape[0], -1)
        logits = self.logits(flat, mask, y=y)
        return flat * logits - jax.nn.softplus(logits)

    def conditional_log_prob(self, x, given_mask, mask=0, *, y=None):
        """The sum over the pixels outside ``given_mask`` ([*E] or [B, *E], bool) of
        log p(x_d | x_<d (, y)) in mask ``mask``'s ordering: [B] nats; the exact
        log p(x_missing | x_given (, y)) when the given pixels come first in that
        ordering (module docstring)."""
        missing = ~jnp.broadcast_to(jnp.asarray(given_mask, bool).reshape(-1, self.dim),
                                    (x.shape[0], self.dim))
        return jnp.sum(jnp.where(missing, self.pixel_log_probs(x, mask, y=y), 0.0), -1)

    def sample(self, key, num: int, mask=0, *, y=None, given=None, given_mask=None):
        """Ancestral sampling in mask ``mask``'s ordering: D forward passes in a scan.
        ``y``: the labels of a conditional model; ``given`` [num, *E] / ``given_mask``:
        completion (`ancestral.sample_bernoulli`)."""
        ctx = self._context(y, num)
        if given is not None:
            given = given.reshape(num, self.dim)
        x, log_p = ancestral.sample_bernoulli(
            key, lambda x, i: self._logits_flat(x, mask, ctx)[:, i], num, self.dim,
            order=self.orders[...][mask], given=given, given_mask=given_mask)
        return x.reshape((num,) + self.example_shape), log_p

    def complete(self, key, x, given_mask, mask=0, *, y=None):
        """Fills in the pixels of x [N, *E] outside ``given_mask`` by sampling them given
        the rest: (completed x [N, *E], log p(completed part | given) [N])."""
        return self.sample(key, x.shape[0], mask, y=y, given=x, given_mask=given_mask)
