"""Figures: image grids and latent interpolation paths."""

from genjax.viz.grid import image_grid, save_image_grid
from genjax.viz import figures
from genjax.viz.interpolate import lerp, slerp

__all__ = ["figures", "image_grid", "save_image_grid", "lerp", "slerp"]
