"""Denoising diffusion: schedules, the forward process and its posterior, the reverse
process of a denoiser, and samplers. Objectives are in `genjax.losses.ddpm`."""

from genjax.diffusion import forward, reverse, samplers, schedules
from genjax.diffusion.schedules import Schedule, make_schedule

__all__ = ["Schedule", "forward", "make_schedule", "reverse", "samplers", "schedules"]
