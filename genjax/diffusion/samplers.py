"""Samplers of a trained denoiser, each one compiled ``lax.scan`` over the steps.

* `ancestral`: DDPM's T steps x_T -> x_0 through p(x_{t-1} | x_t).
* `ddim`: Song et al.'s DDIM on S <= T evenly spaced steps; ``eta`` = 0 is
  deterministic, ``eta`` = 1 with S = T is the ancestral sampler with the "posterior"
  variance.

Both draw x_T from ``fold_in(key, T)`` and the noise of step t from ``fold_in(key, t)``,
so the two samplers see the same randomness at the same step (this is what lets the
tests compare them draw for draw).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax import random as grandom
from genjax.diffusion import forward, reverse
from genjax.diffusion.schedules import Schedule


def _noise(key, t, shape):
    return grandom.normal(jax.random.fold_in(key, t), shape)


def ancestral(key, model_fn: Callable, s: Schedule, shape, *, prediction: str = "eps",
              variance: str = "beta", clip: bool = True, return_path: bool = False):
    """Samples [N, *E] (``shape`` = (N, *E)) by T ancestral steps; with ``return_path``
    also every x_t, [T + 1, N, *E] from x_T down to x_0 (mind the memory: keep N small).
    """
    T = s.num_steps
    x_T = _noise(key, T, shape)

    def body(x, t):
        tt = jnp.full((shape[0],), t, jnp.int32)
        mean, log_var, _, _ = reverse.p_mean_var(s, model_fn, x, tt, prediction=prediction,
                                                 variance=variance, clip=clip)
        z = _noise(key, t, shape)
        x = mean + jnp.where(t > 0, jnp.exp(0.5 * log_var), 0.0) * z
        return x, (x if return_path else None)

    x0, path = jax.lax.scan(body, x_T, jnp.arange(T - 1, -1, -1))
    if return_path:
        return x0, jnp.concatenate([x_T[None], path])
    return x0


def ddim_steps(num_steps: int, T: int) -> np.ndarray:
    """S evenly spaced 0-based steps from 0 to T - 1, increasing (S = T gives all)."""
    if not 1 <= num_steps <= T:
        raise ValueError(f"DDIM needs 1 <= S <= T, got S = {num_steps}, T = {T}")
    return np.unique(np.round(np.linspace(0, T - 1, num_steps)).astype(np.int32))


def ddim(key, model_fn: Callable, s: Schedule, shape, *, num_steps: int = 50,
         eta: float = 0.0, prediction: str = "eps", clip: bool = True,
         return_path: bool = False):
    """Samples [N, *E] by DDIM on ``num_steps`` evenly spaced steps; ``eta`` scales the
    noise (0: deterministic). With ``return_path`` also [S + 1, N, *E]."""
    taus = ddim_steps(num_steps, s.num_steps)
    prev = np.concatenate([[-1], taus[:-1]])
    x_T = _noise(key, s.num_steps, shape)

    def body(x, tp):
        t, t_prev = tp[0], tp[1]
        tt = jnp.full((shape[0],), t, jnp.int32)
        x0, eps = forward.to_x0_eps(s, x, tt, model_fn(x, tt), prediction)
        if clip:
            x0 = jnp.clip(x0, -1.0, 1.0)
            eps = forward.eps_from_x0(s, x, tt, x0)
        ab = s.alpha_bars[t]
        ab_prev = jnp.where(t_prev >= 0, s.alpha_bars[jnp.maximum(t_prev, 0)], 1.0)
        sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab)) * jnp.sqrt(1 - ab / ab_prev)
        x = (jnp.sqrt(ab_prev) * x0 + jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0)) * eps
             + sigma * _noise(key, t, shape))
        return x, (x if return_path else None)

    steps = jnp.asarray(np.stack([taus[::-1], prev[::-1]], 1))
    x0, path = jax.lax.scan(body, x_T, steps)
    if return_path:
        return x0, jnp.concatenate([x_T[None], path])
    return x0
