"""Densities of 2-D models known only up to a constant (energy-based models), normalised
on a grid, and sample quality against a known 2-D density by histogram.

The model is taken as a density on the box ``extent`` = (x0, x1, y0, y1): p(x) =
exp(f(x)) / Z with Z = the midpoint-rule integral of exp(f) over the box, on ``size`` x
``size`` cells. Points outside the box get log p = -inf. For a smooth f and a box that
holds the data, the midpoint rule's error is far below the differences the tables show
(check it by doubling ``size``).

    ll = grid_log_likelihood(lambda x: -energy(x), x_test, extent=(-4, 4, -4, 4))
"""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.special import logsumexp


def grid_points(extent, size: int):
    """(centres [size * size, 2] float32 of the cells, row-major in y then x, log cell
    area)."""
    x0, x1, y0, y1 = map(float, extent)
    xs = x0 + (np.arange(size) + 0.5) * (x1 - x0) / size
    ys = y0 + (np.arange(size) + 0.5) * (y1 - y0) / size
    gx, gy = np.meshgrid(xs, ys)
    area = (x1 - x0) * (y1 - y0) / size ** 2
    return np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32), float(np.log(area))


def _apply(log_unnorm: Callable, x, batch: int = 65_536) -> np.ndarray:
    return np.concatenate([np.asarray(log_unnorm(x[i:i + batch]), np.float64)
                           for i in range(0, len(x), batch)])


def grid_log_normaliser(log_unnorm: Callable, extent, *, size: int = 400) -> float:
    """log Z of exp(log_unnorm) over the box (midpoint rule); log_unnorm(x [N, 2]) -> [N]."""
    pts, log_area = grid_points(extent, size)
    return float(logsumexp(_apply(log_unnorm, pts)) + log_area)


def grid_log_likelihood(log_unnorm: Callable, x, *, extent, size: int = 400) -> np.ndarray:
    """log p(x) [N] (nats) of the grid-normalised model at points x [N, 2]; -inf outside
    the box."""
    x = np.asarray(x, np.float32)
    log_z = grid_log_normaliser(log_unnorm, extent, size=size)
    x0, x1, y0, y1 = extent
    inside = (x[:, 0] >= x0) & (x[:, 0] <= x1) & (x[:, 1] >= y0) & (x[:, 1] <= y1)
    return np.where(inside, _apply(log_unnorm, x) - log_z, -np.inf)


def grid_kl(log_p: Callable, log_q_unnorm: Callable, *, extent, size: int = 400) -> float:
    """KL(p || q) in nats between two densities on the box, both normalised on the grid
    (``log_p`` may be normalised or not)."""
    pts, _ = grid_points(extent, size)
    lp, lq = _apply(log_p, pts), _apply(log_q_unnorm, pts)
    lp, lq = lp - logsumexp(lp), lq - logsumexp(lq)          # cell masses
    w = np.exp(lp)
    return float(np.sum(np.where(w > 0, w * (lp - lq), 0.0)))


def histogram_tv(samples, log_p: Callable, *, extent, bins: int = 40,
                 refine: int = 4) -> float:
    """Total-variation distance (0..1) between the histogram of ``samples`` [N, 2] on
    ``bins`` x ``bins`` cells of the box and the cell masses of the density exp(log_p)
    (integrated with ``refine`` x ``refine`` midpoints per cell, normalised on the box).
    Samples outside the box count as misplaced mass. Even exact samples score above 0:
    about sqrt(bins^2 / (2 pi N)) from counting noise when the mass is spread, so compare
    with the same N of true samples (the test split) in one table."""
    samples = np.asarray(samples, np.float64)
    pts, _ = grid_points(extent, bins * refine)
    lp = _apply(log_p, pts).reshape(bins, refine, bins, refine)
    mass = np.exp(lp - logsumexp(lp)).sum((1, 3))                          # [y, x]
    x0, x1, y0, y1 = extent
    finite = np.all(np.isfinite(samples), -1)
    h, _, _ = np.histogram2d(samples[finite, 1], samples[finite, 0], bins=bins,
                             range=[[y0, y1], [x0, x1]])
    q = h / max(len(samples), 1)
    return float(0.5 * (np.abs(q - mass).sum() + (1.0 - q.sum())))
