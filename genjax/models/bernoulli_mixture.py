"""Mixture of Bernoullis, the discrete analogue of the Gaussian mixture, for binary images:
z ~ Cat(pi), x_d | z ~ Bernoulli(sigmoid(logits_zd)) independently over the D pixels.

Fitted by EM with the loop of `genjax.models.gmm.run_em` (same stopping rule: the change
of mean_n log p(x_n) below ``tol``). The M-step is the posterior mode under a symmetric
Beta(1 + a, 1 + a) prior on each pixel probability, a = ``prior_count``:

    p_kd = (sum_n r_nk x_nd + a) / (n_k + 2 a)

a > 0 keeps every probability inside (0, 1), so a pixel never seen on in a component's
training digits does not give a test digit log-probability -inf; a = 0 is plain maximum
likelihood, where probabilities are clipped to [1e-6, 1 - 1e-6] for the same reason.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from genjax.losses import gmm as gmm_losses
from genjax.models import gmm

MIN_PROB = 1e-6


class BernoulliMixtureParams(NamedTuple):
    weights: jax.Array   # [K]
    logits: jax.Array    # [K, D]; pixel probabilities are sigmoid(logits)


def log_likelihood(x, params: BernoulliMixtureParams):
    """log p(x_n): x [N, D] in {0, 1} -> [N]; nats, summed over the D pixels."""
    return gmm_losses.bernoulli_mixture_log_likelihood(x, *params)


def sample(key, params: BernoulliMixtureParams, num: int):
    """z ~ Cat(weights), x | z ~ Bernoulli(sigmoid(logits_z)). Returns (x [num, D] float
    in {0, 1}, z [num])."""
    kz, kx = jax.random.split(key)
    z = jax.random.categorical(kz, jnp.log(params.weights), shape=(num,))
    x = jax.random.bernoulli(kx, jax.nn.sigmoid(params.logits[z]))
    return x.astype(params.logits.dtype), z


def m_step(x, resp, *, prior_count=1.0) -> BernoulliMixtureParams:
    """x [N, D], resp [N, K] -> the MAP parameters (module docstring)."""
    eps = jnp.finfo(x.dtype).eps
    nk = jnp.sum(resp, 0) + 10 * eps                                    # [K]
    probs = (resp.T @ x + prior_count) / (nk[:, None] + 2 * prior_count)   # [K, D]
    probs = jnp.clip(probs, MIN_PROB, 1 - MIN_PROB)
    return BernoulliMixtureParams(nk / jnp.sum(nk), jnp.log(probs) - jnp.log1p(-probs))


def e_step(x, params: BernoulliMixtureParams):
    lj = gmm_losses.bernoulli_mixture_log_joint(x, *params)            # [N, K]
    lp = jax.scipy.special.logsumexp(lj, axis=-1, keepdims=True)
    return jnp.mean(lp), lj - lp


def em(x, init: BernoulliMixtureParams, *, tol=1e-3, max_iter=100, prior_count=1.0):
    """EM from ``init``; pure, jittable, vmappable over ``init``. Returns gmm.EMResult."""
    return gmm.run_em(init, e_step=lambda p: e_step(x, p),
                      m_step=lambda r: m_step(x, r, prior_count=prior_count),
                      tol=tol, max_iter=max_iter)


def init_params(key, x, num_components: int, *, method: str = "kmeans++",
                prior_count=1.0) -> BernoulliMixtureParams:
    """K training images as centres (k-means++ or random), every image assigned to its
    nearest centre (Hamming distance for binary x), then one M-step."""
    centres = x[gmm.initial_centres(key, x, num_components, method)]
    return m_step(x, gmm.hard_assignment(x, centres), prior_count=prior_count)


@partial(jax.jit, static_argnames=("num_components", "init", "restarts", "max_iter",
                                   "restart_batch"))
def fit_em_compiled(key, x, *, num_components: int, init: str = "kmeans++",
                    restarts: int = 1, tol=1e-3, max_iter: int = 100, prior_count=1.0,
                    restart_batch: int | None = None):
    keys = jax.random.split(key, restarts)
    inits = jax.vmap(lambda k: init_params(k, x, num_components, method=init,
                                           prior_count=prior_count))(keys)
    results = gmm.map_restarts(lambda p: em(x, p, tol=tol, max_iter=max_iter,
                                            prior_count=prior_count), x, inits, restart_batch)
    return gmm.best_of(results)[0], results


def fit_em(key, x, num_components: int, *, init: str = "kmeans++", restarts: int = 1,
           tol: float = 1e-3, max_iter: int = 100, prior_count: float = 1.0):
    """Fits a K-component mixture of Bernoullis to x [N, D] in [0, 1] by EM, ``restarts``
    initialisations in one compiled program (`gmm.default_restart_batch` of them at once),
    keeping the best by final log-likelihood. Returns
    (best gmm.EMResult, all restarts). Raises ValueError on bad input: NaN/inf, values
    outside [0, 1], fewer points than components (`gmm.check_data`)."""
    if init not in gmm.INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {gmm.INITS}")
    if not tol > 0 or max_iter < 1 or restarts < 1 or prior_count < 0:
        raise ValueError(f"need tol > 0, max_iter >= 1, restarts >= 1, prior_count >= 0; "
                         f"got tol={tol}, max_iter={max_iter}, restarts={restarts}, "
                         f"prior_count={prior_count}")
    x = gmm.check_data(x, num_components)
    if x.min() < 0 or x.max() > 1:
        raise ValueError(f"a mixture of Bernoullis needs x in [0, 1], got values in "
                         f"[{x.min()}, {x.max()}]; binarise the images first")
    best, results = fit_em_compiled(key, jnp.asarray(x), num_components=num_components,
                                    init=init, restarts=restarts, tol=tol,
                                    max_iter=max_iter, prior_count=prior_count)
    gmm.check_fit(best, "mixture of Bernoullis", "raise prior_count")
    return best, results
