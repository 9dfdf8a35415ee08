"""Denoising diffusion: schedules, the forward process and its posterior, the reverse
process of a denoiser, samplers, and the denoiser read as a score (`score`: Tweedie's
link to score matching, predictor-corrector sampling); classifier-free guidance of a
class-conditional denoiser (`guidance`) and completion of partly known images
(`inpaint`: replacement and RePaint). Objectives are in `genjax.losses.ddpm` (and
`genjax.losses.score`)."""

from genjax.diffusion import forward, guidance, inpaint, reverse, samplers, schedules, score
from genjax.diffusion.schedules import Schedule, make_schedule

__all__ = ["Schedule", "forward", "guidance", "inpaint", "make_schedule", "reverse",
           "samplers", "schedules", "score"]
