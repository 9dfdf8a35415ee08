"""Exact sampling from an autoregressive model: draw x_1, then x_2 | x_1, ... in order.

One compiled ``lax.scan`` over the D dimensions (never a Python loop over pixels), each
step drawing the whole batch of samples' next coordinate with its own key. The
models plug in a step function:

    step(carry, key, xs_t) -> (carry, x_t [N], log_p_t [N])

which draws coordinate t of every sample given the ``carry`` (whatever summarises the
coordinates drawn so far: a NADE's running pre-activation, or the partly filled samples
themselves) and returns the log-probability of what it drew; ``xs_t`` is the t-th slice
of a per-step input (e.g. row t of a weight matrix). The sum of the log_p_t is the
model's exact log p(x) of each sample, returned alongside: tests compare it with the
model's own log_prob.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import distributions as dist
from genjax import random as grandom


def ancestral_sample(key, step: Callable, init, num_steps: int, xs=None):
    """Runs ``step`` for t = 0..num_steps-1 in one lax.scan, step t with key
    fold_in(key, t). Returns (final carry, x [N, num_steps] with the coordinates in draw
    order, log p(x) [N] in nats)."""
    keys = jax.vmap(lambda t: jax.random.fold_in(key, t))(jnp.arange(num_steps))

    def body(carry, inp):
        k, x_t = inp
        carry, value, log_p = step(carry, k, x_t)
        return carry, (value, log_p)

    carry, (values, log_ps) = jax.lax.scan(body, init, (keys, xs), length=num_steps)
    return carry, jnp.moveaxis(values, 0, 1), jnp.sum(log_ps, axis=0)


def given_arrays(given, given_mask, num, dim, dtype):
    """(values [N, D], mask [N, D] bool) of the coordinates copied instead of drawn:
    ``given`` [N, ...] (D values per sample) and ``given_mask`` [...] or [N, ...] (bool, D
    entries per sample); both None: nothing given."""
    if given is None:
        return jnp.zeros((num, dim), dtype), jnp.zeros((num, dim), bool)
    given = jnp.asarray(given, dtype).reshape(num, dim)
    mask = jnp.broadcast_to(jnp.asarray(given_mask, bool).reshape(-1, dim), (num, dim))
    return given, mask


def _sample(key, draw: Callable, logits_at: Callable, num, dim, order, given, given_mask,
            dtype):
    order = jnp.arange(dim) if order is None else jnp.asarray(order)
    values, keep = given_arrays(given, given_mask, num, dim, dtype)

    def step(x, k, i):
        logits = logits_at(x, i)                                   # [N] or [N, K]
        drawn, log_p = draw(k, logits, values[:, i])
        value = jnp.where(keep[:, i], values[:, i], drawn)
        return (x.at[:, i].set(value), value,
                jnp.where(keep[:, i], 0.0, log_p))

    x0 = jnp.where(keep, values, 0).astype(dtype)
    x, _, log_p = ancestral_sample(key, step, x0, dim, xs=order)
    return x, log_p


def sample_bernoulli(key, logit_at: Callable, num: int, dim: int, *, order=None,
                     given=None, given_mask=None, dtype=jnp.float32):
    """Samples [num, dim] binary vectors from a model given by its conditional logits:
    ``logit_at(x [N, D], i) -> [N]``, the logit of p(x_i = 1 | x_<i), where x holds the
    coordinates drawn so far (earlier in ``order``) and zeros elsewhere; ``i`` is a traced
    int. ``order`` [D] int (default 0..D-1) is the order of the draws. Each step calls
    logit_at once, so a model whose logit_at is a full forward pass (a MADE) costs D
    passes. Returns (x [num, dim] in {0, 1}, log p(x) [num] in nats).

    Completion: with ``given`` [num, dim] and ``given_mask`` [dim] or [num, dim] (bool),
    the masked coordinates are copied from ``given`` instead of drawn, and log p is then
    the sum over the drawn coordinates only, log prod p(x_i | x_<i). When every given
    coordinate comes before every drawn one in ``order`` (e.g. the top rows of an image in
    raster order) the draws are exact samples of p(x_missing | x_given) and log p is its
    exact log; otherwise they condition only on the given values before them (a
    normalised distribution over the drawn coordinates, but not the model's conditional,
    which would need the marginal probability of the given values drawn later:
    `genjax.eval.completion`)."""

    def draw(k, logits, _):
        value = grandom.bernoulli(k, jax.nn.sigmoid(logits)).astype(dtype)
        return value, dist.log_bernoulli_logits(value, logits, 0)

    return _sample(key, draw, logit_at, num, dim, order, given, given_mask, dtype)


def sample_categorical(key, logits_at: Callable, num: int, dim: int, *, order=None,
                       given=None, given_mask=None, dtype=jnp.float32):
    """As `sample_bernoulli` for K-way conditionals: ``logits_at(x [N, D], i) -> [N, K]``,
    the logits of p(x_i = k | x_<i) over k = 0..K-1. Returns (x [num, dim] with values
    in 0..K-1 (as ``dtype``), log p [num] nats); ``given`` / ``given_mask`` as there."""

    def draw(k, logits, _):
        value = jax.random.categorical(k, logits, axis=-1)                 # [N]
        log_p = jnp.take_along_axis(jax.nn.log_softmax(logits, -1), value[:, None], -1)[:, 0]
        return value.astype(dtype), log_p

    return _sample(key, draw, logits_at, num, dim, order, given, given_mask, dtype)
