"""Noise schedules of the forward process and the constants derived from them.

Time is 0-based: index ``t`` in 0..T-1 is the paper's step t + 1, so ``alpha_bars[0]``
is 1 - beta_1 and ``alpha_bars[T - 1]`` is alpha-bar_T (the noisiest step).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

KINDS = ("linear", "cosine")


def linear_betas(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02):
    """DDPM's linear schedule, scaled so that T = 1000 gives beta from 1e-4 to 0.02
    (Ho et al. 2020): float64 [T]."""
    scale = 1000.0 / num_steps
    return np.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999):
    """Nichol & Dhariwal's cosine schedule: alpha-bar(t) = cos^2(pi/2 (t/T + s)/(1 + s)),
    betas = 1 - alpha-bar_t / alpha-bar_{t-1}, clipped at ``max_beta``: float64 [T]."""
    f = np.cos((np.arange(num_steps + 1, dtype=np.float64) / num_steps + s) / (1 + s)
               * np.pi / 2) ** 2
    return np.clip(1.0 - f[1:] / f[:-1], 0.0, max_beta)


class Schedule(NamedTuple):
    """Per-step constants, each float32 [T] (a pytree, so it can be closed over or passed
    into jitted code).

    betas: beta_t; alpha_bars: prod_{s<=t} (1 - beta_s); alpha_bars_prev: the same at
    t - 1 (1 at t = 0); posterior_variance: beta-tilde_t = beta_t (1 - alpha-bar_{t-1}) /
    (1 - alpha-bar_t), the variance of q(x_{t-1} | x_t, x_0) (0 at t = 0);
    posterior_log_variance: its log with the t = 0 entry replaced by the t = 1 one (as
    in DDPM's code, since log 0 is -inf); posterior_mean_coef_x0 / _xt: the posterior
    mean is coef_x0 * x_0 + coef_xt * x_t.
    """
    betas: jnp.ndarray
    alpha_bars: jnp.ndarray
    alpha_bars_prev: jnp.ndarray
    posterior_variance: jnp.ndarray
    posterior_log_variance: jnp.ndarray
    posterior_mean_coef_x0: jnp.ndarray
    posterior_mean_coef_xt: jnp.ndarray

    @property
    def num_steps(self) -> int:
        return self.betas.shape[0]


def make_schedule(kind: str = "linear", num_steps: int = 1000) -> Schedule:
    """The constants of a ``kind`` ("linear" or "cosine") schedule with T = ``num_steps``,
    computed in float64 and stored as float32."""
    if kind not in KINDS:
        raise ValueError(f"unknown schedule {kind!r}; choose one of {KINDS}")
    if num_steps < 2:
        raise ValueError(f"a schedule needs at least 2 steps, got {num_steps}")
    betas = linear_betas(num_steps) if kind == "linear" else cosine_betas(num_steps)
    alphas = 1.0 - betas
    ab = np.cumprod(alphas)
    ab_prev = np.concatenate([[1.0], ab[:-1]])
    post_var = betas * (1.0 - ab_prev) / (1.0 - ab)
    post_log_var = np.log(np.concatenate([post_var[1:2], post_var[1:]]))
    coef_x0 = betas * np.sqrt(ab_prev) / (1.0 - ab)
    coef_xt = (1.0 - ab_prev) * np.sqrt(alphas) / (1.0 - ab)
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    return Schedule(f32(betas), f32(ab), f32(ab_prev), f32(post_var), f32(post_log_var),
                    f32(coef_x0), f32(coef_xt))
