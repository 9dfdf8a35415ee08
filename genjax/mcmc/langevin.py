"""Unadjusted Langevin dynamics on a batch of chains: `ula` and Song & Ermon's annealed
Langevin dynamics (`annealed_langevin`). Neither has a Metropolis test, so both are
biased at any finite step (`genjax.mcmc.mala` removes the bias of `ula`).

Convention (Song & Ermon 2019), for a score s(x) = grad_x log p(x) and a step size h:

    x' = x + (h / 2) s(x) + noise_scale * z,    z ~ N(0, I),    noise_scale = sqrt(h)

which is the Euler-Maruyama step of dx = (1/2) grad log p(x) dt + dW over a time h, and
targets p as h -> 0. A ``noise_scale`` other than sqrt(h) decouples the drift from the
noise: the "short-run" dynamics of EBM training (Du & Mordatch 2019, Nijkamp et al. 2019),
which no longer target p (with noise_scale = 0 it is gradient ascent on log p).

Example (a Gaussian N(0, 4 I) in 2-D, 1,000 chains):

    chain = ula(key, jnp.zeros((1000, 2)), score_fn=lambda x: -x / 4.0,
                step_size=0.1, num_steps=500)
    chain.x          # [1000, 2], approximately N(0, 4 I) (variance 4.025: the bias of h)
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import random as grandom
from genjax.mcmc.chain import Chain, check_chain_args, per_chain, run_chain, split2
from genjax.shapes import Shapes


def _as_float(x0):
    x0 = jnp.asarray(x0)
    return x0 if jnp.issubdtype(x0.dtype, jnp.floating) else x0.astype(jnp.float32)


def ula(key, x0, *, score_fn: Callable, step_size, num_steps: int, noise_scale=None,
        clip_score: float | None = None, bounds: tuple | None = None, burn_in: int = 0,
        thin: int = 1, keep_samples: bool = False) -> Chain:
    """The unadjusted Langevin algorithm on C chains: ``num_steps`` steps of
    x' = x + (h / 2) s(x) + noise_scale z from x0 [C, *E].

    score_fn(x [C, *E]) -> [C, *E]: grad_x log p(x), per chain (for an energy E(x) with
        p ~ exp(-E): -grad E).
    step_size: h (units of x squared), a Python float or an array broadcastable to [C]
        (one step size per chain).
    noise_scale: the standard deviation of the noise per step (units of x), broadcastable
        to [C]; None: sqrt(h), the consistent discretisation.
    clip_score: clip the score element-wise to [-c, c] before the step (None: no clip).
    bounds: (lo, hi): clamp x to [lo, hi] after every step (None: no clamp).
    burn_in, thin, keep_samples: see `Chain` (nothing is accepted or rejected, so
        accept_rate is ones).

    Step i draws its noise from ``step_keys(key, i)[0]`` (`genjax.mcmc.chain`). Jittable,
    vmappable (over keys, step sizes, ...) and differentiable in x0.
    """
    where = "mcmc.ula"
    x0 = _as_float(x0)
    check_chain_args(where, x0, num_steps, burn_in, thin)
    s = Shapes(where)
    s("x0", x0, "C *E")
    h = per_chain(step_size, x0, "step_size", where)
    sd = jnp.sqrt(h) if noise_scale is None else per_chain(noise_scale, x0, "noise_scale",
                                                           where)
    ones = jnp.ones((x0.shape[0],), x0.dtype)

    def transition(x, k, i):
        g = score_fn(x)
        s("score_fn(x)", g, "C *E")
        if clip_score is not None:
            g = jnp.clip(g, -clip_score, clip_score)
        z = grandom.normal(split2(k)[0], x.shape, x.dtype)
        x = x + 0.5 * h * g + sd * z
        if bounds is not None:
            x = jnp.clip(x, bounds[0], bounds[1])
        return x, ones

    return run_chain(key, x0, transition, num_steps=num_steps, burn_in=burn_in, thin=thin,
                     keep_samples=keep_samples)


def annealed_langevin(key, x0, *, score_fn: Callable, sigmas, step_size,
                      steps_per_level: int, denoise: bool = True,
                      keep_levels: bool = False) -> Chain:
    """Annealed Langevin dynamics (Song & Ermon 2019, Algorithm 1) on C chains from x0
    [C, *E] (e.g. uniform or Gaussian noise at the scale of sigmas[0]).

    sigmas: [L] noise levels, descending (units of x); score_fn(x [C, *E], level) ->
        [C, *E], the score of the data convolved with N(0, sigmas[level]^2 I), where
        level is an int32 scalar array (the index into sigmas).
    step_size: epsilon, the step at the last level (units of x squared), a float or an
        array broadcastable to [C]. Level i takes ``steps_per_level`` Langevin steps with
        alpha_i = epsilon sigma_i^2 / sigma_L^2:
        x' = x + (alpha_i / 2) score_fn(x, i) + sqrt(alpha_i) z.
    denoise: finish with one noise-free Tweedie step x + sigma_L^2 score_fn(x, L - 1),
        the posterior mean E[x_clean | x] (Jolicoeur-Martineau et al. 2020).
    keep_levels: Chain.samples = [L, C, *E], the state at the end of each level (before
        the denoising step), for a strip of the chain's progress.

    Returns a `Chain` (x [C, *E] after denoising; accept_rate ones). Step t of level i
    draws its noise from ``step_keys(key, i * steps_per_level + t)[0]``.
    """
    where = "mcmc.annealed_langevin"
    x0 = _as_float(x0)
    s = Shapes(where)
    s("x0", x0, "C *E")
    s.positive_int("steps_per_level", steps_per_level)
    sigmas = jnp.asarray(sigmas, x0.dtype)
    (num_levels,) = s("sigmas", sigmas, "L")
    eps = per_chain(step_size, x0, "step_size", where)
    n = steps_per_level

    def score(x, level):
        g = score_fn(x, level)
        s("score_fn(x, level)", g, "C *E")
        return g

    def level_body(x, level):
        alpha = eps * (sigmas[level] / sigmas[-1]) ** 2                 # [C, 1, ...]

        def step(x, t):
            z = grandom.normal(split2(jax.random.fold_in(key, level * n + t))[0], x.shape,
                               x.dtype)
            return x + 0.5 * alpha * score(x, level) + jnp.sqrt(alpha) * z, None

        x, _ = jax.lax.scan(step, x, jnp.arange(n, dtype=jnp.int32))
        return x, (x if keep_levels else None)

    x, levels = jax.lax.scan(level_body, x0, jnp.arange(num_levels, dtype=jnp.int32))
    if denoise:
        x = x + sigmas[-1] ** 2 * score(x, jnp.asarray(num_levels - 1, jnp.int32))
    return Chain(x, levels, jnp.ones((x0.shape[0],), x0.dtype))
