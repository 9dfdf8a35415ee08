"""2-D density figures: log-density contours with the data and model samples on top
(matplotlib, Agg backend; no display needed)."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from genjax.viz.grid import writes_files


def density_grid(log_prob: Callable, extent, *, size: int = 200):
    """Evaluates log_prob(points [M, 2]) -> [M] on a size x size grid over extent
    (xmin, xmax, ymin, ymax). Returns (xs [size], ys [size], log p [size, size]) with
    rows indexed by y."""
    xs = np.linspace(extent[0], extent[1], size)
    ys = np.linspace(extent[2], extent[3], size)
    gx, gy = np.meshgrid(xs, ys)
    pts = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    return xs, ys, np.asarray(log_prob(pts)).reshape(size, size)


def extent_of(*point_sets, margin: float = 0.1):
    """(xmin, xmax, ymin, ymax) covering every [N, 2] set, widened by ``margin``."""
    pts = np.concatenate([np.asarray(p) for p in point_sets])
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * (hi - lo) + 1e-3
    return float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), \
        float(hi[1] + pad[1])


def save_panels(fig, axes, extent, path: str, title: str = "") -> None:
    """Gives every 2-D panel the same ``extent`` and equal aspect, adds the title, writes
    the figure to ``path`` (PNG; folders created) and closes it."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
        ax.set_aspect("equal")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if writes_files():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        fig.savefig(path, dpi=80)
    plt.close(fig)


def density_figure(path: str, *, log_prob: Callable, data, samples, means=None,
                   title: str = "", size: int = 200,
                   true_log_prob: Callable | None = None) -> np.ndarray:
    """Three panels: the data, the model's density (filled contours of p(x) on a grid, with
    contour lines of log p and the component means marked) and model samples; with
    ``true_log_prob`` a fourth, the true density on the same grid and colour scale, next
    to the model's. Writes a PNG and returns the model's [size, size] log-density grid."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, samples = np.asarray(data), np.asarray(samples)
    extent = extent_of(data, samples)
    xs, ys, lp = density_grid(log_prob, extent, size=size)
    n = 3 if true_log_prob is None else 4
    fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 4.5))
    kw = dict(s=1, alpha=0.3, rasterized=True)
    axes[0].scatter(data[:, 0], data[:, 1], color="k", **kw)
    axes[0].set_title(f"data ({len(data)} points)")
    vmax = float(np.nanmax(np.exp(lp)))
    panels = [(axes[-2], lp, "model density p(x) (lines: log p)")]
    if true_log_prob is not None:
        _, _, lp_true = density_grid(true_log_prob, extent, size=size)
        vmax = max(vmax, float(np.nanmax(np.exp(lp_true))))
        panels.insert(0, (axes[1], lp_true, "true density (lines: log p)"))
    for ax, grid, label in panels:
        ax.contourf(xs, ys, np.exp(grid), levels=np.linspace(0, vmax, 31), cmap="viridis",
                    extend="max")
        finite = grid[np.isfinite(grid)]
        if finite.size and finite.max() > finite.min():
            levels = np.linspace(max(finite.min(), finite.max() - 12), finite.max(), 8)
            ax.contour(xs, ys, grid, levels=levels, colors="w", linewidths=0.5,
                       linestyles="solid")
        ax.set_title(label)
    if means is not None:
        m = np.asarray(means)
        axes[-2].scatter(m[:, 0], m[:, 1], marker="x", color="r", s=30)
    axes[-1].scatter(samples[:, 0], samples[:, 1], color="C1", **kw)
    axes[-1].set_title(f"model samples ({len(samples)})")
    save_panels(fig, axes, extent, path, title)
    return lp
