"""DDPM objectives as pure functions of any denoiser ``model_fn(x_t, t) -> out``.

* `noise_loss`: Ho et al.'s simplified objective: || target - model_fn(x_t, t) ||^2 with
  t uniform and target eps (or x_0, or v), the training loss.
* `conditional_noise_loss`: the same for a class-conditional ``model_fn(x_t, t, y)``
  with each label dropped to the null class at a given rate (classifier-free guidance's
  training, Ho & Salimans 2022; `genjax.diffusion.guidance` samples from it).
* `vlb_terms`: the variational bound -log p(x_0) <= L_T + sum_{t>1} L_{t-1} + L_0 in
  nats per image (summed over pixels), with the discretised Gaussian decoder L_0 for
  8-bit data; `bits_per_dim` converts. The sum of the T - 1 KL terms is estimated by
  stratified sampling of ``num_t`` steps per image (``num_t = T - 1``: the exact sum).

Data x_0 are images [B, *E] scaled to [-1, 1] (``uint8 / 127.5 - 1``); t are 0-based
(see `genjax.diffusion.schedules`). ``model_fn(x_t [B, *E], t [B])`` returns [B, *E].
These shapes are checked at trace time (`genjax.shapes`): a denoiser output of another
shape (e.g. [B, 1, ...], which would broadcast against the target) raises a
``ValueError`` naming it and both shapes.
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import norm

from genjax import random as grandom
from genjax.conditioning import drop_labels
from genjax.diffusion import forward, reverse
from genjax.diffusion.schedules import Schedule
from genjax.shapes import Shapes


def _sum_event(v):
    return v.reshape(v.shape[0], -1).sum(-1)


def _checked_model(s: Shapes, model_fn: Callable) -> Callable:
    """model_fn whose output is checked against x_0's [B, *E] (bound in ``s``)."""
    def checked(xt, t):
        out = model_fn(xt, t)
        s("model_fn(x_t, t)", out, "B *E")
        return out
    return checked


def noise_loss(x0, key, *, model_fn: Callable, schedule: Schedule, prediction: str = "eps"):
    """L_simple: the squared error of the network's ``prediction`` ("eps", "x0", "v") at
    a uniform step, averaged over pixels and over the batch (as DDPM). x0: [B, *E] in
    [-1, 1]; model_fn(x_t, t) -> [B, *E]. Returns (loss scalar, metrics {"mse": loss})."""
    s = Shapes("losses.ddpm.noise_loss")
    s("x0", x0, "B *E")
    model_fn = _checked_model(s, model_fn)
    k_t, k_noise = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, schedule.num_steps)
    noise = grandom.normal(k_noise, x0.shape)
    xt = forward.q_sample(schedule, x0, t, noise)
    err = model_fn(xt, t) - forward.target(schedule, x0, t, noise, prediction)
    loss = jnp.mean(err.astype(jnp.float32) ** 2)
    return loss, {"mse": loss}


def conditional_noise_loss(x0, y, key, *, model_fn: Callable, schedule: Schedule,
                           num_classes: int, label_dropout=0.1, prediction: str = "eps"):
    """`noise_loss` of a class-conditional denoiser ``model_fn(x_t, t, y) -> [B, *E]``:
    each label of y [B] (int, 0..K-1) is replaced by the null class K = ``num_classes``
    with probability ``label_dropout`` (a float or a traced scalar, so that a sweep can vary
    it; `genjax.conditioning.drop_labels`), so that one network learns the conditional
    eps(x, t, y) and the unconditional eps(x, t, K) that guidance combines. x0 [B, *E] in
    [-1, 1]. Returns (loss scalar, metrics {"mse": loss, "null_fraction": the share of
    the batch's labels that were null}).

    Keys: ``key`` splits into the dropout's key and `noise_loss`'s key."""
    s = Shapes("losses.ddpm.conditional_noise_loss")
    s("x0", x0, "B *E")
    s("y", y, "B")
    k_drop, k_loss = jax.random.split(key)
    y = drop_labels(k_drop, y, label_dropout, num_classes)
    loss, metrics = noise_loss(x0, k_loss, model_fn=lambda xt, t: model_fn(xt, t, y),
                               schedule=schedule, prediction=prediction)
    null = jnp.mean((y == num_classes).astype(jnp.float32))
    return loss, dict(metrics, null_fraction=null)


def normal_kl(mean1, log_var1, mean2, log_var2):
    """KL(N(mean1, exp(log_var1)) || N(mean2, exp(log_var2))), element-wise over mean1's
    shape (the others broadcast to it, e.g. a per-example log_var [B, 1, ...] or a
    scalar); nats."""
    s = Shapes("losses.ddpm.normal_kl")
    shape = jnp.shape(mean1)
    for name, a in (("log_var1", log_var1), ("mean2", mean2), ("log_var2", log_var2)):
        s.broadcastable(name, a, "mean1", shape)
    return 0.5 * (log_var2 - log_var1 + jnp.exp(log_var1 - log_var2)
                  + (mean1 - mean2) ** 2 * jnp.exp(-log_var2) - 1.0)


def discretized_gaussian_log_likelihood(x, *, mean, log_scale):
    """log P(x) for 8-bit data x in [-1, 1] (values k / 127.5 - 1) under N(mean,
    exp(log_scale)^2) integrated over x's bin of width 2/255; the edge bins extend to
    -inf / +inf. Element-wise over x's shape (mean and log_scale broadcast to it); nats."""
    s = Shapes("losses.ddpm.discretized_gaussian_log_likelihood")
    s.broadcastable("mean", mean, "x", jnp.shape(x))
    s.broadcastable("log_scale", log_scale, "x", jnp.shape(x))
    inv = jnp.exp(-log_scale)
    hi = inv * (x - mean + 1.0 / 255.0)
    lo = inv * (x - mean - 1.0 / 255.0)
    # Phi(hi) - Phi(lo), computed on whichever tail keeps it accurate
    delta = jnp.where(lo > 0, norm.cdf(-lo) - norm.cdf(-hi), norm.cdf(hi) - norm.cdf(lo))
    log_delta = jnp.log(jnp.maximum(delta, 1e-12))
    return jnp.where(x < -0.999, norm.logcdf(hi),
                     jnp.where(x > 0.999, norm.logcdf(-lo), log_delta))


def prior_kl(x0, schedule: Schedule):
    """L_T = KL(q(x_T | x_0) || N(0, I)) summed over pixels: x0 [B, *E] -> [B] nats."""
    Shapes("losses.ddpm.prior_kl")("x0", x0, "B *E")
    ab = schedule.alpha_bars[-1]
    return _sum_event(normal_kl(jnp.sqrt(ab) * x0, jnp.log1p(-ab), 0.0, 0.0))


def step_terms(x0, t, key, *, model_fn: Callable, schedule: Schedule,
               prediction: str = "eps", variance: str = "beta", clip: bool = False):
    """L_t for each example at its own step t [B]: the decoder's -log p(x_0 | x_1) at
    t = 0, KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t)) otherwise. x0 [B, *E], t [B]
    int, model_fn(x_t, t) -> [B, *E]. Returns [B] nats."""
    s = Shapes("losses.ddpm.step_terms")
    s("x0", x0, "B *E")
    s("t", t, "B")
    return _step_terms(x0, t, key, model_fn=_checked_model(s, model_fn), schedule=schedule,
                       prediction=prediction, variance=variance, clip=clip)


def _step_terms(x0, t, key, *, model_fn, schedule, prediction, variance, clip):
    xt = forward.q_sample(schedule, x0, t, grandom.normal(key, x0.shape))
    mean, log_var, _, _ = reverse.p_mean_var(schedule, model_fn, xt, t, prediction=prediction,
                                             variance=variance, clip=clip)
    q_mean, _, q_log_var = forward.q_posterior(schedule, x0, xt, t)
    kl = _sum_event(normal_kl(q_mean, q_log_var, mean, log_var))
    decoder = -_sum_event(discretized_gaussian_log_likelihood(x0, mean=mean,
                                                              log_scale=0.5 * log_var))
    return jnp.where(t == 0, decoder, kl)


def vlb_terms(x0, key, *, model_fn: Callable, schedule: Schedule, prediction: str = "eps",
              variance: str = "beta", num_t: int | None = None, clip: bool = False):
    """The variational bound on -log p(x_0), per image. x0 [B, *E] 8-bit values in
    [-1, 1], model_fn(x_t, t) -> [B, *E]. The decoder term L_0 and the prior term L_T are
    computed exactly; the sum of the T - 1 KL terms is estimated from ``num_t`` strata of
    consecutive steps, one random step from each, weighted by the stratum's size
    (unbiased; None = T - 1 strata of one step, the exact sum).

    Returns {"bound": [B] nats, "prior": L_T, "decoder": L_0, "kl_steps": the estimate of
    sum_{t>=1} L_t, each [B] nats}.
    """
    s = Shapes("losses.ddpm.vlb_terms")
    s("x0", x0, "B *E")
    model_fn = _checked_model(s, model_fn)
    T = schedule.num_steps
    num_t = num_t or T - 1
    if not 1 <= num_t <= T - 1:
        raise ValueError(f"num_t = {num_t} must be between 1 and T - 1 = {T - 1}")
    edges = 1 + (np.arange(num_t + 1) * (T - 1)) // num_t                # static, [num_t + 1]
    starts, sizes = jnp.asarray(edges[:-1]), jnp.asarray(np.diff(edges))
    b = x0.shape[0]
    terms = functools.partial(_step_terms, x0, model_fn=model_fn, schedule=schedule,
                              prediction=prediction, variance=variance, clip=clip)

    def stratum(total, j):
        k_off, k_noise = jax.random.split(jax.random.fold_in(key, j))
        t = starts[j] + jax.random.randint(k_off, (b,), 0, sizes[j])
        return total + sizes[j] * terms(t, k_noise), None

    kl_steps, _ = jax.lax.scan(stratum, jnp.zeros((b,), jnp.float32), jnp.arange(num_t))
    decoder = terms(jnp.zeros((b,), jnp.int32), jax.random.fold_in(key, num_t))
    prior = prior_kl(x0, schedule)
    return {"bound": prior + kl_steps + decoder, "prior": prior, "decoder": decoder,
            "kl_steps": kl_steps}


def bits_per_dim(nats, num_dims: int):
    """Nats per image -> bits per dimension, element-wise over nats (any shape);
    num_dims: the number of dimensions per image, a Python int (prod of the image shape,
    not the shape itself)."""
    Shapes("losses.ddpm.bits_per_dim").positive_int("num_dims", num_dims)
    return nats / (num_dims * math.log(2.0))
