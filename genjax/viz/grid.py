"""Image grids written as PNG files (Pillow; no plotting library needed)."""

from __future__ import annotations

import math
import os

import numpy as np


def writes_files() -> bool:
    """Whether this process writes figures: with several processes (hosts) only process 0
    does (`genjax.train.distributed`); the others compute the same figure and drop it."""
    import jax  # pylint: disable=import-outside-toplevel
    return jax.process_index() == 0


def image_grid(images, *, ncol: int | None = None, pad: int = 2, pad_value: float = 1.0):
    """images: [N, H, W, C] floats in [0, 1] (C = 1 or 3). Returns a uint8 [H', W', 3]
    mosaic with ``ncol`` columns (default: about square) and ``pad`` pixels between tiles."""
    images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"image_grid expects [N, H, W, 1|3], got {images.shape}")
    if images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n, h, w, _ = images.shape
    ncol = ncol or math.ceil(math.sqrt(n))
    nrow = math.ceil(n / ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, 3), pad_value, np.float32)
    for i, img in enumerate(images):
        r, c = divmod(i, ncol)
        out[pad + r * (h + pad): pad + r * (h + pad) + h,
            pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return (out * 255.0 + 0.5).astype(np.uint8)


def save_image_grid(path: str, images, *, ncol: int | None = None, scale: int = 2,
                    pad: int = 2) -> np.ndarray:
    """Writes image_grid(images) to ``path`` (PNG), each pixel ``scale`` x ``scale``;
    returns the uint8 grid (unscaled)."""
    from PIL import Image
    grid = image_grid(images, ncol=ncol, pad=pad)
    if not writes_files():
        return grid
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    img = Image.fromarray(grid)
    if scale != 1:
        img = img.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    img.save(path)
    return grid
