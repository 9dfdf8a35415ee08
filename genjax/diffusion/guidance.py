"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper of a class-conditional
denoiser, usable by every sampler of `genjax.diffusion` (ancestral, DDIM,
predictor-corrector, the completion samplers of `genjax.diffusion.inpaint`).

A class-conditional denoiser ``model_fn(x_t [B, *E], t [B], y [B]) -> [B, *E]`` trained
with labels dropped to the null class K (`genjax.conditioning.drop_labels`,
`genjax.losses.ddpm.conditional_noise_loss`) is at once the conditional model eps(x, t, y)
and the unconditional one eps(x, t, K). Guidance with weight w samples with

    eps~(x, t, y) = (1 + w) eps(x, t, y) - w eps(x, t, K)
                  = eps(x, t, y) + w (eps(x, t, y) - eps(x, t, K)),

i.e. (Tweedie) the score of q_t(x | y) q_t(y | x)^w, the implicit classifier raised to
the power w. **The convention of w**: w = 0 is the conditional model (no guidance), w > 0
sharpens towards what distinguishes y, w = -1 is the unconditional model. Other
codebases (Stable Diffusion, diffusers' ``guidance_scale``, GLIDE) write the same thing
with the *scale* s = 1 + w: eps~ = eps_null + s (eps_y - eps_null), so s = 1 is our w = 0
and their s = 7.5 is our w = 6.5.

The wrapper guides the network's raw output whatever it predicts: eps, x_0 and v are
affine in one another at fixed (x_t, t) and the weights (1 + w, -w) sum to one, so
guiding the x_0 or v prediction is the same as guiding eps.

The conditional and the null branch run as one batched call on [2B] inputs (one network
evaluation of twice the batch rather than two: faster, and the two halves see the same
compiled program, so with y = K they agree bit for bit on a batch-independent network).
"""

from __future__ import annotations

from numbers import Number
from typing import Callable

import jax.numpy as jnp

from genjax.conditioning import null_label
from genjax.diffusion import samplers


def conditional(model_fn: Callable, y) -> Callable:
    """``model_fn(x, t, y)`` with the labels y [B] fixed: a ``fn(x, t)`` for the samplers
    (the conditional sampler; y = K is the unconditional one)."""
    y = jnp.asarray(y, jnp.int32)

    def fn(xt, t):
        return model_fn(xt, t, y)

    return fn


def combine(out_cond, out_null, w):
    """The guided output out_cond + w (out_cond - out_null) (= (1 + w) out_cond - w out_null;
    this form returns out_cond exactly when w = 0 or when the two branches agree)."""
    return out_cond + w * (out_cond - out_null)


def guided(model_fn: Callable, y, w, num_classes: int) -> Callable:
    """The classifier-free guided denoiser ``fn(x_t [B, *E], t [B]) -> [B, *E]`` of a
    class-conditional ``model_fn(x_t, t, y)`` for labels y [B] (0..K-1, or K = null) and
    guidance weight ``w`` (a Python number or a traced scalar; see the module docstring
    for the convention: w = 0 conditional, s = 1 + w elsewhere).

    A Python ``w == 0`` returns the conditional denoiser itself (one branch, half the
    work); otherwise both branches run as one [2B] call of model_fn.
    """
    y = jnp.asarray(y, jnp.int32)
    if isinstance(w, Number) and w == 0:
        return conditional(model_fn, y)
    null = jnp.full_like(y, null_label(num_classes))

    def fn(xt, t):
        b = xt.shape[0]
        out = model_fn(jnp.concatenate([xt, xt]), jnp.concatenate([t, t]),
                       jnp.concatenate([y, null]))
        return combine(out[:b], out[b:], jnp.asarray(w, out.dtype))

    return fn


SAMPLERS = ("ddim", "ancestral")


def sample(key, model_fn: Callable, s, y, w, *, num_classes: int, example_shape,
           sampler: str = "ddim", **kwargs):
    """Class-conditional samples [N, *E] for labels y [N] with guidance weight ``w``:
    `samplers.ddim` (default) or `samplers.ancestral` (``sampler``) of `guided`
    (model_fn, y, w, num_classes); ``kwargs`` go to the sampler (num_steps, eta,
    prediction, variance, clip, ...)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose one of {SAMPLERS}")
    fn = guided(model_fn, y, w, num_classes)
    shape = (jnp.shape(y)[0], *example_shape)
    run = samplers.ddim if sampler == "ddim" else samplers.ancestral
    return run(key, fn, s, shape, **kwargs)
