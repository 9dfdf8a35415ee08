"""The Metropolis-adjusted Langevin algorithm (Roberts & Tweedie 1996) on a batch of
chains: a Langevin proposal

    y = x + (h / 2) grad log p(x) + sqrt(h) z,    z ~ N(0, I)

accepted with probability min(1, p(y) q(x | y) / (p(x) q(y | x))), q(y | x) =
N(y; x + (h / 2) grad log p(x), h I). The Metropolis test makes p exactly invariant at
any step size h; the acceptance rate falls as h grows (about 0.57 is the optimum in high
dimension, Roberts & Rosenthal 1998).

One gradient evaluation per step: the chain carries log p(x) and its gradient.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import random as grandom
from genjax.mcmc.chain import Chain, check_chain_args, per_chain, run_chain, split2, sum_event
from genjax.mcmc.langevin import _as_float
from genjax.shapes import Shapes


def value_and_grad(log_prob_fn: Callable, where: str = "mcmc"):
    """x [C, *E] -> (log p(x) [C], grad_x log p(x) [C, *E]) for a batched
    ``log_prob_fn(x [C, *E]) -> [C]`` (the gradient of the sum: chains are independent).
    The output shape is checked at trace time."""
    def vg(x):
        lp, pullback = jax.vjp(log_prob_fn, x)
        Shapes(where)("log_prob_fn(x)", lp, f"{x.shape[0]}")
        (g,) = pullback(jnp.ones_like(lp))
        return lp, g
    return vg


def accept_probability(log_ratio):
    """min(1, exp(log_ratio)), 0 where the ratio is NaN (a proposal off the support)."""
    return jnp.where(jnp.isnan(log_ratio), 0.0, jnp.exp(jnp.minimum(log_ratio, 0.0)))


def _log_q(y, x, g_x, h):
    """log N(y; x + (h/2) g_x, h I) up to the constant (which cancels in the ratio): [C]."""
    return -0.5 * sum_event((y - x - 0.5 * h * g_x) ** 2 / h)


def _log_ratio(x, lp_x, g_x, y, lp_y, g_y, h):
    return lp_y - lp_x + _log_q(x, y, g_y, h) - _log_q(y, x, g_x, h)


def mala_log_acceptance(log_prob_fn: Callable, x, y, step_size):
    """The log Metropolis-Hastings ratio of the MALA move x -> y, before min(0, .):
    log p(y) - log p(x) + log q(x | y) - log q(y | x), [C].

    x, y: [C, *E]; log_prob_fn(x [C, *E]) -> [C]; step_size: h, a float or an array
    broadcastable to [C]."""
    where = "mcmc.mala_log_acceptance"
    s = Shapes(where)
    s("x", x, "C *E")
    s("y", y, "C *E")
    h = per_chain(step_size, x, "step_size", where)
    vg = value_and_grad(log_prob_fn, where)
    return _log_ratio(x, *vg(x), y, *vg(y), h)


def mala(key, x0, *, log_prob_fn: Callable, step_size, num_steps: int, burn_in: int = 0,
         thin: int = 1, keep_samples: bool = False) -> Chain:
    """MALA on C chains from x0 [C, *E].

    log_prob_fn(x [C, *E]) -> [C]: the unnormalised log density of each chain's state
        (nats; any additive constant).
    step_size: h (units of x squared), a Python float or an array broadcastable to [C]
        (one step size per chain; a vmap over step sizes works too).
    burn_in, thin, keep_samples: see `Chain`; accept_rate [C] is the mean acceptance
        probability after burn-in.

    Step i draws its proposal noise from ``step_keys(key, i)[0]`` ([C, *E] standard
    normals) and accepts iff u < ratio with u ~ U[0, 1) from ``step_keys(key, i)[1]``
    ([C]), i.e. iff log u < `mala_log_acceptance`.
    """
    where = "mcmc.mala"
    x0 = _as_float(x0)
    check_chain_args(where, x0, num_steps, burn_in, thin)
    h = per_chain(step_size, x0, "step_size", where)
    vg = value_and_grad(log_prob_fn, where)
    event = (1,) * (x0.ndim - 1)

    def transition(state, k, i):
        x, lp, g = state
        k_z, k_u = split2(k)
        y = x + 0.5 * h * g + jnp.sqrt(h) * grandom.normal(k_z, x.shape, x.dtype)
        lp_y, g_y = vg(y)
        log_r = _log_ratio(x, lp, g, y, lp_y, g_y, h)
        u = grandom.uniform(k_u, (x.shape[0],), x.dtype)
        ok = jnp.log(u) < log_r                                           # [C]
        okx = ok.reshape(ok.shape + event)
        state = (jnp.where(okx, y, x), jnp.where(ok, lp_y, lp), jnp.where(okx, g_y, g))
        return state, accept_probability(log_r)

    return run_chain(key, (x0, *vg(x0)), transition, num_steps=num_steps, burn_in=burn_in,
                     thin=thin, keep_samples=keep_samples, position=lambda s: s[0])
