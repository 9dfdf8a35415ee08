"""Completion (inpainting) with a trained denoiser: sample the missing pixels of an image
given its known ones, with no retraining.

* **Replacement** (Song et al. 2021's imputation by the "replacement" trick; Lugmayr et al.
  2022's baseline): run the ancestral sampler, and after every step x_t -> x_{t-1}
  overwrite the known region by a fresh forward-noised copy of the known pixels,
  x_{t-1}[known] ~ q(x_{t-1} | x_0 = known), and by the known pixels themselves at the last
  step. The unknown region only sees the known one through the network.
* **RePaint resampling** (Lugmayr et al. 2022): the same, but after reaching a level the
  sampler jumps back up ``jump`` levels by the forward process, x_{t-1} -> x_{t-1+jump}
  ~ q(x_{t-1+jump} | x_{t-1}), and denoises them again, ``resample`` times in all per
  jump point (RePaint's U = jump_n_sample, j = jump_length; U = 1 is replacement). The
  re-noising lets the unknown region and the (replaced) known one harmonise; the cost is
  about U times the T network evaluations.

Replacement is biased: the known region is noised independently of the unknown one, so
the sample of the missing pixels follows p(missing | known) only to the extent the
network's one-step predictions correct the mismatch; even with the exact score of
Gaussian data the completions sit between the true conditional and the marginal (the
test suite measures it). RePaint's resampling moves them towards the true conditional.

Time and shapes as in `genjax.diffusion.samplers`: x [N, *E], levels 0-based, the
sampler's state at level l is x_{l+1} in the paper's notation and level -1 is the clean
image. Randomness: x_T is `samplers.ancestral`'s (``fold_in(key, T)``) and the unknown
region's noise at the first visit of level l is the ancestral sampler's
(``fold_in(key, l)``), so that with nothing known and U = 1 `repaint` *is* the
ancestral sampler, draw for draw (up to float rounding: the two programs fuse
differently); later visits and the known region draw from other streams of the key.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax import random as grandom
from genjax.diffusion import forward, reverse, samplers
from genjax.diffusion.schedules import Schedule


def repaint_levels(num_steps: int, resample: int = 1, jump: int = 1) -> np.ndarray:
    """The sequence of levels RePaint visits (Lugmayr et al.'s ``get_schedule_jump``):
    int32 [L] from T - 1 down to -1 (the clean image), going back up ``jump`` levels
    ``resample - 1`` times at every ``jump``-th level (0, jump, 2 jump, ... below
    T - jump). resample = 1: T - 1, T - 2, ..., 0, -1 (plain replacement). Each step
    down is one network evaluation: T + (resample - 1) * jump * (number of jump points)
    in all."""
    if not (isinstance(resample, (int, np.integer)) and resample >= 1):
        raise ValueError(f"resample = {resample!r} must be an int >= 1 (1 = replacement)")
    if not (isinstance(jump, (int, np.integer)) and 1 <= jump < num_steps):
        raise ValueError(f"jump = {jump!r} must be an int with 1 <= jump < T = {num_steps}")
    jumps = {j: resample - 1 for j in range(0, num_steps - jump, jump)}
    t, levels = num_steps, []
    while t >= 1:
        t -= 1
        levels.append(t)
        if jumps.get(t, 0) > 0:
            jumps[t] -= 1
            for _ in range(jump):
                t += 1
                levels.append(t)
    levels.append(-1)
    return np.asarray(levels, np.int32)


def _transitions(levels: np.ndarray, num_steps: int) -> np.ndarray:
    """[L - 1, 3] int32 rows (from, to, visit): visit counts earlier steps down from the
    same level (0 at the first)."""
    seen: dict[int, int] = {}
    rows = []
    for a, b in zip(levels[:-1], levels[1:]):
        visit = 0
        if b < a:
            visit = seen.get(int(a), 0)
            seen[int(a)] = visit + 1
        rows.append((a, b, visit))
    return np.asarray(rows, np.int32).reshape(-1, 3)


def repaint(key, model_fn: Callable, s: Schedule, x_known, mask, *, resample: int = 1,
            jump: int = 1, prediction: str = "eps", variance: str = "beta",
            clip: bool = True, return_path: bool = False):
    """Completes x_known [N, *E] (images in [-1, 1]; values outside ``mask`` are ignored)
    where ``mask`` (bool or 0/1, broadcastable to [N, *E]) marks the known pixels, with a
    denoiser ``model_fn(x_t, t)`` read as ``prediction`` (a guided or conditional one from
    `genjax.diffusion.guidance` completes for a class). ``resample`` = 1: the replacement
    method; > 1: RePaint with that many resamplings every ``jump`` levels (see the module
    docstring). Returns the completions [N, *E], equal to x_known on the mask exactly;
    with ``return_path`` also every state, [L, N, *E] for the L levels of
    `repaint_levels`, x_T first.

    One compiled ``lax.scan`` over the transitions (``lax.cond`` picks the denoising step
    or the forward jump, so each costs only its own work)."""
    shape = jnp.shape(x_known)
    n = shape[0]
    T = s.num_steps
    levels = repaint_levels(T, resample, jump)
    steps = jnp.asarray(_transitions(levels, T))
    known = jnp.broadcast_to(jnp.asarray(mask).astype(bool), shape)
    x_known = jnp.where(known, x_known, 0.0).astype(jnp.float32)
    k_known = jax.random.fold_in(key, T + 1)         # the known region's, per transition
    k_jump = jax.random.fold_in(key, T + 2)          # the forward jumps', per transition
    k_visit = jax.random.fold_in(key, T + 3)         # the unknown region's, later visits
    ab = s.alpha_bars

    def known_at(level, i):              # q(x_level | x_0 = known); the known pixels at -1
        z = grandom.normal(jax.random.fold_in(k_known, i), shape)
        noisy = forward.q_sample(s, x_known, jnp.full((n,), jnp.maximum(level, 0)), z)
        return jnp.where(level >= 0, noisy, x_known)

    def down(x, a, b, visit, i):         # level a -> b = a - 1 and the replacement
        tt = jnp.full((n,), a, jnp.int32)
        mean, log_var, _, _ = reverse.p_mean_var(s, model_fn, x, tt, prediction=prediction,
                                                 variance=variance, clip=clip)
        first = samplers._noise(key, a, shape)
        later = grandom.normal(jax.random.fold_in(jax.random.fold_in(k_visit, visit), a),
                               shape)
        z = jnp.where(visit == 0, first, later)
        x = mean + jnp.where(a > 0, jnp.exp(0.5 * log_var), 0.0) * z
        return jnp.where(known, known_at(b, i), x)

    def up(x, a, b, visit, i):           # q(x_b | x_a), b > a: a forward jump
        ab_a = jnp.where(a >= 0, ab[jnp.maximum(a, 0)], 1.0)
        ratio = ab[b] / ab_a
        z = grandom.normal(jax.random.fold_in(k_jump, i), shape)
        return jnp.sqrt(ratio) * x + jnp.sqrt(1.0 - ratio) * z

    def body(x, row_i):
        row, i = row_i
        a, b, visit = row[0], row[1], row[2]
        x = jax.lax.cond(b < a, down, up, x, a, b, visit, i)
        return x, (x if return_path else None)

    x_T = samplers._noise(key, T, shape)
    x0, path = jax.lax.scan(body, x_T, (steps, jnp.arange(steps.shape[0])))
    if return_path:
        return x0, jnp.concatenate([x_T[None], path])
    return x0


def replacement(key, model_fn: Callable, s: Schedule, x_known, mask, **kwargs):
    """The replacement method: `repaint` with ``resample`` = 1."""
    return repaint(key, model_fn, s, x_known, mask, resample=1, **kwargs)


def top_half_mask(example_shape) -> np.ndarray:
    """bool [H, W, C]: True on the top half of the rows (the known part of a completion
    of the bottom half given the top)."""
    h = example_shape[0]
    m = np.zeros(tuple(example_shape), bool)
    m[: h // 2] = True
    return m
