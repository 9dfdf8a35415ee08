"""The learned reverse process p(x_{t-1} | x_t) = N(mean, exp(log_var)) of a denoiser.

``model_fn(x_t, t) -> out`` is any callable (a Flax module, a lambda) with x_t [B, *E]
and integer steps t [B]; ``out`` [B, *E] is read as ``prediction`` ("eps", "x0", "v").
The mean is the posterior mean q(x_{t-1} | x_t, x_0 = predicted x_0). Two fixed
variances, as in DDPM: "posterior" (beta-tilde_t, the lower bound on the optimal one)
and "beta" (beta_t, the upper; its t = 0 entry is beta-tilde_1, as in DDPM's code).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp

from genjax.diffusion import forward
from genjax.diffusion.schedules import Schedule

VARIANCES = ("posterior", "beta")


def log_variance(s: Schedule, variance: str):
    """The reverse process's log variance per step: float32 [T]."""
    if variance == "posterior":
        return s.posterior_log_variance
    if variance == "beta":
        return jnp.log(jnp.concatenate([s.posterior_variance[1:2], s.betas[1:]]))
    raise ValueError(f"unknown variance {variance!r}; choose one of {VARIANCES}")


def p_mean_var(s: Schedule, model_fn: Callable, xt, t, *, prediction: str = "eps",
               variance: str = "beta", clip: bool = True):
    """(mean [B, *E], log_var [B, 1, ...], x0 estimate [B, *E], eps estimate [B, *E]) of
    p(x_{t-1} | x_t). With ``clip`` the x_0 estimate is clipped to [-1, 1] (and the eps
    estimate recomputed from it)."""
    x0, eps = forward.to_x0_eps(s, xt, t, model_fn(xt, t), prediction)
    if clip:
        x0 = jnp.clip(x0, -1.0, 1.0)
        eps = forward.eps_from_x0(s, xt, t, x0)
    mean, _, _ = forward.q_posterior(s, x0, xt, t)
    log_var = forward._at(log_variance(s, variance), t, xt)
    return mean, log_var, x0, eps
