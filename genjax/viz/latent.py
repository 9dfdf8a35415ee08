"""Figures of a 2-D latent space: test codes coloured by label, and the decoded manifold."""

from __future__ import annotations

from typing import Callable

import numpy as np
from scipy.stats import norm

from genjax.viz.grid import save_image_grid, writes_files


def latent_scatter_figure(path: str, z, labels, *, title: str = "") -> None:
    """Scatter of codes z [N, 2] coloured by integer labels [N], with a legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    z, labels = np.asarray(z), np.asarray(labels)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"latent_scatter_figure needs 2-D codes [N, 2], got {z.shape}")
    fig, ax = plt.subplots(figsize=(6.5, 6))
    for c in np.unique(labels):
        m = labels == c
        ax.scatter(z[m, 0], z[m, 1], s=6, alpha=0.7, color=plt.cm.tab10(int(c) % 10),
                   label=str(c))
    ax.set_xlabel("z1 (posterior mean)")
    ax.set_ylabel("z2 (posterior mean)")
    ax.set_title(title or "test encodings by label (labels not used in training)")
    ax.legend(markerscale=3, fontsize=8, loc="best")
    fig.tight_layout()
    if writes_files():
        fig.savefig(path, dpi=120)
    plt.close(fig)


def manifold_grid(n: int = 20, lo: float = 0.05, hi: float = 0.95) -> np.ndarray:
    """Codes [n * n, 2] on an n x n grid over the prior N(0, I)'s quantiles lo..hi in each
    coordinate (row-major, z2 decreasing down the rows so the image reads like a plot)."""
    q = norm.ppf(np.linspace(lo, hi, n))
    z1, z2 = np.meshgrid(q, q[::-1])
    return np.stack([z1.ravel(), z2.ravel()], 1).astype(np.float32)


def manifold_figure(path: str, *, decode_mean: Callable, n: int = 20) -> np.ndarray:
    """The decoded manifold of a 2-D latent: decode_mean over `manifold_grid` (n x n)."""
    return save_image_grid(path, np.asarray(decode_mean(manifold_grid(n))), ncol=n)


def class_manifolds_figure(path: str, *, decode_mean: Callable, classes,
                           n: int = 10) -> None:
    """A conditional model's 2-D latent, one panel per class: decode_mean(z, y) over
    `manifold_grid` (n x n) with y fixed to the panel's class (two rows of panels). The
    same z is the same style in every panel."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genjax.viz.grid import image_grid

    classes = np.asarray(classes, np.int32)
    z = manifold_grid(n)
    ncols = -(-len(classes) // 2) if len(classes) > 1 else 1
    nrows = -(-len(classes) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(2.6 * ncols, 2.8 * nrows + 0.4),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, c in zip(axes.ravel(), classes):
        images = np.asarray(decode_mean(z, np.full(len(z), c, np.int32)))
        ax.imshow(image_grid(images, ncol=n, pad=0), interpolation="nearest")
        ax.set_title(f"y = {c}", fontsize=10)
    fig.suptitle("decoded latent grid per class (same z = same style)", fontsize=10)
    if writes_files():
        fig.savefig(path, dpi=110)
    plt.close(fig)
