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
                   title: str = "", size: int = 150, labels=None, path_labels=None,
                   data_labels=None) -> None:
    """Three panels: (1) the data; (2) generator samples on filled contours of
    ``discriminator(points [M, 2]) -> [M]`` (e.g. D(x) = sigmoid(logit)), with the mode
    ``centres`` [K, 2] and circles of ``radius`` around them (the high-quality zone);
    (3) ``paths`` [P, S, 2]: generator outputs along P straight lines in latent space,
    S points each (None: panel 2's samples again, coloured by nothing). Writes a PNG.

    A class-conditional generator: ``labels`` [M] (the label each sample was drawn for)
    colours panel 2's samples by their requested label (and the data by
    ``data_labels``, the centres by their index); ``path_labels`` [P] the label each
    path was drawn with, its colour in panel 3. The discriminator is then D(x, y) for
    one fixed y (say which in ``d_label``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data, samples = np.asarray(data), np.asarray(samples)
    finite = samples[np.all(np.isfinite(samples), -1)]
    extent = extent_of(data, finite if len(finite) else data)
    xs, ys, dv = density_grid(discriminator, extent, size=size)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.6))
    kw = dict(s=1, alpha=0.3, rasterized=True)
    cond = labels is not None
    cmap = plt.get_cmap("tab10")

    def colour(lab):                       # label k -> tab10 colour k (cycling)
        return cmap(np.asarray(lab) % 10)

    if data_labels is not None:
        axes[0].scatter(data[:, 0], data[:, 1], color=colour(data_labels), **kw)
    else:
        axes[0].scatter(data[:, 0], data[:, 1], color="k", **kw)
    axes[0].set_title(f"data ({len(data)} points)")
    cs = axes[1].contourf(xs, ys, dv, levels=20, cmap="Greys" if cond else "RdBu_r")
    fig.colorbar(cs, ax=axes[1], fraction=0.046, pad=0.02)
    if cond:
        ok = np.all(np.isfinite(samples), -1)
        axes[1].scatter(samples[ok, 0], samples[ok, 1],
                        color=colour(np.asarray(labels)[ok]), **dict(kw, alpha=0.5))
        axes[1].set_title(f"samples ({len(samples)}) coloured by requested label,\n"
                          f"on {d_label}", fontsize=9)
    else:
        axes[1].scatter(finite[:, 0], finite[:, 1], color="k", **kw)
        axes[1].set_title(f"samples ({len(samples)}) on {d_label}")
    for ax in axes[1:]:
        if centres is not None:
            c = np.asarray(centres)
            ax.scatter(c[:, 0], c[:, 1], marker="x", s=30, zorder=3,
                       color=colour(np.arange(len(c))) if cond else "orange")
            if cond:
                for k, (cx, cy) in enumerate(c):
                    ax.annotate(str(k), (cx, cy), xytext=(4, 4), textcoords="offset points",
                                fontsize=7, color=colour(k))
            if radius:
                for cx, cy in c:
                    ax.add_patch(plt.Circle((cx, cy), radius, fill=False, color="orange",
                                            lw=0.8, zorder=3))
    if paths is not None:
        paths = np.asarray(paths)
        for i, p in enumerate(paths):
            col = colour(path_labels[i]) if path_labels is not None else f"C{i % 10}"
            axes[2].plot(p[:, 0], p[:, 1], "-", lw=0.8, color=col, alpha=0.8)
            axes[2].plot(p[[0, -1], 0], p[[0, -1], 1], "o", ms=3, color=col)
        axes[2].set_title(f"G along {len(paths)} straight latent paths"
                          + (" (one label each)" if path_labels is not None else ""))
    else:
        axes[2].scatter(finite[:, 0], finite[:, 1], color="C1", **kw)
        axes[2].set_title("samples")
    save_panels(fig, axes, extent, path, title)
