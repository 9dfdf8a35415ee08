"""A DDPM denoiser read as a score, and score-based sampling with it.

The forward process gives x_t = sqrt(alpha-bar_t) x_0 + sqrt(1 - alpha-bar_t) eps, and
Tweedie's formula ties the MMSE noise prediction to the score of the marginal q(x_t):

    grad_x log q_t(x_t) = -E[eps | x_t] / sqrt(1 - alpha-bar_t),

so a network trained with `genjax.losses.ddpm.noise_loss` is a (scaled) score network
(`score_from_eps`, `score_fn`; Song et al. 2021, "score SDE", the VP SDE). That score
drives Langevin corrector steps between the ancestral steps (`predictor_corrector`), and
`ddpm_sigmas` gives the noise levels at which the same network is an NCSN.

Shapes and time as in `genjax.diffusion`: x_t [B, *E], steps t [B] int, 0-based (index t
is the paper's step t + 1); images in [-1, 1].
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import random as grandom
from genjax.diffusion import forward, reverse, samplers
from genjax.diffusion.schedules import Schedule


def score_from_eps(s: Schedule, t, eps):
    """The score of q(x_t) from a noise prediction: -eps / sqrt(1 - alpha-bar_t).
    t [B] int, eps [B, *E] -> [B, *E]. Exact for the MMSE predictor E[eps | x_t]."""
    return -eps / jnp.sqrt(1.0 - forward._at(s.alpha_bars, t, eps))


def eps_from_score(s: Schedule, t, score):
    """The inverse of `score_from_eps`: -sqrt(1 - alpha-bar_t) score. t [B], score
    [B, *E] -> [B, *E]."""
    return -jnp.sqrt(1.0 - forward._at(s.alpha_bars, t, score)) * score


def score_fn(model_fn: Callable, s: Schedule, prediction: str = "eps") -> Callable:
    """``score(x_t [B, *E], t [B]) -> [B, *E]``: any DDPM denoiser ``model_fn(x_t, t)``
    whose output is read as ``prediction`` ("eps", "x0" or "v", converted by
    `genjax.diffusion.forward.to_x0_eps`), as the score of q(x_t). No clipping of the x_0
    estimate (that would bias the score)."""
    if prediction not in forward.PREDICTIONS:
        raise ValueError(f"unknown prediction {prediction!r}; choose one of "
                         f"{forward.PREDICTIONS}")

    def score(xt, t):
        _, eps = forward.to_x0_eps(s, xt, t, model_fn(xt, t), prediction)
        return score_from_eps(s, t, eps)

    return score


def ddpm_sigmas(s: Schedule):
    """The NCSN noise levels of a DDPM: sigma_t = sqrt((1 - alpha-bar_t) / alpha-bar_t),
    float32 [T], increasing in t (reverse them for an NCSN ladder, which descends).

    The scaled variable y_t = x_t / sqrt(alpha-bar_t) = x_0 + sigma_t eps is the data
    smoothed with N(0, sigma_t^2 I), exactly an NCSN's (variance-exploding) perturbation at
    level sigma_t. Its score is the DDPM's score rescaled:

        grad_y log p(y_t) = sqrt(alpha-bar_t) grad_x log q(x_t) = -E[eps | x_t] / sigma_t,

    so s_ncsn(y, sigma_t) = -eps_model(sqrt(alpha-bar_t) y, t) / sigma_t, and the NCSN
    objective at these levels, 0.5 || sigma_t s_ncsn + z ||^2 = 0.5 || z - eps_model ||^2,
    is DDPM's L_simple (summed over pixels rather than averaged, halved): the two models
    differ in their noise levels and their weighting over levels, not in what they learn.
    """
    ab = s.alpha_bars
    return jnp.sqrt((1.0 - ab) / ab)


def predictor_corrector(key, model_fn: Callable, s: Schedule, shape, *,
                        prediction: str = "eps", variance: str = "beta", clip: bool = True,
                        corrector_steps: int = 1, snr: float = 0.16,
                        return_path: bool = False):
    """Predictor-corrector sampling (Song et al. 2021, Algorithms 2/4 with the ancestral
    predictor of the VP SDE): samples [N, *E] (``shape`` = (N, *E)), images in [-1, 1].

    For t = T-1 .. 0: the ancestral step x_t -> x_{t-1} of `samplers.ancestral` (the same
    p(x_{t-1} | x_t) with ``prediction``, ``variance`` and ``clip``), then, for t > 0,
    ``corrector_steps`` Langevin steps at level t - 1 with the model's score g =
    `score_fn`(x, t - 1) (unclipped):

        z ~ N(0, I),  eps = 2 alpha_{t-1} (snr ||z|| / ||g||)^2,  x <- x + eps g + sqrt(2 eps) z

    with alpha_{t-1} = 1 - beta_{t-1}, the alpha of the corrector's own level, and the norms
    over the event dims of each example (score_sde averages the two norms over the batch
    instead: here each sample's step does not depend on the others in the batch). The last
    step (t = 0) is the noise-free ancestral one, with no corrector after it.

    The corrector is unadjusted Langevin (no Metropolis test), so it has a bias of its own:
    even with the exact score, each step widens a Gaussian's variance by about
    (snr^2 D / ||z||^2)^2 ~ 0.3% at snr = 0.16, more for narrow components of a
    distribution whose other components set ||score||; and the per-example step size
    depends on x through ||score||, which widens it further in low dimension (measured on
    a Gaussian at equilibrium: +0.4% per step at D = 256, +3% at D = 16). Meant for images
    (D in the thousands); with D of tens prefer ``corrector_steps=0`` or a smaller ``snr``.

    One compiled ``lax.scan`` over t (the corrector steps a nested scan). Randomness: x_T
    and the predictor's noise are `samplers.ancestral`'s (``fold_in(key, T)``,
    ``fold_in(key, t)``); corrector step j after predictor step t draws from
    ``fold_in(fold_in(fold_in(key, T + 1), t), j)``, so ``corrector_steps=0`` is
    `samplers.ancestral` draw for draw, and adding corrector steps leaves the
    predictor's noise as it was. With ``return_path`` also every x_t after its
    predictor and corrector steps, [T + 1, N, *E] from x_T down to x_0.
    """
    if not isinstance(corrector_steps, int) or corrector_steps < 0:
        raise ValueError(f"corrector_steps = {corrector_steps!r} must be an int >= 0")
    T = s.num_steps
    n = shape[0]
    score = score_fn(model_fn, s, prediction)
    alphas = 1.0 - s.betas
    k_corrector = jax.random.fold_in(key, T + 1)
    x_T = samplers._noise(key, T, shape)

    def norm(v):                                                   # [N, *E] -> [N, 1, ...]
        n2 = (v.astype(jnp.float32) ** 2).reshape(n, -1).sum(-1)
        return jnp.sqrt(n2).reshape((n,) + (1,) * (len(shape) - 1))

    def corrector(x, t):
        level = jnp.maximum(t - 1, 0)                  # t > 0 here (t = 0 only under vmap)
        lt = jnp.full((n,), level, jnp.int32)
        k_t = jax.random.fold_in(k_corrector, t)

        def langevin(x, j):
            g = score(x, lt)
            z = grandom.normal(jax.random.fold_in(k_t, j), shape)
            eps = 2.0 * alphas[level] * (snr * norm(z) / norm(g)) ** 2       # [N, 1, ...]
            return x + eps * g + jnp.sqrt(2.0 * eps) * z, None

        x, _ = jax.lax.scan(langevin, x, jnp.arange(corrector_steps))
        return x

    def body(x, t):
        tt = jnp.full((n,), t, jnp.int32)
        mean, log_var, _, _ = reverse.p_mean_var(s, model_fn, x, tt, prediction=prediction,
                                                 variance=variance, clip=clip)
        z = samplers._noise(key, t, shape)
        x = mean + jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0) * z
        if corrector_steps:
            x = jax.lax.cond(t > 0, corrector, lambda x, t: x, x, t)
        return x, (x if return_path else None)

    x0, path = jax.lax.scan(body, x_T, jnp.arange(T - 1, -1, -1))
    if return_path:
        return x0, jnp.concatenate([x_T[None], path])
    return x0
