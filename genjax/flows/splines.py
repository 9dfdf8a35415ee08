"""Rational-quadratic spline transformers and spline coupling layers (Durkan, Bekasov,
Murray & Papamakarios, 2019, "Neural Spline Flows"), as pure functions of arrays.

The spline. On [-B, B] a strictly increasing map is built from K bins with knots
(x_k, y_k), k = 0..K, x_0 = y_0 = -B, x_K = y_K = B, and positive derivatives d_k at the
knots. In bin k, with w_k = x_{k+1} - x_k, h_k = y_{k+1} - y_k, s_k = h_k / w_k and
xi = (x - x_k) / w_k in [0, 1] (the paper's eq. 4 and 5):

    y  = y_k + h_k [s_k xi^2 + d_k xi (1 - xi)] / [s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)]
    dy/dx = s_k^2 [d_{k+1} xi^2 + 2 s_k xi (1 - xi) + d_k (1 - xi)^2]
            / [s_k + (d_{k+1} + d_k - 2 s_k) xi (1 - xi)]^2

Outside [-B, B] the map is the identity (linear tails: y = x, log-determinant 0). The two
boundary derivatives d_0 = d_K = 1, so the slope is continuous where spline meets tail.

Inverse: given y in bin k (found on the y-knots), xi solves a xi^2 + b xi + c = 0 with

    a = h_k (s_k - d_k) + (y - y_k)(d_{k+1} + d_k - 2 s_k)
    b = h_k d_k - (y - y_k)(d_{k+1} + d_k - 2 s_k)
    c = -s_k (y - y_k)

taking the root in [0, 1] in the cancellation-free form xi = 2c / (-b - sqrt(b^2 - 4ac))
(as in the reference code, nflows' `rational_quadratic_spline`).

Parameterisation of the raw (unconstrained) parameters, per element:

    widths  w = 2B [m_w + (1 - K m_w) softmax(raw_w)]      raw_w [..., K]  (m_w = min_bin_width)
    heights h = 2B [m_h + (1 - K m_h) softmax(raw_h)]      raw_h [..., K]
    interior derivatives d_1..d_{K-1} = m_d + softplus(raw_d + c),  raw_d [..., K-1]
        with c = log(e^{1 - m_d} - 1), i.e. m_d + softplus(c) = 1

Widths and heights are nflows' (softmax, then mixing with the minimum). The shift c in the
derivatives is ours (nflows uses softplus(raw_d) for the interior and pads the boundary
with c): with it, raw = 0 gives equal bins on the diagonal (s_k = 1) and every derivative
1, so all-zero parameters give exactly the identity map (up to float rounding), which is
where a coupling layer with a zero-initialised last layer starts.

Everything is written for batches and `jax.vmap`/`jax.jit`: no Python control flow on
values, bins are found by counting knots (no searchsorted), and the spline branch is
evaluated at a point clamped into [-B, B] (with `jnp.where`, not `clip`, whose gradient
halves at the boundary) so that the untaken branch never makes a NaN gradient.

* `rational_quadratic_spline`: the element-wise map and its log|derivative|.
* `spline_knots`: the knots (x_k, y_k, d_k) the raw parameters describe.
* `rq_spline`: the same as a `genjax.flows.transformers.Transformer` (theta [..., 3K-1]).
* `spline_coupling`: `genjax.flows.bijectors.coupling` (a coupling layer for any
  Transformer) with `rq_spline`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax.flows.bijectors import Bijector, coupling
from genjax.flows.transformers import Transformer


def _check(num_bins, raw_d, min_bin_width, min_bin_height, min_derivative):
    if raw_d.shape[-1] != num_bins - 1:
        raise ValueError(f"rational_quadratic_spline: {num_bins} bins need {num_bins - 1} "
                         f"interior derivatives, got {raw_d.shape[-1]}")
    if min_bin_width * num_bins > 1 or min_bin_height * num_bins > 1:
        raise ValueError(f"rational_quadratic_spline: min_bin_width/min_bin_height times "
                         f"num_bins ({num_bins}) must be <= 1; lower them")
    if not 0 <= min_derivative < 1:
        raise ValueError(f"rational_quadratic_spline: min_derivative must be in [0, 1) so "
                         f"that the boundary derivative 1 is reachable, got {min_derivative}")


def _knots(raw, bound, minimum):
    """raw [..., K] -> knots [..., K+1] from -bound to bound (endpoints exact)."""
    k = raw.shape[-1]
    frac = minimum + (1 - minimum * k) * jax.nn.softmax(raw, axis=-1)      # [..., K]
    cum = jnp.cumsum(frac, axis=-1)[..., :-1]                              # [..., K-1]
    inner = 2 * bound * cum - bound
    ends = jnp.ones(raw.shape[:-1] + (1,), inner.dtype) * bound
    return jnp.concatenate([-ends, inner, ends], axis=-1)                 # [..., K+1]


def spline_knots(unnormalized_widths, unnormalized_heights, unnormalized_derivatives, *,
                 bound: float = 3.0, min_bin_width: float = 1e-3,
                 min_bin_height: float = 1e-3, min_derivative: float = 1e-3):
    """(x_k, y_k, d_k), each [..., K+1]: the knots and the derivatives at them (d_0 = d_K
    = 1) that the raw parameters [..., K], [..., K], [..., K-1] describe."""
    k = unnormalized_widths.shape[-1]
    _check(k, unnormalized_derivatives, min_bin_width, min_bin_height, min_derivative)
    xk = _knots(unnormalized_widths, bound, min_bin_width)                 # [..., K+1]
    yk = _knots(unnormalized_heights, bound, min_bin_height)               # [..., K+1]
    shift = float(np.log(np.expm1(1.0 - min_derivative)))     # m_d + softplus(shift) = 1
    inner = min_derivative + jax.nn.softplus(unnormalized_derivatives + shift)  # [..., K-1]
    one = jnp.ones(inner.shape[:-1] + (1,), inner.dtype)
    dk = jnp.concatenate([one, inner, one], axis=-1)                       # [..., K+1]
    return xk, yk, dk


def _gather(a, idx):
    """a [..., K+1] or [..., K], idx [...] -> a[..., idx] element-wise."""
    return jnp.take_along_axis(a, idx[..., None], axis=-1)[..., 0]


def rational_quadratic_spline(x, unnormalized_widths, unnormalized_heights,
                              unnormalized_derivatives, *, bound: float = 3.0,
                              inverse: bool = False, min_bin_width: float = 1e-3,
                              min_bin_height: float = 1e-3, min_derivative: float = 1e-3):
    """The monotone rational-quadratic spline on [-bound, bound], identity outside.

    x [...]; unnormalized_widths, unnormalized_heights [..., K];
    unnormalized_derivatives [..., K-1] (the interior knots), all broadcast-free (the
    leading axes equal x's). Returns (out [...], logabsdet [...]) element-wise:
    forward y = f(x) with log|f'(x)|, or with ``inverse=True`` x = f^-1(y) with
    log|d f^-1 / dy| = -log|f'(x)|. See the module docstring for the parameterisation.
    """
    xk, yk, dk = spline_knots(unnormalized_widths, unnormalized_heights,
                              unnormalized_derivatives, bound=bound,
                              min_bin_width=min_bin_width, min_bin_height=min_bin_height,
                              min_derivative=min_derivative)              # [..., K+1]
    x = jnp.asarray(x)
    inside = (x >= -bound) & (x <= bound)                                  # [...]
    xc = jnp.where(inside, x, -bound)      # clamped: the spline branch stays finite
    # bin index in 0..K-1: how many interior knots lie at or below the point
    knots_in = yk if inverse else xk
    idx = jnp.sum(xc[..., None] >= knots_in[..., 1:-1], axis=-1)           # [...]

    x_lo, y_lo = _gather(xk, idx), _gather(yk, idx)                         # [...]
    w = _gather(xk, idx + 1) - x_lo
    h = _gather(yk, idx + 1) - y_lo
    d0, d1 = _gather(dk, idx), _gather(dk, idx + 1)
    s = h / w
    curv = d1 + d0 - 2 * s                                                 # [...]

    if inverse:
        dy = xc - y_lo
        a = h * (s - d0) + dy * curv
        b = h * d0 - dy * curv
        c = -s * dy
        disc = jnp.maximum(b * b - 4 * a * c, 0.0)    # > 0 in exact arithmetic
        xi = (2 * c) / (-b - jnp.sqrt(disc))
        out = x_lo + xi * w
    else:
        xi = (xc - x_lo) / w
        out = y_lo + h * (s * xi ** 2 + d0 * xi * (1 - xi)) / (s + curv * xi * (1 - xi))

    t = xi * (1 - xi)
    denom = s + curv * t
    log_deriv = (2 * jnp.log(s) + jnp.log(d1 * xi ** 2 + 2 * s * t + d0 * (1 - xi) ** 2)
                 - 2 * jnp.log(denom))                                     # log f'(x)
    if inverse:
        log_deriv = -log_deriv
    out = jnp.where(inside, out, x)
    logabsdet = jnp.where(inside, log_deriv, jnp.zeros_like(log_deriv))
    return out, logabsdet


# ------------------------------------------------------------------------- transformer

def num_spline_params(num_bins: int) -> int:
    """K widths, K heights and K-1 interior derivatives: 3K - 1."""
    return 3 * num_bins - 1


def rq_spline(num_bins: int = 8, *, bound: float = 3.0, min_bin_width: float = 1e-3,
              min_bin_height: float = 1e-3, min_derivative: float = 1e-3) -> Transformer:
    """The rational-quadratic spline as a Transformer: theta [..., 3K-1] is split into raw
    widths [..., :K], raw heights [..., K:2K] and raw interior derivatives [..., 2K:].
    theta = 0 is exactly the identity; identity tails outside [-bound, bound]."""
    if num_bins < 1:
        raise ValueError(f"rq_spline: num_bins must be >= 1, got {num_bins}")
    k = num_bins
    kw = dict(bound=bound, min_bin_width=min_bin_width, min_bin_height=min_bin_height,
              min_derivative=min_derivative)

    def split(theta):
        if theta.shape[-1] != num_spline_params(k):
            raise ValueError(f"rq_spline({k}): theta's last axis must be "
                             f"{num_spline_params(k)}, got shape {theta.shape}")
        return theta[..., :k], theta[..., k:2 * k], theta[..., 2 * k:]

    def forward(x, theta):
        return rational_quadratic_spline(x, *split(theta), inverse=False, **kw)

    def inverse(y, theta):
        return rational_quadratic_spline(y, *split(theta), inverse=True, **kw)

    return Transformer(num_spline_params(k), forward, inverse)


# ---------------------------------------------------------------------------- coupling

def spline_coupling(mask, conditioner: Callable, *, num_bins: int = 8,
                    bound: float = 3.0) -> Bijector:
    """Neural spline coupling (Durkan et al. 2019): `genjax.flows.bijectors.coupling` with
    `rq_spline(num_bins, bound=bound)`; the conditioner returns raw parameters of shape
    x.shape + (3 num_bins - 1,) (and takes a third argument when the layer is called
    with ``condition=``, see `coupling`)."""
    return coupling(mask, conditioner, rq_spline(num_bins, bound=bound))
