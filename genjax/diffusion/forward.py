"""The forward (noising) process q and its posterior, and conversions between the three
things a denoiser may predict (eps, x_0, v).

All functions take a `Schedule`, images x [B, *E] and integer steps t [B] (0-based, see
`genjax.diffusion.schedules`); per-step constants broadcast over the event axes.
"""

from __future__ import annotations

import jax.numpy as jnp

from genjax.diffusion.schedules import Schedule


def _at(values, t, x):
    """values[t] [B] reshaped to broadcast against x [B, *E]."""
    return values[t].reshape((t.shape[0],) + (1,) * (x.ndim - 1))


def q_mean_var(s: Schedule, x0, t):
    """q(x_t | x_0) = N(sqrt(alpha-bar_t) x_0, (1 - alpha-bar_t) I): (mean [B, *E],
    variance [B, 1, ...])."""
    ab = _at(s.alpha_bars, t, x0)
    return jnp.sqrt(ab) * x0, 1.0 - ab


def q_sample(s: Schedule, x0, t, noise):
    """A draw of x_t given x_0 with standard normal ``noise`` [B, *E]."""
    ab = _at(s.alpha_bars, t, x0)
    return jnp.sqrt(ab) * x0 + jnp.sqrt(1.0 - ab) * noise


def q_posterior(s: Schedule, x0, xt, t):
    """q(x_{t-1} | x_t, x_0) = N(mean, var): (mean [B, *E], var, log_var [B, 1, ...]).
    At t = 0 the mean is x_0 itself and the variance 0 (log_var is then the t = 1
    value, see `Schedule`)."""
    mean = _at(s.posterior_mean_coef_x0, t, x0) * x0 + _at(s.posterior_mean_coef_xt, t, xt) * xt
    return mean, _at(s.posterior_variance, t, x0), _at(s.posterior_log_variance, t, x0)


def x0_from_eps(s: Schedule, xt, t, eps):
    ab = _at(s.alpha_bars, t, xt)
    return (xt - jnp.sqrt(1.0 - ab) * eps) / jnp.sqrt(ab)


def eps_from_x0(s: Schedule, xt, t, x0):
    ab = _at(s.alpha_bars, t, xt)
    return (xt - jnp.sqrt(ab) * x0) / jnp.sqrt(1.0 - ab)


def v_from_eps_x0(s: Schedule, t, eps, x0):
    """v = sqrt(alpha-bar) eps - sqrt(1 - alpha-bar) x_0 (Salimans & Ho 2022)."""
    ab = _at(s.alpha_bars, t, x0)
    return jnp.sqrt(ab) * eps - jnp.sqrt(1.0 - ab) * x0


def x0_from_v(s: Schedule, xt, t, v):
    ab = _at(s.alpha_bars, t, xt)
    return jnp.sqrt(ab) * xt - jnp.sqrt(1.0 - ab) * v


def eps_from_v(s: Schedule, xt, t, v):
    ab = _at(s.alpha_bars, t, xt)
    return jnp.sqrt(1.0 - ab) * xt + jnp.sqrt(ab) * v


PREDICTIONS = ("eps", "x0", "v")


def to_x0_eps(s: Schedule, xt, t, out, prediction: str):
    """The network output ``out`` read as ``prediction`` ("eps", "x0" or "v"), converted
    to (x_0 estimate, eps estimate)."""
    if prediction == "eps":
        return x0_from_eps(s, xt, t, out), out
    if prediction == "x0":
        return out, eps_from_x0(s, xt, t, out)
    if prediction == "v":
        return x0_from_v(s, xt, t, out), eps_from_v(s, xt, t, out)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")


def target(s: Schedule, x0, t, noise, prediction: str):
    """What the network should output for x_t = q_sample(x0, t, noise)."""
    if prediction == "eps":
        return noise
    if prediction == "x0":
        return x0
    if prediction == "v":
        return v_from_eps_x0(s, t, noise, x0)
    raise ValueError(f"unknown prediction {prediction!r}; choose one of {PREDICTIONS}")
