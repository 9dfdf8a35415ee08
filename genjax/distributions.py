"""Log-densities and closed-form KL divergences, element-wise over a batch.

Conventions: every function reduces over the trailing ``event_ndim`` axes (the data or
latent dimensions) and keeps the leading (batch / sample) axes, so a [B, Z] input gives a
[B] output and a [K, B, Z] input gives [K, B]. Units are nats.

Shapes are checked at trace time (`genjax.shapes`; a ``ValueError`` names the argument):
the first argument (x, or the mean of q) has at least ``event_ndim`` axes, and the others
broadcast against it without widening its event axes: their trailing ``event_ndim`` axes
are 1 or equal to its own. So parameters may be shared ([Z] or scalars) and leading axes
broadcast freely (z [K, B, Z] against mean [B, Z]), but x [B, 1] against logits [B, 784]
is an error, not a sum over 784 copies of one pixel.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from genjax import numerics, random as grandom
from genjax.shapes import Shapes

LOG_2PI = math.log(2.0 * math.pi)


def sum_event(v: jax.Array, event_ndim: int = 1) -> jax.Array:
    """Sums ``v`` over its last ``event_ndim`` axes: [..., *E] -> [...]; v has at least
    ``event_ndim`` axes."""
    Shapes("distributions.sum_event").event("v", v, event_ndim)
    if event_ndim == 0:
        return v
    # One reduction over a flat last axis: faster on CPU than a multi-axis sum over e.g.
    # [B, 28, 28, 1], and the same numbers up to float summation order.
    return jnp.sum(v.reshape(v.shape[:v.ndim - event_ndim] + (-1,)), axis=-1)


def log_normal_diag(x, mean, log_var, event_ndim: int = 1):
    """log N(x | mean, diag(exp(log_var))), summed over the event axes: x [..., *E] ->
    [...]; nats. mean and log_var broadcast against x, not widening E."""
    Shapes("distributions.log_normal_diag").event("x", x, event_ndim, mean=mean,
                                                  log_var=log_var)
    lp = -0.5 * (LOG_2PI + log_var + (x - mean) ** 2 * jnp.exp(-log_var))
    return sum_event(jnp.broadcast_to(lp, jnp.broadcast_shapes(x.shape, jnp.shape(mean),
                                                               jnp.shape(log_var))), event_ndim)


def log_standard_normal(x, event_ndim: int = 1):
    """log N(x | 0, I), summed over the event axes: x [..., *E] -> [...]; nats."""
    Shapes("distributions.log_standard_normal").event("x", x, event_ndim)
    return sum_event(-0.5 * (LOG_2PI + x**2), event_ndim)


def log_bernoulli_logits(x, logits, event_ndim: int = 1):
    """log Bernoulli(x | sigmoid(logits)) for x in [0, 1] (soft targets allowed), summed over
    the event axes: x [..., *E] -> [...], logits broadcasting against x, not widening E;
    nats. Computed as x*l - softplus(l), which equals
    x*log s(l) + (1-x)*log s(-l), is stable for large |l| and has the right gradient
    sigmoid(l) - x everywhere (`genjax.numerics.softplus`)."""
    Shapes("distributions.log_bernoulli_logits").event("x", x, event_ndim, logits=logits)
    lp = x * logits - numerics.softplus(logits)
    return sum_event(lp, event_ndim)


def normal_kl(mean_q, log_var_q, mean_p, log_var_p, event_ndim: int = 1):
    """KL(N(mean_q, diag var_q) || N(mean_p, diag var_p)) in closed form, summed over the
    event axes; nats. mean_q [..., *E] -> [...]; the others broadcast against mean_q,
    not widening E: [B, Z] -> [B]."""
    Shapes("distributions.normal_kl").event("mean_q", mean_q, event_ndim, log_var_q=log_var_q,
                                            mean_p=mean_p, log_var_p=log_var_p)
    kl = 0.5 * (log_var_p - log_var_q
                + (jnp.exp(log_var_q) + (mean_q - mean_p) ** 2) * jnp.exp(-log_var_p) - 1.0)
    return sum_event(kl, event_ndim)


def normal_kl_to_standard(mean, log_var, event_ndim: int = 1):
    """KL(N(mean, diag exp(log_var)) || N(0, I)), summed over the event axes: [B, Z] -> [B];
    nats (log_var broadcasts against mean, not widening E). Zero exactly when mean = 0
    and log_var = 0."""
    Shapes("distributions.normal_kl_to_standard").event("mean", mean, event_ndim,
                                                        log_var=log_var)
    return sum_event(0.5 * (jnp.exp(log_var) + mean**2 - 1.0 - log_var), event_ndim)


def sample_normal_diag(key, mean, log_var, sample_shape: tuple[int, ...] = ()):
    """Reparameterised draw z = mean + exp(log_var / 2) * eps, eps ~ N(0, I).

    mean: [B, Z] (any shape), log_var broadcastable to mean's shape (a larger log_var
    would reuse one eps across its extra axes). Returns [*sample_shape, B, Z];
    differentiable in mean and log_var.
    """
    s = Shapes("distributions.sample_normal_diag")
    s.broadcastable("log_var", log_var, "mean", jnp.shape(mean))
    if not all(isinstance(n, (int, np.integer)) and n >= 0 for n in tuple(sample_shape)):
        s.fail(f"sample_shape = {sample_shape!r} must be a tuple of non-negative ints")
    eps = grandom.normal(key, tuple(sample_shape) + jnp.shape(mean), jnp.result_type(mean))
    return mean + jnp.exp(0.5 * log_var) * eps
