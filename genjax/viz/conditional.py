"""Figures of conditional generation: one row of samples per class, and the guidance
trade-off (conditional accuracy and Fréchet distance against the guidance weight)."""

from __future__ import annotations

import os

import numpy as np

from genjax.viz.grid import save_image_grid, writes_files


def class_rows(path: str, samples, labels, *, per_row: int = 10) -> np.ndarray:
    """Writes a grid with one row per class (classes in increasing order, the first
    ``per_row`` samples of each; samples [N, H, W, C] in [0, 1], labels [N]). Returns the
    uint8 grid."""
    samples, labels = np.asarray(samples), np.asarray(labels)
    rows = []
    for y in np.unique(labels):
        row = samples[labels == y][:per_row]
        if len(row) < per_row:                         # pad a short class with blanks
            row = np.concatenate([row, np.ones((per_row - len(row),) + row.shape[1:],
                                               row.dtype)])
        rows.append(row)
    return save_image_grid(path, np.concatenate(rows), ncol=per_row)


def guidance_tradeoff(path: str, weights, accuracy, fd, *, title: str = "") -> None:
    """Conditional accuracy (left axis) and Fréchet distance (right axis) against the
    guidance weight w: the classifier-free guidance trade-off, one point per w."""
    if not writes_files():
        return
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(weights, accuracy, "o-", color="C0", label="conditional accuracy")
    ax.set_xlabel("guidance weight w")
    ax.set_ylabel("conditional accuracy", color="C0")
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    ax2.plot(weights, fd, "s--", color="C3", label="Fréchet distance")
    ax2.set_ylabel("classifier Fréchet distance", color="C3")
    ax.set_title(title or "classifier-free guidance", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
