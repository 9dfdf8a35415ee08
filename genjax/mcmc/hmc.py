"""Hamiltonian Monte Carlo (Duane et al. 1987; Neal 2011) with a fixed number of leapfrog
steps and a diagonal mass matrix, on a batch of chains.

For a target p(x) and momentum p ~ N(0, M), M = diag(1 / inverse_mass), the Hamiltonian
is H(x, p) = -log p(x) + (1/2) sum(inverse_mass * p^2). One step draws a fresh momentum,
runs ``num_leapfrog`` leapfrog steps of size h,

    p <- p + (h/2) grad log p(x);   x <- x + h inverse_mass p;   p <- p + (h/2) grad log p(x)

and accepts the end point with probability min(1, exp(H(x, p) - H(x', p'))). (The
momentum flip that makes the proposal an involution does not change H, so it is left
out.) The chain carries log p(x) and its gradient: num_leapfrog gradient evaluations per
step.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import random as grandom
from genjax.mcmc.chain import Chain, check_chain_args, per_chain, run_chain, split2, sum_event
from genjax.mcmc.langevin import _as_float
from genjax.mcmc.mala import accept_probability, value_and_grad
from genjax.shapes import Shapes


def _inverse_mass(inverse_mass, x, where):
    if inverse_mass is None:
        return jnp.ones((), x.dtype)
    m = jnp.asarray(inverse_mass, x.dtype)
    Shapes(where).broadcastable("inverse_mass", m, "[*E] (the event shape of x)", x.shape[1:])
    return m


def _leapfrog(vg, x, p, g, h, num_leapfrog, m_inv):
    """(x, p, log p(x), grad) after ``num_leapfrog`` steps from (x, p) with grad = the
    gradient at x. The first num_leapfrog - 1 steps evaluate the gradient alone (XLA drops
    the unused log p: one reduction pass fewer per step), the last one the value too."""
    def kick_drift(x, p, g):
        p = p + 0.5 * h * g
        return x + h * m_inv * p, p

    def body(carry, _):
        x, p, g = carry
        x, p = kick_drift(x, p, g)
        g = vg(x)[1]
        return (x, p + 0.5 * h * g, g), None

    (x, p, g), _ = jax.lax.scan(body, (x, p, g), None, length=num_leapfrog - 1)
    x, p = kick_drift(x, p, g)
    lp, g = vg(x)
    return x, p + 0.5 * h * g, lp, g


def _kinetic(p, m_inv):
    return 0.5 * sum_event(m_inv * p ** 2)


def hamiltonian(log_prob_fn: Callable, x, p, inverse_mass=None):
    """H(x, p) = -log p(x) + (1/2) sum(inverse_mass * p^2): x, p [C, *E] -> [C] nats."""
    where = "mcmc.hamiltonian"
    s = Shapes(where)
    s("x", x, "C *E")
    s("p", p, "C *E")
    lp = log_prob_fn(x)
    s("log_prob_fn(x)", lp, "C")
    return -lp + _kinetic(p, _inverse_mass(inverse_mass, x, where))


def leapfrog(log_prob_fn: Callable, x, p, step_size, num_leapfrog: int, inverse_mass=None):
    """``num_leapfrog`` leapfrog steps of size ``step_size`` (a float or broadcastable to
    [C]) from positions x [C, *E] and momenta p [C, *E]; returns (x', p')."""
    where = "mcmc.leapfrog"
    s = Shapes(where)
    s("x", x, "C *E")
    s("p", p, "C *E")
    s.positive_int("num_leapfrog", num_leapfrog)
    vg = value_and_grad(log_prob_fn, where)
    h = per_chain(step_size, x, "step_size", where)
    x, p, _, _ = _leapfrog(vg, x, p, vg(x)[1], h, num_leapfrog,
                           _inverse_mass(inverse_mass, x, where))
    return x, p


def hmc_log_acceptance(log_prob_fn: Callable, x, p, step_size, num_leapfrog: int,
                       inverse_mass=None):
    """The log Metropolis ratio H(x, p) - H(x', p') of the HMC proposal from (x, p), with
    (x', p') = `leapfrog`(x, p): [C] nats, before min(0, .)."""
    x1, p1 = leapfrog(log_prob_fn, x, p, step_size, num_leapfrog, inverse_mass)
    return (hamiltonian(log_prob_fn, x, p, inverse_mass)
            - hamiltonian(log_prob_fn, x1, p1, inverse_mass))


def hmc(key, x0, *, log_prob_fn: Callable, step_size, num_leapfrog: int, num_steps: int,
        inverse_mass=None, burn_in: int = 0, thin: int = 1,
        keep_samples: bool = False) -> Chain:
    """HMC on C chains from x0 [C, *E].

    log_prob_fn(x [C, *E]) -> [C]: the unnormalised log density per chain (nats).
    step_size: the leapfrog step h (units of x), a Python float or an array broadcastable
        to [C]; num_leapfrog: leapfrog steps per proposal (a Python int; the trajectory
        length is h * num_leapfrog).
    inverse_mass: the diagonal of M^-1 (ideally the target's marginal variances), None
        (identity) or an array broadcastable to [*E].
    burn_in, thin, keep_samples: see `Chain`.

    Step i draws the momentum p = z / sqrt(inverse_mass) with z [C, *E] standard normals
    from ``step_keys(key, i)[0]``, and accepts iff u < exp(H(x, p) - H(x', p')) with
    u ~ U[0, 1) [C] from ``step_keys(key, i)[1]``.
    """
    where = "mcmc.hmc"
    x0 = _as_float(x0)
    check_chain_args(where, x0, num_steps, burn_in, thin)
    Shapes(where).positive_int("num_leapfrog", num_leapfrog)
    h = per_chain(step_size, x0, "step_size", where)
    m_inv = _inverse_mass(inverse_mass, x0, where)
    vg = value_and_grad(log_prob_fn, where)
    event = (1,) * (x0.ndim - 1)

    def transition(state, k, i):
        x, lp, g = state
        k_z, k_u = split2(k)
        p = grandom.normal(k_z, x.shape, x.dtype) / jnp.sqrt(m_inv)
        y, q, lp_y, g_y = _leapfrog(vg, x, p, g, h, num_leapfrog, m_inv)
        log_r = (lp_y - _kinetic(q, m_inv)) - (lp - _kinetic(p, m_inv))
        u = grandom.uniform(k_u, (x.shape[0],), x.dtype)
        ok = jnp.log(u) < log_r
        okx = ok.reshape(ok.shape + event)
        state = (jnp.where(okx, y, x), jnp.where(ok, lp_y, lp), jnp.where(okx, g_y, g))
        return state, accept_probability(log_r)

    return run_chain(key, (x0, *vg(x0)), transition, num_steps=num_steps, burn_in=burn_in,
                     thin=thin, keep_samples=keep_samples, position=lambda s: s[0])
