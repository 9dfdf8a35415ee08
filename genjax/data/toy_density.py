"""The true log-density of the four embedded 2-D toys, for comparing density models.

    from genjax.data import embedded, toy_density
    test = embedded.toy("two_moons").test                          # float32 [5000, 2]
    toy_density.expected_log_density("two_moons", test)            # nats per point

`log_density(name, x)` returns ``float64 [N]`` for ``x [N, 2]``; the mean over a test
set (`expected_log_density`) is the true density's test log-likelihood, the ceiling a
flow or mixture can only approach (on the same points, up to sampling noise). Each
formula follows the generating process of the sampler in `genjax.data.embedded`
(``_two_moons``, ``_eight_gaussians``, ``_checkerboard``, ``_two_spirals``); the
constants are imported from there where it names them, and the two_spirals literals
are mirrored below (`SPIRAL_TURNS_RADIUS` ...). N(x; m, s^2 I) is the isotropic normal
density and Phi the standard normal CDF.

``eight_gaussians`` (closed form)
  ``log p(x) = logsumexp_k log N(x; mu_k, s^2 I) - log 8``, with ``mu_k`` =
  `eight_gaussians_centres` (the float32 centres the sampler uses) and
  s = `EIGHT_GAUSSIANS_STD`.

``checkerboard`` (closed form)
  Uniform on the 8 dark unit cells of [-2, 2]^2: ``x2 = U[0, 1) - 2 B + (floor(x1) mod
  2)`` puts column ``i = floor(x1) + 2`` on rows ``j = floor(x2) + 2`` with ``i + j``
  even. ``log p = log(1/8)`` on those cells (half-open, ``[c, c + 1)``, as the sampler
  draws), ``-inf`` elsewhere.

``two_moons`` (quadrature)
  Before standardisation, ``y = c_m(t) + N(0, sigma^2 I)`` with moon m ~ Bernoulli(1/2),
  ``t ~ U[0, pi]``, ``c_0 = (cos t, sin t)``, ``c_1 = (1 - cos t, 1/2 - sin t)``,
  sigma = `TWO_MOONS_NOISE`::

      p_y(y) = 1/2 sum_m (1/pi) int_0^pi N(y; c_m(t), sigma^2 I) dt,
      log p(x) = log p_y(mean + std * x) + sum_i log std_i

  (``x = (y - mean) / std`` per axis, `_MOONS_MEAN`, `_MOONS_STD`). The integral is
  composite Gauss-Legendre: `TWO_MOONS_PANELS` equal panels of `NODES_PER_PANEL` nodes
  per moon (panel width 0.012 = sigma / 4).

``two_spirals`` (quadrature)
  ``r = 3 pi sqrt(u)`` has density ``2 r / (3 pi)^2`` on [0, 3 pi]; arm 0 is
  ``y = (v(r) + U[0, 1/2)^2) / 3 + N(0, 0.1^2 I)`` with ``v(r) = (-r cos r, r sin r)``,
  arm 1 is its negation (so ``p_1(y) = p_0(-y)``, the noise being symmetric). For fixed
  r each axis is a uniform on ``[v_i / 3, v_i / 3 + 1/6)`` convolved with N(0, 0.1^2)::

      q(y) = int_0^{3 pi} 2 r / (3 pi)^2 prod_i 6 [Phi(a_i) - Phi(a_i - (1/6) / 0.1)] dr,
      a_i = (y_i - v_i(r) / 3) / 0.1,         p(y) = (q(y) + q(-y)) / 2,

  composite Gauss-Legendre over `TWO_SPIRALS_PANELS` panels of `NODES_PER_PANEL` nodes
  whose edges are equally spaced in arc length of the curve ``v(r) / 3`` (the curve
  speeds up from 1/3 to 3.2 as it winds out: the panels are 0.1 long, one noise std).

Accuracy (measured against 8x the panels): on the toys' test points both quadratures
are exact to < 1e-13 in log-density (the tests check that doubling moves them by
< 1e-6). Over [-6, 6]^2, two_moons is within 4e-8 wherever log p > -1000, and
two_spirals within 3e-7 wherever log p > -100 and 1e-4 where log p > -300. Farther
out the peak of the integrand narrows, but every term is summed in log space
(`scipy.special.log_ndtr`, logsumexp), so a far point gets its log-density, not
-inf, with a relative error below 1e-5 within [-6, 6]^2 and 1e-4 out to 50 units.
On a fine grid each density integrates
to 1 within 1e-12. Points go through in chunks of at most `_MAX_PAIRS` (point, node)
pairs (~17 MB per temporary array).

Reference values, nats per point (population value = minus the entropy, by grid
quadrature; test = `expected_log_density` on ``embedded.toy(name, seed=0).test``):

=================  ==========  ===============
toy                population  test (seed 0)
=================  ==========  ===============
two_moons          -1.1312     -1.1479
eight_gaussians     2.9067      2.9285
checkerboard       -2.0794     -2.0794
two_spirals        -2.6455     -2.6341
=================  ==========  ===============

A model's mean test log-likelihood is compared with the test column (same points):
the test sets' sampling error (std of log p / sqrt(5000), 0.014 for eight_gaussians)
is larger than many gaps between models.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, logsumexp

from genjax.data.embedded import (
    _MOONS_MEAN,
    _MOONS_STD,
    EIGHT_GAUSSIANS_STD,
    TWO_MOONS_NOISE,
    eight_gaussians_centres,
)

TOYS = ("two_moons", "eight_gaussians", "checkerboard", "two_spirals")

# two_spirals: the literals of `embedded._two_spirals`, named.
SPIRAL_TURNS_RADIUS = 3 * math.pi     # r = sqrt(u) * 3 pi
SPIRAL_JITTER = 0.5                   # + U[0, 1/2)^2 before the division
SPIRAL_SCALE = 3.0                    # / 3
SPIRAL_NOISE = 0.1                    # + N(0, 0.1^2) per coordinate

NODES_PER_PANEL = 8
TWO_MOONS_PANELS = 256                # per moon: 2,048 nodes, panel width pi/256
TWO_SPIRALS_PANELS = 160              # 1,280 nodes, panel arc length ~0.1
_MAX_PAIRS = 1 << 21                  # (point, node) pairs per chunk


def _check_points(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ValueError(f"toy densities take points of shape [N, 2]; got {x.shape}")
    return x


def _panels(edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Composite Gauss-Legendre nodes and weights ([P * K] each) on panels ``edges``."""
    g, w = np.polynomial.legendre.leggauss(NODES_PER_PANEL)     # on [-1, 1]
    lo, hi = edges[:-1, None], edges[1:, None]                   # [P, 1]
    nodes = 0.5 * (hi + lo) + 0.5 * (hi - lo) * g                # [P, K]
    return nodes.ravel(), (0.5 * (hi - lo) * w).ravel()


def _log_quadrature(log_terms, x: np.ndarray, log_weights: np.ndarray) -> np.ndarray:
    """``log sum_j exp(log_weights_j + log_terms(x)[:, j])`` for x [N, 2], in chunks."""
    step = max(1, _MAX_PAIRS // len(log_weights))
    out = np.empty(len(x))
    for s in range(0, len(x), step):
        out[s:s + step] = logsumexp(log_terms(x[s:s + step]) + log_weights, axis=1)
    return out


def _resolve_panels(panels: int | None, default: int, name: str) -> int:
    if panels is None:
        return default
    if int(panels) != panels or panels < 1:
        raise ValueError(f"{name}: panels must be a positive integer; got {panels!r}")
    return int(panels)


# ---------------------------------------------------------------------------------
# The four toys.


def _eight_gaussians(x: np.ndarray) -> np.ndarray:
    centres = eight_gaussians_centres().astype(np.float64)        # [8, 2]
    s2 = EIGHT_GAUSSIANS_STD**2
    sq = ((x[:, None, :] - centres) ** 2).sum(-1)                 # [N, 8]
    return logsumexp(-sq / (2 * s2), axis=1) - math.log(2 * math.pi * s2) - math.log(8)


def _checkerboard(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        i, j = np.floor(x[:, 0]) + 2, np.floor(x[:, 1]) + 2       # cell counted from (-2, -2)
    inside = (i >= 0) & (i <= 3) & (j >= 0) & (j <= 3)
    dark = inside & (np.mod(i + j, 2) == 0)
    return np.where(dark, -math.log(8), -np.inf)


def _two_moons(x: np.ndarray, panels: int) -> np.ndarray:
    t, w = _panels(np.linspace(0.0, math.pi, panels + 1))        # [M] each
    curve = np.concatenate([                                     # [2M, 2]: both moons
        np.stack([np.cos(t), np.sin(t)], -1),
        np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1),
    ])
    s2 = TWO_MOONS_NOISE**2
    # 1/2 (mixture) * 1/pi (density of t) * quadrature weight * normalising constant
    log_w = (np.log(np.concatenate([w, w])) - math.log(2 * math.pi)
             - math.log(2 * math.pi * s2))
    cx, cy = curve[:, 0], curve[:, 1]

    def log_terms(y):                                             # [n, 2M]
        return -((y[:, :1] - cx) ** 2 + (y[:, 1:] - cy) ** 2) / (2 * s2)

    y = _MOONS_MEAN + _MOONS_STD * x                              # before standardising
    return _log_quadrature(log_terms, y, log_w) + np.log(_MOONS_STD).sum()


def _log_box_normal(a: np.ndarray, width: float) -> np.ndarray:
    """``log(Phi(a) - Phi(a - width))``, accurate in both tails (width > 0)."""
    # Phi(a) - Phi(b) = Phi(-b) - Phi(-a) with b = a - width: evaluate the form whose
    # arguments are the smaller, min(a, -b) and min(a, -b) - width, so that Phi stays
    # below 1/2 + a little and log_ndtr keeps its relative accuracy in either tail.
    hi = np.minimum(a, width - a)
    log_hi = log_ndtr(hi)
    return log_hi + np.log1p(-np.exp(log_ndtr(hi - width) - log_hi))


def _spiral_panel_edges(panels: int) -> np.ndarray:
    """Panel edges in r equally spaced in arc length of ``v(r) / 3`` (speed sqrt(1+r^2)/3)."""
    r = np.linspace(0.0, SPIRAL_TURNS_RADIUS, 20_001)
    arc = 0.5 * (r * np.sqrt(1 + r * r) + np.arcsinh(r))         # int_0^r sqrt(1 + r^2)
    edges = np.interp(np.linspace(0.0, arc[-1], panels + 1), arc, r)
    edges[0], edges[-1] = 0.0, SPIRAL_TURNS_RADIUS
    return edges


def _two_spirals(x: np.ndarray, panels: int) -> np.ndarray:
    r, w = _panels(_spiral_panel_edges(panels))                   # [M] each
    cx = -r * np.cos(r) / SPIRAL_SCALE                            # box [c, c + width)
    cy = r * np.sin(r) / SPIRAL_SCALE
    width = SPIRAL_JITTER / SPIRAL_SCALE                          # 1/6
    # quadrature weight * density of r * (1 / width per axis)
    log_w = np.log(w) + np.log(2 * r / SPIRAL_TURNS_RADIUS**2) - 2 * math.log(width)
    z = width / SPIRAL_NOISE

    def log_terms(y):                                             # [n, M]
        return (_log_box_normal((y[:, :1] - cx) / SPIRAL_NOISE, z)
                + _log_box_normal((y[:, 1:] - cy) / SPIRAL_NOISE, z))

    log_q = _log_quadrature(log_terms, np.concatenate([x, -x]), log_w)   # [2N]
    return np.logaddexp(log_q[:len(x)], log_q[len(x):]) - math.log(2)    # two arms


# ---------------------------------------------------------------------------------
# Public API.


def log_density(name: str, x, *, panels: int | None = None) -> np.ndarray:
    """True log-density (nats) of the toy ``name`` at ``x [N, 2]``: ``float64 [N]``.

    ``panels`` (two_moons and two_spirals only) overrides the number of Gauss-Legendre
    panels, `NODES_PER_PANEL` nodes each (defaults `TWO_MOONS_PANELS` per moon,
    `TWO_SPIRALS_PANELS`); pass twice the default to check convergence.
    """
    x = _check_points(x)
    if name == "eight_gaussians":
        fn = _eight_gaussians
    elif name == "checkerboard":
        fn = _checkerboard
    elif name == "two_moons":
        n = _resolve_panels(panels, TWO_MOONS_PANELS, name)
        return _two_moons(x, n)
    elif name == "two_spirals":
        n = _resolve_panels(panels, TWO_SPIRALS_PANELS, name)
        return _two_spirals(x, n)
    else:
        raise ValueError(f"Unknown toy density {name!r}; known: {', '.join(TOYS)}")
    if panels is not None:
        raise ValueError(f"{name} has a closed-form density; do not pass panels")
    return fn(x)


def expected_log_density(name: str, x, *, panels: int | None = None) -> float:
    """Mean true log-density over the points ``x [N, 2]`` (nats per point).

    On a toy's test split this is the true density's test log-likelihood, the number a
    model's mean test log-likelihood is compared with.
    """
    return float(np.mean(log_density(name, x, panels=panels)))
