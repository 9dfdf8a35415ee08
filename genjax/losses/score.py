"""Score-matching objectives: fit s(x) ~ grad_x log p(x) without the normalising constant.

* `denoising_score_matching` (DSM; Vincent 2011, the NCSN objective of Song & Ermon 2019,
  eq. 6 with lambda(sigma) = sigma^2): a noise level i uniform over a ladder ``sigmas``
  (`geometric_sigmas`), x_noisy = x + sigma_i z, and

      0.5 || sigma_i s(x_noisy, i) + z ||^2
          = 0.5 sigma_i^2 || s(x_noisy, i) + (x_noisy - x) / sigma_i^2 ||^2,

  whose expectation is 0.5 sigma_i^2 E || s - grad log p_sigma_i ||^2 + const (Vincent's
  identity): minimised by the score of the data smoothed with N(0, sigma_i^2 I).
  `dsm_per_level` evaluates the same term at every level (for logging).
* `sliced_score_matching` (SSM; Song et al. 2019): Hyvarinen's objective with the trace of
  the score's Jacobian replaced by random projections v^T (ds/dx) v, one Jacobian-vector
  product (`jax.jvp`) per projection; ``variance_reduction`` is SSM-VR.
* `exact_score_matching` (ESM; Hyvarinen 2005): tr(ds/dx) + 0.5 ||s||^2 with the full
  Jacobian, D Jacobian-vector products per batch: for small D, tests and toys.

ESM and SSM (in expectation over v) equal 0.5 E || s - grad log p_data ||^2 + const, so
the loss can be negative; compare values only between models on the same data.

Shapes: x [B, *E] (vectors [B, D] or images [B, H, W, C]); ``score_fn`` returns x's shape
[B, *E] (checked at trace time, `genjax.shapes`: another shape raises a ``ValueError``
naming it). Per-example terms are summed over the event dims and averaged over the batch;
they are not nats (DSM's is dimensionless, ESM's and SSM's in units of 1 / x^2). Examples must not interact inside
``score_fn`` (no batch statistics): the Jacobian terms take the Jacobian of the batch
function as block diagonal. Everything here is twice differentiable: an energy model's
score ``score_fn = lambda x: -jax.grad(lambda y: energy(y).sum())(x)`` trains by
``jax.grad`` of these losses with respect to the energy's parameters.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax import random as grandom
from genjax.shapes import Shapes

PROJECTIONS = ("rademacher", "gaussian")


def _sum_event(v, batch_axes: int = 1):
    """Sum over every axis after the first ``batch_axes``: [..., *E] -> [...]."""
    return v.reshape(v.shape[:batch_axes] + (-1,)).sum(-1)


def _checked(s: Shapes, fn: Callable, name: str) -> Callable:
    """fn whose output is checked against x's [B, *E] (bound in ``s``)."""
    def checked(*args):
        out = fn(*args)
        s(name, out, "B *E")
        return out
    return checked


def geometric_sigmas(sigma_max: float, sigma_min: float, num: int) -> np.ndarray:
    """NCSN's noise ladder: ``num`` levels from ``sigma_max`` down to ``sigma_min`` with a
    constant ratio (computed in float64): float32 [L], descending. Level 0 is the
    noisiest (a Langevin sampler anneals from it)."""
    s = Shapes("losses.score.geometric_sigmas")
    s.positive_int("num", num)
    if not (math.isfinite(sigma_max) and 0 < sigma_min <= sigma_max):
        s.fail(f"need 0 < sigma_min <= sigma_max, got sigma_max = {sigma_max!r}, "
               f"sigma_min = {sigma_min!r}")
    return np.geomspace(float(sigma_max), float(sigma_min), num).astype(np.float32)


def _dsm_terms(x, z, level, sigma, score_fn):
    """0.5 || sigma s(x + sigma z, level) + z ||^2 per example: [B]. sigma [B, 1, ...]."""
    score = score_fn(x + sigma * z, level)                       # [B, *E]
    return 0.5 * _sum_event((sigma * score + z) ** 2)


def _dsm_setup(name, x, sigmas, score_fn):
    s = Shapes(name)
    s("x", x, "B *E")
    sigmas = jnp.asarray(sigmas, jnp.result_type(x, jnp.float32))
    (num_levels,) = s("sigmas", sigmas, "L")
    return sigmas, num_levels, _checked(s, score_fn, "score_fn(x_noisy, level)")


def denoising_score_matching(x, key, *, score_fn: Callable, sigmas):
    """The NCSN objective. x [B, *E]; sigmas [L] (any order; an array, so it may be
    traced, e.g. swept); score_fn(x_noisy [B, *E], level [B] int32) -> [B, *E], the score
    at noise level sigmas[level]. Each example draws its level i uniformly from 0..L-1 and
    z ~ N(0, I), x_noisy = x + sigmas[i] z; its term is 0.5 || sigmas[i] score + z ||^2
    summed over the event dims (lambda(sigma) = sigma^2 weighting: every level's term is
    O(D)). Returns (loss = batch mean, {"dsm": loss}).

    Randomness as `genjax.losses.ddpm.noise_loss`: ``k_level, k_noise = split(key)``, the
    level by ``randint(k_level, [B], 0, L)`` and z by ``normal(k_noise, x.shape)``, so with
    the same key the two losses see the same draws (see `genjax.diffusion.score`)."""
    sigmas, num_levels, score_fn = _dsm_setup("losses.score.denoising_score_matching", x,
                                              sigmas, score_fn)
    b = x.shape[0]
    k_level, k_noise = jax.random.split(key)
    level = jax.random.randint(k_level, (b,), 0, num_levels)                   # [B] int32
    z = grandom.normal(k_noise, x.shape, sigmas.dtype)                         # [B, *E]
    sigma = sigmas[level].reshape((b,) + (1,) * (x.ndim - 1))                  # [B, 1, ...]
    loss = jnp.mean(_dsm_terms(x, z, level, sigma, score_fn))
    return loss, {"dsm": loss}


def dsm_per_level(x, key, *, score_fn: Callable, sigmas):
    """The DSM term at every level for every example, averaged over the batch: [L] (one
    value per level, in the order of ``sigmas``). Shapes as `denoising_score_matching`;
    level l's noise is ``normal(fold_in(key, l), x.shape)`` (independent across levels),
    and the levels run one after the other (``lax.map``: one batch in memory at a time).
    The mean over levels has the expectation of `denoising_score_matching`'s loss."""
    sigmas, num_levels, score_fn = _dsm_setup("losses.score.dsm_per_level", x, sigmas,
                                              score_fn)
    b = x.shape[0]

    def one(l):
        z = grandom.normal(jax.random.fold_in(key, l), x.shape, sigmas.dtype)
        level = jnp.full((b,), l, jnp.int32)
        return jnp.mean(_dsm_terms(x, z, level, sigmas[l], score_fn))

    return jax.lax.map(one, jnp.arange(num_levels, dtype=jnp.int32))


def _jvps(score_fn, x, tangents):
    """(score_fn(x) [B, *E], J v for each tangent [M, B, *E]): one jax.jvp per tangent,
    vectorised over them; the primal is not batched, so it is computed once."""
    scores, jv = jax.vmap(lambda v: jax.jvp(score_fn, (x,), (v,)))(tangents)
    return scores[0], jv


def sliced_score_matching(x, key, *, score_fn: Callable, num_projections: int = 1,
                          projection: str = "rademacher", variance_reduction: bool = False):
    """Sliced score matching. x [B, *E]; score_fn(x [B, *E]) -> [B, *E]. Each example
    draws ``num_projections`` directions v [*E] ("rademacher": entries +-1, or
    "gaussian": N(0, I); both have E[v v^T] = I) and its term is the mean over them of

        v^T (ds/dx) v + 0.5 (v^T s)^2        (variance_reduction: + 0.5 ||s||^2 instead),

    an unbiased estimate of `exact_score_matching`'s tr(ds/dx) + 0.5 ||s||^2. The
    Jacobian enters only through one ``jax.jvp`` per projection (never materialised).
    Returns (loss = batch mean, {"ssm": loss, "trace": batch mean of the v^T J v estimate
    of tr(ds/dx), "sq_norm": batch mean of 0.5 ||s||^2})."""
    s = Shapes("losses.score.sliced_score_matching")
    s("x", x, "B *E")
    m = s.positive_int("num_projections", num_projections)
    if projection not in PROJECTIONS:
        s.fail(f"unknown projection {projection!r}; choose one of {PROJECTIONS}")
    dtype = jnp.result_type(x, jnp.float32)
    x = jnp.asarray(x, dtype)
    shape = (m,) + x.shape
    v = (jax.random.rademacher(key, shape, dtype) if projection == "rademacher"
         else grandom.normal(key, shape, dtype))                               # [M, B, *E]
    score, jv = _jvps(_checked(s, score_fn, "score_fn(x)"), x, v)   # [B, *E], [M, B, *E]
    trace = jnp.mean(_sum_event(v * jv, 2), 0)                                 # [B]
    sq_norm = 0.5 * _sum_event(score ** 2)                                     # [B]
    if variance_reduction:
        second = sq_norm
    else:
        second = jnp.mean(0.5 * _sum_event(v * score[None], 2) ** 2, 0)        # [B]
    loss = jnp.mean(trace + second)
    return loss, {"ssm": loss, "trace": jnp.mean(trace), "sq_norm": jnp.mean(sq_norm)}


def exact_score_matching(x, *, score_fn: Callable):
    """Hyvarinen's objective, tr(ds/dx) + 0.5 ||s||^2 per example with the exact trace of
    the score's D x D Jacobian (D = prod(E)). x [B, *E]; score_fn(x [B, *E]) -> [B, *E].
    The Jacobian's columns are D Jacobian-vector products of the batch function with the
    basis vectors (``jax.jacfwd``'s columns, for all examples at once): cost D evaluations
    of the forward-mode score, so for small D. Returns (loss = batch mean, {"esm": loss,
    "trace": batch mean of tr(ds/dx), "sq_norm": batch mean of 0.5 ||s||^2})."""
    s = Shapes("losses.score.exact_score_matching")
    s("x", x, "B *E")
    dtype = jnp.result_type(x, jnp.float32)
    x = jnp.asarray(x, dtype)
    b, event = x.shape[0], x.shape[1:]
    d = math.prod(event)
    basis = jnp.broadcast_to(jnp.eye(d, dtype=dtype).reshape((d, 1) + event),
                             (d,) + x.shape)                                  # [D, B, *E]
    score, cols = _jvps(_checked(s, score_fn, "score_fn(x)"), x, basis)
    # cols[j, b] is column j of example b's Jacobian; its j-th entry is J[b]_jj
    trace = jnp.einsum("jbj->b", cols.reshape(d, b, d))                      # [B]
    sq_norm = 0.5 * _sum_event(score ** 2)                                     # [B]
    loss = jnp.mean(trace + sq_norm)
    return loss, {"esm": loss, "trace": jnp.mean(trace), "sq_norm": jnp.mean(sq_norm)}
