"""The figure of a GAN on a 2-D toy density: data, generator samples over the
discriminator's output, and where straight lines in latent space land.

(matplotlib, Agg backend; no display needed.)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from genjax.viz.density import density_grid, extent_of, save_panels


def gan_toy_figure(path: str, *, data, samples, discriminator: Callable, paths=None,
                   centres=None, radius: float | None = None, d_label: str = "D(x)",
                   title: str = "", size: int = 150) -> None:
    """Three panels: (1) the data; (2) generator samples on filled contours of
    ``discriminator(points [M, 2]) -> [M]`` (e.g. D(x) = sigmoid(logit)), with the mode
    ``centres`` [K, 2] and circles of ``radius`` around them (the high-quality zone);
    (3) ``paths`` [P, S, 2]: generator outputs along P straight lines in latent space,
    S points each (None: panel 2's samples again, coloured by nothing). Writes a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, samples = np.asarray(data), np.asarray(samples)
    finite = samples[np.all(np.isfinite(samples), -1)]
    extent = extent_of(data, finite if len(finite) else data)
    xs, ys, dv = density_grid(discriminator, extent, size=size)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6))
    kw = dict(s=1, alpha=0.3, rasterized=True)
    axes[0].scatter(data[:, 0], data[:, 1], color="k", **kw)
    axes[0].set_title(f"data ({len(data)} points)")
    cs = axes[1].contourf(xs, ys, dv, levels=20, cmap="RdBu_r")
    fig.colorbar(cs, ax=axes[1], fraction=0.046, pad=0.02)
    axes[1].scatter(finite[:, 0], finite[:, 1], color="k", **kw)
    axes[1].set_title(f"samples ({len(samples)}) on {d_label}")
    for ax in axes[1:]:
        if centres is not None:
            c = np.asarray(centres)
            ax.scatter(c[:, 0], c[:, 1], marker="x", color="orange", s=30, zorder=3)
            if radius:
                for cx, cy in c:
                    ax.add_patch(plt.Circle((cx, cy), radius, fill=False, color="orange",
                                            lw=0.8, zorder=3))
    if paths is not None:
        paths = np.asarray(paths)
        for i, p in enumerate(paths):
            axes[2].plot(p[:, 0], p[:, 1], "-", lw=0.8, color=f"C{i % 10}", alpha=0.8)
            axes[2].plot(p[[0, -1], 0], p[[0, -1], 1], "o", ms=3, color=f"C{i % 10}")
        axes[2].set_title(f"G along {len(paths)} straight latent paths")
    else:
        axes[2].scatter(finite[:, 0], finite[:, 1], color="C1", **kw)
        axes[2].set_title("samples")
    save_panels(fig, axes, extent, path, title)
