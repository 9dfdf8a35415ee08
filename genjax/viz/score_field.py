"""Score-field figures for 2-D models: the learned score s(x, sigma) as arrows next to the
true score of the data smoothed at the same noise level (matplotlib, Agg backend)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from genjax.viz.density import extent_of, save_panels


def empirical_noisy_score(x, data, sigma: float, *, chunk: int = 1024) -> np.ndarray:
    """The score [M, 2] at points x [M, 2] of the data [N, 2] smoothed with N(0, sigma^2 I)
    (the empirical distribution's, exact for it): (E[x0 | x] - x) / sigma^2 with
    posterior weights softmax_j(-|x - x_j|^2 / (2 sigma^2)), computed in the log domain,
    so it is finite far from the data too (where it points back to the nearest points)."""
    from scipy.special import softmax

    x, data = np.asarray(x, np.float64), np.asarray(data, np.float64)
    out = np.empty_like(x)
    for i in range(0, len(x), chunk):
        q = x[i:i + chunk]
        d2 = ((q[:, None, :] - data[None]) ** 2).sum(-1)                 # [m, N]
        w = softmax(-d2 / (2 * sigma ** 2), axis=1)
        out[i:i + chunk] = (w @ data - q) / sigma ** 2
    return out


def smoothed_log_density(log_prob: Callable, extent, sigma: float, *, size: int = 256):
    """(xs [size], ys [size], log p_sigma [size, size]): the density exp(log_prob)
    convolved with N(0, sigma^2 I), on a grid over ``extent`` (rows indexed by y), by a
    Gaussian filter of the gridded density (mass beyond the extent is lost: give it a
    margin of a few sigma)."""
    from scipy.ndimage import gaussian_filter

    xs = np.linspace(extent[0], extent[1], size)
    ys = np.linspace(extent[2], extent[3], size)
    gx, gy = np.meshgrid(xs, ys)
    p = np.exp(np.asarray(log_prob(np.stack([gx.ravel(), gy.ravel()], -1)), np.float64))
    p = p.reshape(size, size)
    dx, dy = xs[1] - xs[0], ys[1] - ys[0]
    p = gaussian_filter(p, (sigma / dy, sigma / dx), mode="constant", truncate=5.0)
    return xs, ys, np.log(np.maximum(p, 1e-300))


def score_field_figure(path: str, *, data, samples, score_fn: Callable, sigma: float,
                       true_log_prob: Callable | None = None, arrows: int = 24,
                       title: str = "") -> None:
    """Panels: the data; with ``true_log_prob``, the true score of the data smoothed at
    ``sigma`` (`empirical_noisy_score` of up to 5,000 of the points, arrows over the
    true density smoothed at sigma); the learned score
    ``score_fn(points [M, 2]) -> [M, 2]`` at the same level (arrows over |s|); the
    samples. Arrows are scaled per panel by the same rule (length proportional to
    |s| / max |s|), so directions and relative sizes compare."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, samples = np.asarray(data), np.asarray(samples)
    samples = samples[np.all(np.isfinite(samples), -1)]
    extent = extent_of(data)
    n = 4 if true_log_prob is not None else 3
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5))
    kw = dict(s=1, alpha=0.3, rasterized=True)
    axes[0].scatter(data[:, 0], data[:, 1], color="k", **kw)
    axes[0].set_title(f"data ({len(data)} points)")
    xs = np.linspace(extent[0], extent[1], arrows)
    ys = np.linspace(extent[2], extent[3], arrows)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    learned = np.asarray(score_fn(pts)).reshape(arrows, arrows, 2)
    panel = 1
    if true_log_prob is not None:
        d = data[:: max(1, len(data) // 5000)]
        true = empirical_noisy_score(pts, d, sigma).reshape(arrows, arrows, 2)
        pad = 4 * sigma
        wide = (extent[0] - pad, extent[1] + pad, extent[2] - pad, extent[3] + pad)
        txs, tys, lp = smoothed_log_density(true_log_prob, wide, sigma)
        ax = axes[panel]
        ax.contourf(txs, tys, np.exp(lp), levels=30, cmap="Greys")
        _quiver(ax, gx, gy, true)
        ax.set_title(f"true score of p_sigma, sigma = {sigma:.3g}")
        panel += 1
    ax = axes[panel]
    norm = np.linalg.norm(learned, axis=-1)
    ax.contourf(xs, ys, np.log1p(norm), levels=30, cmap="Greys")
    _quiver(ax, gx, gy, learned)
    ax.set_title(f"learned score s(x, sigma = {sigma:.3g})")
    axes[-1].scatter(samples[:, 0], samples[:, 1], color="C1", **kw)
    axes[-1].set_title(f"annealed Langevin samples ({len(samples)})")
    save_panels(fig, axes, extent, path, title)


def _quiver(ax, gx, gy, field):
    norm = np.linalg.norm(field, axis=-1)
    scale = np.nanmax(norm) if np.isfinite(np.nanmax(norm)) and np.nanmax(norm) > 0 else 1.0
    ax.quiver(gx, gy, field[..., 0] / scale, field[..., 1] / scale, color="C0",
              angles="xy", scale_units="xy", scale=1.0 / (0.9 * (gx[0, 1] - gx[0, 0])),
              width=0.004)
