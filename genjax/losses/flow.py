"""The exact negative log-likelihood of a normalizing flow on 8-bit images, with uniform
dequantisation and the logit pre-transform, every Jacobian counted.

    loss, metrics = flow_nll(x_u8, key, log_prob_fn=lambda y: flow_log_prob(params, y))

For integer pixels x in {0, ..., 255}^D: u = (x + v) / 256 with v ~ U[0, 1)^D (uniform
dequantisation, Theis et al. 2016), then y = logit(alpha + (1 - 2 alpha) u) (RealNVP's
pre-transform, alpha = 0.05), and the flow models y. The per-example terms add every
log-determinant back, so

    nats = -log p_Y(y) - log|dy/du| + D log 256

is the negative log-density of x + v on the 8-bit scale [0, 256)^D, whose expectation
over v upper-bounds the discrete NLL -log P(x) (Jensen): the number the flow tables report,
as bits/dim = nats / (D log 2), comparable to the DDPM bound and RNADE in the README.
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
import numpy as np

from genjax.data import transforms
from genjax.shapes import Shapes

LOG_256 = math.log(256.0)


def check_images_u8(x) -> None:
    """Raises ValueError unless x holds 8-bit pixel values: integers in 0..255, finite
    (the support uniform dequantisation expects). Host-side, before compiling."""
    a = np.asarray(x)
    if a.dtype == np.uint8:
        return
    if not np.all(np.isfinite(a)):
        raise ValueError("images hold NaN or infinite values; the flow's dequantisation "
                         "needs 8-bit pixel values 0..255")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0 or hi > 255:
        raise ValueError(f"image values span [{lo:g}, {hi:g}], outside 0..255: the flow's "
                         "dequantisation needs 8-bit pixel values (scale [0, 1] data by "
                         "255 and round)")
    if not np.all(a == np.round(a)):
        raise ValueError("image values are not integers: the flow's uniform dequantisation "
                         "needs 8-bit pixel values 0..255")


def dequantize(key, x_u8):
    """u = (x + v) / 256 in [0, 1)^D with v ~ U[0, 1) (`genjax.data.transforms.
    dequantize_uniform`, the pipeline's "dequantize" mode): x [B, ...] integer pixels ->
    u [B, ...] float32, and the log-determinant of the scaling, -D log 256 per example [B]."""
    Shapes("losses.flow.dequantize")("x_u8", x_u8, "B *E")
    u = transforms.dequantize_uniform(key, x_u8)
    d = math.prod(u.shape[1:])
    return u, jnp.full((u.shape[0],), -d * LOG_256)


def logit_transform(u, *, alpha: float = 0.05):
    """y = logit(alpha + (1 - 2 alpha) u): u [B, ...] in [0, 1] -> y, and log|dy/du| [B]
    = sum log(1 - 2 alpha) - log p - log(1 - p), p = alpha + (1 - 2 alpha) u."""
    Shapes("losses.flow.logit_transform")("u", u, "B *E")
    p = alpha + (1.0 - 2.0 * alpha) * u
    y = jnp.log(p) - jnp.log1p(-p)
    ld = math.log(1.0 - 2.0 * alpha) - jnp.log(p) - jnp.log1p(-p)
    return y, ld.reshape(u.shape[0], -1).sum(-1)


def dequantized_log_likelihood(u, *, log_prob_fn: Callable, alpha: float = 0.05):
    """u [B, ...] dequantised pixels (x + v) / 256 in [0, 1) (the pipeline's "dequantize"
    preprocessing); log_prob_fn(y [B, ...]) -> [B], the flow's log-density of the
    logit-space images. Returns [B]: log p(x + v) in nats on the 8-bit scale [0, 256)^D,
    every Jacobian counted (logit and the 1/256 scaling)."""
    s = Shapes("losses.flow.dequantized_log_likelihood")
    s("u", u, "B *E")
    y, ld_logit = logit_transform(u, alpha=alpha)
    log_p = log_prob_fn(y)
    s("log_prob_fn(y)", log_p, "B")
    d = math.prod(u.shape[1:])
    return log_p + ld_logit - d * LOG_256


def flow_nll(x_u8, key, *, log_prob_fn: Callable, alpha: float = 0.05):
    """x_u8 [B, ...] integer pixels 0..255 (check with `check_images_u8` on the host);
    log_prob_fn(y [B, ...]) -> [B], the flow's log-density of the logit-space images.
    Returns (loss, metrics): loss = mean nats per image on the 8-bit scale (summed over
    the D pixels, mean over the batch); metrics "nats" and "bits_per_dim"."""
    Shapes("losses.flow.flow_nll")("x_u8", x_u8, "B *E")
    u, _ = dequantize(key, x_u8)
    nats = -dequantized_log_likelihood(u, log_prob_fn=log_prob_fn, alpha=alpha)   # [B]
    d = math.prod(u.shape[1:])
    loss = jnp.mean(nats)
    return loss, {"nats": loss, "bits_per_dim": loss / (d * math.log(2.0))}
