"""Element-wise monotone maps with per-element parameters: the "transformers" that
coupling layers and autoregressive flows apply to each dimension (Papamakarios et al.,
2021, "Normalizing Flows for Probabilistic Modeling and Inference", section 3.1).

A `Transformer` is (num_params, forward, inverse):

    y, log_dy_dx = forward(x, theta)     # x [...], theta [..., num_params] -> y [...],
                                         # log|dy/dx| [...] element-wise (not summed)
    x, log_dx_dy = inverse(y, theta)     # log|dx/dy| [...] = -forward's at x

The conditioner that makes theta (a coupling network, a MADE) decides which inputs it
may depend on; the transformer is a strictly increasing map of one scalar per element.

* `affine`: y = x exp(s) + t, with the raw log-scale bounded by ``max_log_scale *
  tanh(raw / max_log_scale)`` when ``max_log_scale`` is given (keeps early training
  finite; the map stays a bijection for any theta).
* the rational-quadratic spline of Durkan et al. (2019) is `genjax.flows.splines.rq_spline`.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax.numpy as jnp


class Transformer(NamedTuple):
    num_params: int
    forward: Callable
    inverse: Callable


def bounded_log_scale(raw, max_log_scale: float | None):
    """raw -> max * tanh(raw / max) (or raw when max is None): a smooth clip to
    (-max, max) with slope 1 at 0."""
    if max_log_scale is None:
        return raw
    return max_log_scale * jnp.tanh(raw / max_log_scale)


def affine(*, max_log_scale: float | None = None) -> Transformer:
    """theta[..., 0] = shift t, theta[..., 1] = raw log-scale s: y = x e^s + t."""

    def forward(x, theta):
        s = bounded_log_scale(theta[..., 1], max_log_scale)
        return x * jnp.exp(s) + theta[..., 0], s

    def inverse(y, theta):
        s = bounded_log_scale(theta[..., 1], max_log_scale)
        return (y - theta[..., 0]) * jnp.exp(-s), -s

    return Transformer(2, forward, inverse)
