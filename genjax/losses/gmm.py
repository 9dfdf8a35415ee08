"""Mixture log-likelihoods: Gaussian (full, diagonal, spherical covariances) and Bernoulli.

The model: z ~ Cat(pi), x | z ~ p(x | theta_z), so p(x) = sum_k pi_k p(x | theta_k), the
template for the VAE's integral over z. Every function here is pure and takes arrays:

  weights      [K]        mixing proportions pi, non-negative, summing to one
  means        [K, D]
  covariances  full: [K, D, D] (symmetric positive definite); diag: [K, D] (variances);
               spherical: [K] (one variance per component), as scikit-learn stores them
  x            [N, D]

A Gaussian component's density is computed through the Cholesky factor of its precision
(scikit-learn's convention): ``prec_chol`` U with U U^T = Sigma^-1, upper triangular for
"full", so log N(x | mu, Sigma) = -D/2 log 2pi + sum log diag U - |(x - mu) U|^2 / 2 and
the data term is one matmul, no triangular solve per point.

Units: nats per example; nothing is averaged over N unless a name says mean. Positional
(x, weights, means, covariances) lets a params NamedTuple be passed as ``x, *params``.

Shapes are checked at trace time (`genjax.shapes`): N, D, K must agree across all the
arguments (means [K, D'] with D' != D, or weights [K'] with K' != K, raise a ``ValueError``
naming the argument and both shapes, instead of silently using D' columns or
broadcasting). Under ``jax.vmap`` (e.g. over restarts) the shapes are those of one element.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp, xlogy

from genjax import numerics
from genjax.shapes import Shapes

COVARIANCE_TYPES = ("full", "diag", "spherical")
LOG_2PI = math.log(2.0 * math.pi)
# How the full-covariance quadratic form is computed (same numbers, CPU speed): from this
# dimension on, one component at a time (lax.map of [N, D] x [D, D] products: ~1.5x
# faster than one [N, K, D] einsum at D = 64, with [N, D] memory); below it, D^2
# element-wise [N, K] terms in one fusion (~14x faster than the einsum at D = 2).
MAP_MIN_DIM = 16


def _check_type(covariance_type: str) -> None:
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"unknown covariance_type {covariance_type!r}; expected one of "
                         f"{COVARIANCE_TYPES}")


# the shape of covariances (and of their precision Cholesky factors) per type
_COV_SPECS = {"full": "K D D", "diag": "K D", "spherical": "K"}


def _check_params(where, x, weights, means, covariances, covariance_type, *,
                  cov_name="covariances"):
    """x [N, D], weights [K] (None: not an argument), means [K, D], covariances of
    ``covariance_type`` (`_COV_SPECS`); returns the checker with N, D, K bound."""
    _check_type(covariance_type)
    s = Shapes(where)
    s("x", x, "N D")
    s("means", means, "K D")
    if weights is not None:
        s("weights", weights, "K")
    s(f"{cov_name} ({covariance_type})", covariances, _COV_SPECS[covariance_type])
    return s


def precision_cholesky(covariances, covariance_type: str = "full"):
    """Cholesky factors of the precisions: full [K, D, D] -> upper-triangular U [K, D, D]
    with U U^T = Sigma^-1; diag [K, D] -> 1/sqrt(var) [K, D]; spherical [K] -> [K].
    A covariance that is not positive definite gives NaN (Cholesky fails); fitting code
    checks for that (`genjax.models.gmm`)."""
    _check_type(covariance_type)
    Shapes("losses.gmm.precision_cholesky")(f"covariances ({covariance_type})", covariances,
                                            _COV_SPECS[covariance_type])
    if covariance_type != "full":
        return jax.lax.rsqrt(covariances)
    chol = jnp.linalg.cholesky(covariances)                             # [K, D, D] lower
    return jnp.swapaxes(lower_triangular_inverse(chol), -1, -2)         # U = L^-T


def lower_triangular_inverse(chol):
    """L^-1 of lower-triangular matrices [..., D, D] by forward substitution, one row per
    step of a fori_loop (D steps of a [..., D] x [..., D, D] product).

    The same numbers as ``lax.linalg.triangular_solve(L, I)``, but on the CPU a module
    holding that solve ran every other matmul of the EM step about 1.7x slower (measured
    with jax 0.10.2: 70 ms -> 120 ms for the 50,000 x 64 E-step); this loop costs < 1 ms.
    Singular L (a zero on the diagonal) gives inf/NaN, as the solve would."""
    Shapes("losses.gmm.lower_triangular_inverse")("chol", chol, "... D D")
    d = chol.shape[-1]
    strict = jnp.tril(chol, -1)
    diag = jnp.diagonal(chol, axis1=-2, axis2=-1)                      # [..., D]
    eye = jnp.eye(d, dtype=chol.dtype)

    def body(i, inv):                       # row i of L^-1 from rows 0..i-1 (rest zero)
        row = (eye[i] - jnp.einsum("...j,...jd->...d", strict[..., i, :], inv)) \
            / diag[..., i][..., None]
        return inv.at[..., i, :].set(row)

    return jax.lax.fori_loop(0, d, body, jnp.zeros_like(chol))


def log_gaussian_prob(x, means, prec_chol, *, covariance_type: str = "full"):
    """log N(x_n | mu_k, Sigma_k) for every point and component: x [N, D] -> [N, K]; nats.

    means [K, D]; prec_chol: `precision_cholesky` of the covariances (full [K, D, D],
    diag [K, D], spherical [K])."""
    _check_params("losses.gmm.log_gaussian_prob", x, None, means, prec_chol, covariance_type,
                  cov_name="prec_chol")
    d = x.shape[-1]
    if covariance_type == "full":
        log_det = jnp.sum(jnp.log(jnp.diagonal(prec_chol, axis1=-2, axis2=-1)), -1)  # [K]
        if d >= MAP_MIN_DIM:      # one [N, D] x [D, D] product per component
            maha = jax.lax.map(lambda a: jnp.sum(((x - a[0]) @ a[1]) ** 2, -1),
                               (means, prec_chol)).T                        # [N, K]
        else:                     # small D: D^2 element-wise [N, K] terms, one fusion
            diff = [x[:, None, i] - means[:, i] for i in range(d)]          # D x [N, K]
            maha = 0.0
            for e in range(d):
                y = sum(diff[i] * prec_chol[:, i, e] for i in range(d))     # [N, K]
                maha = maha + y * y
    elif covariance_type == "diag":
        log_det = jnp.sum(jnp.log(prec_chol), -1)                           # [K]
        y = (x[:, None, :] - means) * prec_chol                             # [N, K, D]
        maha = jnp.sum(y * y, -1)
    else:
        log_det = d * jnp.log(prec_chol)                                    # [K]
        sq = jnp.sum((x[:, None, :] - means) ** 2, -1)                      # [N, K]
        maha = sq * prec_chol ** 2
    return -0.5 * (d * LOG_2PI + maha) + log_det


def log_joint(x, weights, means, covariances, *, covariance_type: str = "full"):
    """log p(x_n, z = k) = log pi_k + log N(x_n | mu_k, Sigma_k): x [N, D] -> [N, K]."""
    _check_params("losses.gmm.log_joint", x, weights, means, covariances, covariance_type)
    return _log_joint(x, weights, means, covariances, covariance_type)


def _log_joint(x, weights, means, covariances, covariance_type):
    pc = precision_cholesky(covariances, covariance_type)
    return jnp.log(weights) + log_gaussian_prob(x, means, pc, covariance_type=covariance_type)


def log_likelihood(x, weights, means, covariances, *, covariance_type: str = "full"):
    """log p(x_n) = logsumexp_k [log pi_k + log N(x_n | mu_k, Sigma_k)]: x [N, D] -> [N];
    nats per point (scikit-learn's ``GaussianMixture.score_samples``)."""
    _check_params("losses.gmm.log_likelihood", x, weights, means, covariances, covariance_type)
    return logsumexp(_log_joint(x, weights, means, covariances, covariance_type), axis=-1)


def responsibilities(x, weights, means, covariances, *, covariance_type: str = "full"):
    """The exact posterior p(z = k | x_n): x [N, D] -> [N, K], rows summing to one."""
    _check_params("losses.gmm.responsibilities", x, weights, means, covariances,
                  covariance_type)
    lj = _log_joint(x, weights, means, covariances, covariance_type)
    return jnp.exp(lj - logsumexp(lj, axis=-1, keepdims=True))


def elbo_from_log_joint(lj, q):
    """E_q[log p(x, z) - log q(z)] = sum_k q_k (lj_k - log q_k) for a discrete q(z | x):
    lj, q [N, K] -> [N]; nats. 0 log 0 = 0, so a q with zeros is fine. Equals
    log p(x) = logsumexp_k lj_k exactly when q is the posterior; below it otherwise by
    KL(q || p(z | x))."""
    s = Shapes("losses.gmm.elbo_from_log_joint")
    s("lj", lj, "N K")
    s("q", q, "N K")
    return jnp.sum(q * lj - xlogy(q, q), axis=-1)


def elbo(x, q, weights, means, covariances, *, covariance_type: str = "full"):
    """The evidence lower bound of a Gaussian mixture for any q(z | x_n) given as
    probabilities q [N, K] (rows summing to one): x [N, D] -> [N]; nats.
    log p(x) - elbo = KL(q(z | x) || p(z | x)) >= 0, zero at q = `responsibilities`."""
    s = _check_params("losses.gmm.elbo", x, weights, means, covariances, covariance_type)
    s("q", q, "N K")
    return elbo_from_log_joint(_log_joint(x, weights, means, covariances, covariance_type), q)


# ----------------------------------------------------------------- mixture of Bernoullis

def bernoulli_mixture_log_joint(x, weights, logits):
    """log pi_k + sum_d log Bernoulli(x_nd | sigmoid(logits_kd)): x [N, D] in {0, 1} (soft
    values in [0, 1] allowed), logits [K, D] -> [N, K]; nats. One [N, D] x [D, K] matmul:
    sum_d x l - softplus(l). weights [K]."""
    _check_bernoulli("losses.gmm.bernoulli_mixture_log_joint", x, weights, logits)
    return _bernoulli_mixture_log_joint(x, weights, logits)


def _check_bernoulli(where, x, weights, logits):
    s = Shapes(where)
    s("x", x, "N D")
    s("logits", logits, "K D")
    s("weights", weights, "K")


def _bernoulli_mixture_log_joint(x, weights, logits):
    return jnp.log(weights) + x @ logits.T - jnp.sum(numerics.softplus(logits), -1)


def bernoulli_mixture_log_likelihood(x, weights, logits):
    """log p(x_n) of a mixture of products of Bernoullis: x [N, D] -> [N]; nats per
    example, summed over the D pixels. weights [K], logits [K, D]."""
    _check_bernoulli("losses.gmm.bernoulli_mixture_log_likelihood", x, weights, logits)
    return logsumexp(_bernoulli_mixture_log_joint(x, weights, logits), axis=-1)
