"""What every sampler of `genjax.mcmc` shares: the `Chain` it returns, the per-chain
broadcasting of step sizes, the per-step keys, and `run_chain`, the compiled loop that
runs a transition kernel with burn-in, thinning and the acceptance bookkeeping.

Randomness: step i (0-based, counting burn-in) draws everything from
``jax.random.fold_in(key, i)``, split by `step_keys` into the key of its normals and the
key of its uniforms (the Metropolis test). A chain's whole path is therefore a function
of (key, x0) alone, and a peer implementation can be handed the same draws
(`benchmarks/mcmc_throughput.py` does).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from genjax.shapes import Shapes


class Chain(NamedTuple):
    """The result of a sampler run on C independent chains.

    x: [C, *E] the final states.
    samples: [S, C, *E] the kept states with ``keep_samples=True``, S = (num_steps -
        burn_in) // thin: the states after steps burn_in + thin, burn_in + 2 thin, ...
        (1-based step counts); None otherwise. (`annealed_langevin` with
        ``keep_levels=True``: [L, C, *E], the state at the end of each noise level.)
    accept_rate: [C] the mean Metropolis acceptance probability min(1, ratio) over the
        steps after burn-in (the probability, not the 0/1 outcome: same mean, less
        noise); ones for the unadjusted samplers (ULA, annealed Langevin).
    """
    x: jax.Array
    samples: jax.Array | None
    accept_rate: jax.Array


def per_chain(value, x, name: str, where: str):
    """A scalar or per-chain setting (a Python float, or an array broadcastable to [C])
    as an array [C, 1, ..., 1] that broadcasts against x [C, *E]."""
    c = x.shape[0]
    v = jnp.asarray(value, dtype=x.dtype)
    Shapes(where).broadcastable(name, v, "[C] (the chains of x0)", (c,))
    return jnp.broadcast_to(v, (c,)).reshape((c,) + (1,) * (x.ndim - 1))


def sum_event(v):
    """[C, *E] -> [C], summed over the event axes."""
    return v.reshape(v.shape[0], -1).sum(-1)


def split2(step_key):
    """(normal key, uniform key) of one step from the step's key ``fold_in(key, i)``."""
    k = jax.random.split(step_key)
    return k[0], k[1]


def step_keys(key, i):
    """(normal key, uniform key) of step ``i`` of a run with ``key``, as the samplers draw
    them: for a peer implementation that must see the same randomness."""
    return split2(jax.random.fold_in(key, i))


def check_chain_args(where: str, x0, num_steps, burn_in, thin):
    s = Shapes(where)
    s("x0", x0, "C *E")
    s.positive_int("num_steps", num_steps)
    s.positive_int("thin", thin)
    if not isinstance(burn_in, int) or isinstance(burn_in, bool) or not \
            0 <= burn_in < num_steps:
        s.fail(f"burn_in = {burn_in!r} must be a Python int with 0 <= burn_in < num_steps "
               f"= {num_steps}")


def run_chain(key, state, transition: Callable, *, num_steps: int, burn_in: int = 0,
              thin: int = 1, keep_samples: bool = False,
              position: Callable[[Any], jax.Array] = lambda s: s) -> Chain:
    """Runs ``num_steps`` steps of a transition kernel on a batch of chains.

    state: any pytree holding the chains' state (e.g. (x, log p(x), grad log p(x)), so that
    a kernel reuses what it computed at the last step); position(state) -> x [C, *E].
    transition(state, key, i) -> (state, accept_prob [C]): step i (an int32 scalar, 0-based)
    with its own key ``fold_in(key, i)``. The acceptance probabilities of the steps after
    ``burn_in`` are averaged into `Chain.accept_rate`; with ``keep_samples`` the position
    after every ``thin``-th step past burn-in is kept (see `Chain`). Without
    ``keep_samples``: one lax.scan over all steps; with it, a scan over burn-in, a scan
    over the kept samples (each a scan of ``thin`` steps) and one over the last
    (num_steps - burn_in) % thin steps.
    """
    c = position(state).shape[0]
    dtype = position(state).dtype

    def one(carry, i):
        state, acc = carry
        state, a = transition(state, jax.random.fold_in(key, i), i)
        return (state, acc + a.astype(dtype)), None

    def steps(carry, first, count):
        if count == 0:
            return carry
        carry, _ = jax.lax.scan(one, carry, first + jnp.arange(count, dtype=jnp.int32))
        return carry

    zero = jnp.zeros((c,), dtype)
    kept = num_steps - burn_in
    if not keep_samples:                      # one scan; burn-in steps count for nothing
        def masked(carry, i):
            state, acc = carry
            state, a = transition(state, jax.random.fold_in(key, i), i)
            return (state, acc + jnp.where(i >= burn_in, a.astype(dtype), 0)), None

        (state, acc), _ = jax.lax.scan(masked, (state, zero),
                                       jnp.arange(num_steps, dtype=jnp.int32))
        return Chain(position(state), None, acc / kept)

    if burn_in:
        def burn(state, i):
            return transition(state, jax.random.fold_in(key, i), i)[0], None
        state, _ = jax.lax.scan(burn, state, jnp.arange(burn_in, dtype=jnp.int32))
    s_count = kept // thin

    def block(carry, j):
        carry = steps(carry, burn_in + j * thin, thin)
        return carry, position(carry[0])

    (state, acc), samples = jax.lax.scan(block, (state, zero),
                                         jnp.arange(s_count, dtype=jnp.int32))
    state, acc = steps((state, acc), burn_in + s_count * thin, kept - s_count * thin)
    return Chain(position(state), samples, acc / kept)
