"""Figures: image grids, latent interpolation paths, 2-D latent maps, score histograms."""

from genjax.viz.grid import image_grid, save_image_grid
from genjax.viz import anomaly, figures, gan_toy, latent
from genjax.viz.interpolate import lerp, slerp

__all__ = ["anomaly", "figures", "gan_toy", "image_grid", "latent", "save_image_grid", "lerp", "slerp"]
