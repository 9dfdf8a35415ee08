"""The standard figures of a latent-variable model of images, from plain callables:

  decode_mean(z [N, Z]) -> images [N, H, W, C] in [0, 1]
  encode_mean(x [N, H, W, C]) -> z [N, Z]   (the posterior mean, for interpolation)
"""

from __future__ import annotations

from typing import Callable

import jax
import numpy as np

from genjax.viz.grid import save_image_grid, writes_files
from genjax.viz.interpolate import lerp, slerp


def samples_figure(path: str, key, *, decode_mean: Callable, latent_dim: int,
                   num: int = 64) -> np.ndarray:
    """Decodes ``num`` prior draws z ~ N(0, I) and writes them as a grid."""
    z = jax.random.normal(key, (num, latent_dim))
    return save_image_grid(path, np.asarray(decode_mean(z)))


def reconstructions_figure(path: str, x, *, reconstruct: Callable) -> np.ndarray:
    """Rows alternate inputs and their reconstructions: x [N, H, W, C] in [0, 1]."""
    x = np.asarray(x)
    r = np.asarray(reconstruct(x))
    n = len(x)
    ncol = min(n, 16)
    rows = []
    for s in range(0, n, ncol):
        rows += [x[s:s + ncol], r[s:s + ncol]]
    return save_image_grid(path, np.concatenate(rows), ncol=ncol)


def interpolation_paths(x0, x1, *, encode_mean: Callable, decode_mean: Callable,
                        steps: int = 10, spherical: bool = False) -> np.ndarray:
    """Decoded points of the linear (or spherical) paths between the codes of the pairs
    (x0[i], x1[i]) [P, *E]: frames [steps, P, *E]."""
    z0, z1 = encode_mean(np.asarray(x0)), encode_mean(np.asarray(x1))   # [P, Z]
    path_z = (slerp if spherical else lerp)(z0, z1, steps)              # [S, P, Z]
    s, p, zd = path_z.shape
    return np.asarray(decode_mean(path_z.reshape(s * p, zd))).reshape(
        (s, p) + tuple(np.shape(x0)[1:]))


def interpolation_figure(path: str, x0, x1, *, encode_mean: Callable,
                         decode_mean: Callable, steps: int = 10,
                         spherical: bool = False) -> np.ndarray:
    """One row per pair (x0[i], x1[i]) [P, H, W, C]: the two inputs at the ends, decoded
    points of the linear (or spherical) path between their codes in between. Returns the
    decoded frames [steps, P, H, W, C]."""
    decoded = interpolation_paths(x0, x1, encode_mean=encode_mean, decode_mean=decode_mean,
                                  steps=steps, spherical=spherical)
    rows = np.concatenate([np.asarray(x0)[None], decoded, np.asarray(x1)[None]], 0)
    rows = np.swapaxes(rows, 0, 1).reshape((-1,) + tuple(np.shape(x0)[1:]))
    save_image_grid(path, rows, ncol=steps + 2)
    return decoded


def side_by_side_figure(path: str, panels: dict, *, ncol: int = 8,
                        suptitle: str = "") -> None:
    """One titled image grid per panel, left to right (e.g. the same prior draws decoded
    by an autoencoder and by a VAE). panels: {title: images [N, H, W, C] in [0, 1]}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genjax.viz.grid import image_grid

    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (title, images) in zip(axes[0], panels.items()):
        ax.imshow(image_grid(images, ncol=ncol), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    if suptitle:
        fig.suptitle(suptitle, fontsize=11)
    fig.tight_layout()
    if writes_files():
        fig.savefig(path, dpi=110)
    plt.close(fig)


def analogies_figure(path: str, z, *, decode_mean: Callable, classes,
                     sources=None) -> np.ndarray:
    """Analogies of a conditional model: one row per code z [R, Z], one column per class
    of ``classes`` (decode_mean(z, y [N]) -> [N, H, W, C] in [0, 1], the code kept and the
    label varied along a row); with ``sources`` [R, H, W, C] (e.g. the digit each code was
    encoded from, blank for prior draws) an extra first column. Returns the decoded images
    [R, len(classes), H, W, C]."""
    z, classes = np.asarray(z), np.asarray(classes, np.int32)
    r, k = len(z), len(classes)
    zz = np.repeat(z, k, axis=0)                                  # [R * K, Z], row-major
    yy = np.tile(classes, r)                                      # [R * K]
    decoded = np.asarray(decode_mean(zz, yy))
    decoded = decoded.reshape((r, k) + decoded.shape[1:])
    tiles = decoded if sources is None else np.concatenate(
        [np.asarray(sources, decoded.dtype)[:, None], decoded], 1)
    save_image_grid(path, tiles.reshape((-1,) + decoded.shape[2:]), ncol=tiles.shape[1])
    return decoded
