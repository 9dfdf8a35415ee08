"""Gaussian mixtures: parameters, the generative process, EM, initialisation, restarts and
an unconstrained parameterisation for gradient-based maximum likelihood.

    params = GMMParams(weights [K], means [K, D], covariances [K, D, D] | [K, D] | [K])
    x, z = sample(key, params, 1000, covariance_type="full")
    fit = fit_em(key, x, 8, covariance_type="full", restarts=16)   # best of 16, one program
    fit.params, fit.log_likelihood                                  # nats per point

EM follows scikit-learn's ``GaussianMixture`` step for step, so that started from the
same parameters both reach the same optimum (tested):

* E-step: log_resp = log p(x, z) - log p(x); the bound tracked is mean_n log p(x_n) under
  the parameters *before* the M-step.
* M-step: n_k = sum_n r_nk + 10 eps, weights = n_k / sum n_k, means = r^T x / n_k,
  covariances from the new means plus ``reg_covar`` on the diagonal (spherical: the mean
  of the diagonal variances, each already regularised).
* Stop after the first iteration whose bound changed by less than ``tol`` (absolute, in
  nats per point), or after ``max_iter`` iterations.

The whole loop is one ``lax.while_loop``, so ``jax.vmap`` over initial parameters runs
several restarts in one compiled program (the batched loop runs until every restart has
stopped; a stopped one no longer changes).

Bad input (checked on the host by `fit_em` before compiling): NaN/inf in x, fewer points
than components, fewer than 2 points, and a non-positive tol raise ValueError. Duplicate
or degenerate points (all identical, or on a line in 2-D) are handled by ``reg_covar``:
every covariance is at least ``reg_covar * I``, so the fit stays finite (a component on
identical points becomes a spike of variance ``reg_covar``). With ``reg_covar = 0`` such
data makes a covariance singular; the loop then stops and `fit_em` raises
FloatingPointError naming the fix, rather than returning NaN.
"""

from __future__ import annotations

from functools import partial
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from genjax.losses import gmm as gmm_losses

COVARIANCE_TYPES = gmm_losses.COVARIANCE_TYPES
INITS = ("kmeans++", "random")


class GMMParams(NamedTuple):
    weights: jax.Array        # [K] mixing proportions, summing to one
    means: jax.Array          # [K, D]
    covariances: jax.Array    # full [K, D, D] | diag [K, D] | spherical [K]


class EMResult(NamedTuple):
    params: GMMParams | object   # the fitted parameters (any mixture's params pytree)
    log_likelihood: jax.Array    # [] mean_n log p(x_n) at ``params``; nats per point
    lower_bound: jax.Array       # [] the bound of the last iteration (scikit-learn's)
    n_iter: jax.Array            # [] int32 iterations run
    converged: jax.Array         # [] bool: stopped by tol (not by max_iter or NaN)


def log_likelihood(x, params: GMMParams, *, covariance_type: str = "full"):
    """log p(x_n) for x [N, D] -> [N]; nats."""
    return gmm_losses.log_likelihood(x, *params, covariance_type=covariance_type)


def num_parameters(num_components: int, dim: int, covariance_type: str) -> int:
    """Free parameters of a K-component mixture in D dimensions (for BIC/AIC)."""
    cov = {"full": dim * (dim + 1) // 2, "diag": dim, "spherical": 1}[covariance_type]
    return num_components * (dim + cov) + num_components - 1


# ---------------------------------------------------------------- generative process

def sample(key, params: GMMParams, num: int, *, covariance_type: str = "full"):
    """The generative process: z ~ Cat(weights), x = mu_z + chol(Sigma_z) eps with
    eps ~ N(0, I). Returns (x [num, D], z [num] int32)."""
    kz, ke = jax.random.split(key)
    weights, means, cov = params
    z = jax.random.categorical(kz, jnp.log(weights), shape=(num,))
    eps = jax.random.normal(ke, (num, means.shape[-1]), means.dtype)
    if covariance_type == "full":
        scale = jnp.linalg.cholesky(cov)[z]                             # [num, D, D]
        noise = jnp.einsum("nde,ne->nd", scale, eps)
    elif covariance_type == "diag":
        noise = jnp.sqrt(cov)[z] * eps
    else:
        noise = jnp.sqrt(cov)[z][:, None] * eps
    return means[z] + noise, z


# ------------------------------------------------------------------------ EM steps

def m_step(x, resp, *, covariance_type: str = "full", reg_covar=1e-6) -> GMMParams:
    """Closed-form M-step from responsibilities resp [N, K] (scikit-learn's formulas)."""
    eps = jnp.finfo(x.dtype).eps
    nk = jnp.sum(resp, 0) + 10 * eps                                    # [K]
    means = (resp.T @ x) / nk[:, None]                                  # [K, D]
    if covariance_type == "full":
        if x.shape[1] >= gmm_losses.MAP_MIN_DIM:   # one [D, N] x [N, D] per component
            def one(a):
                r, m = a
                diff = x - m                                            # [N, D]
                return jax.lax.dot_general(diff * r[:, None], diff,
                                           (((0,), (0,)), ((), ())))    # [D, D]
            cov = jax.lax.map(one, (resp.T, means))
        else:
            diff = x[None, :, :] - means[:, None, :]                    # [K, N, D]
            cov = jnp.einsum("nk,knd,kne->kde", resp, diff, diff)
        cov = cov / nk[:, None, None] + reg_covar * jnp.eye(x.shape[1], dtype=x.dtype)
    else:
        diff = x[None, :, :] - means[:, None, :]
        var = jnp.einsum("nk,knd->kd", resp, diff * diff) / nk[:, None] + reg_covar
        cov = var if covariance_type == "diag" else jnp.mean(var, -1)
    return GMMParams(nk / jnp.sum(nk), means, cov)


def e_step(x, params: GMMParams, *, covariance_type: str = "full"):
    """Returns (mean_n log p(x_n) [], log responsibilities [N, K])."""
    lj = gmm_losses.log_joint(x, *params, covariance_type=covariance_type)   # [N, K]
    lp = logsumexp(lj, axis=-1, keepdims=True)                               # [N, 1]
    return jnp.mean(lp), lj - lp


def run_em(init, *, e_step: Callable, m_step: Callable, tol, max_iter) -> EMResult:
    """The EM loop shared by every mixture, as one ``lax.while_loop``.

    e_step(params) -> (mean log-likelihood [], log_resp [N, K]); m_step(resp) -> params.
    Runs until |bound - previous bound| < tol or max_iter iterations, or the bound is
    non-finite (reported as converged=False and a non-finite log_likelihood)."""

    def cond(c):
        params, lb, prev, it, done = c
        return (it < max_iter) & ~done

    def body(c):
        params, lb, _, it, _ = c
        new_lb, log_resp = e_step(params)
        params = m_step(jnp.exp(log_resp))
        done = (jnp.abs(new_lb - lb) < tol) | ~jnp.isfinite(new_lb)
        return params, new_lb, lb, it + 1, done

    dtype = jax.tree_util.tree_leaves(init)[0].dtype
    ninf = jnp.array(-jnp.inf, dtype)
    c = (init, ninf, ninf, jnp.int32(0), jnp.bool_(False))
    params, lb, prev, it, done = jax.lax.while_loop(cond, body, c)
    final, _ = e_step(params)
    converged = done & jnp.isfinite(lb)
    return EMResult(params, final, lb, it, converged)


def em(x, init: GMMParams, *, covariance_type: str = "full", tol=1e-3, max_iter=100,
       reg_covar=1e-6) -> EMResult:
    """EM for a Gaussian mixture from ``init`` on x [N, D]; pure and jittable (jit with
    covariance_type static); vmap over ``init`` for restarts."""
    return run_em(init, e_step=lambda p: e_step(x, p, covariance_type=covariance_type),
                  m_step=lambda r: m_step(x, r, covariance_type=covariance_type,
                                          reg_covar=reg_covar),
                  tol=tol, max_iter=max_iter)


# -------------------------------------------------------------------- initialisation

def kmeans_plusplus(key, x, num_components: int):
    """k-means++ seeding (Arthur & Vassilvitskii, 2007): the first centre uniformly, each
    next one with probability proportional to the squared distance to the nearest centre
    chosen so far (one trial per centre, not scikit-learn's greedy 2 + log K). When every
    point coincides with a centre (duplicates), the next is drawn uniformly. Returns the
    indices [K] int32 of the chosen points."""
    n = x.shape[0]
    keys = jax.random.split(key, num_components)
    first = jax.random.randint(keys[0], (), 0, n).astype(jnp.int32)
    sq = lambda i: jnp.sum((x - x[i]) ** 2, -1)                         # [N]

    def body(i, carry):
        idx, d2 = carry
        total = jnp.sum(d2)
        logits = jnp.where(total > 0, jnp.log(d2), 0.0)                  # log 0 = -inf
        new = jax.random.categorical(keys[i], logits).astype(jnp.int32)
        return idx.at[i].set(new), jnp.minimum(d2, sq(new))

    idx = jnp.zeros((num_components,), jnp.int32).at[0].set(first)
    idx, _ = jax.lax.fori_loop(1, num_components, body, (idx, sq(first)))
    return idx


def initial_centres(key, x, num_components: int, method: str = "kmeans++"):
    """Indices [K] of K data points: k-means++ seeding or uniformly without replacement."""
    if method == "kmeans++":
        return kmeans_plusplus(key, x, num_components)
    if method == "random":
        return jax.random.choice(key, x.shape[0], (num_components,), replace=False)
    raise ValueError(f"unknown init {method!r}; expected one of {INITS}")


def hard_assignment(x, centres):
    """One-hot responsibilities [N, K] of the nearest centre (centres [K, D])."""
    d2 = (jnp.sum(x * x, -1, keepdims=True) - 2 * x @ centres.T
          + jnp.sum(centres * centres, -1))
    return jax.nn.one_hot(jnp.argmin(d2, -1), centres.shape[0], dtype=x.dtype)


def init_params(key, x, num_components: int, *, method: str = "kmeans++",
                covariance_type: str = "full", reg_covar=1e-6) -> GMMParams:
    """K data points as centres (``method``), every point assigned to its nearest centre,
    then one M-step: weights, means and covariances of the K clusters."""
    centres = x[initial_centres(key, x, num_components, method)]
    return m_step(x, hard_assignment(x, centres), covariance_type=covariance_type,
                  reg_covar=reg_covar)


# ------------------------------------------------------------------ restarts, checks

def check_data(x, num_components: int, *, what: str = "x") -> np.ndarray:
    """Host-side checks before anything is compiled; returns x as a numpy array.
    Raises ValueError with one line: not [N, D], NaN/inf values, N < 2, or N < K."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{what} must be [N, D] points, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} must hold floats, got {x.dtype}; cast with .astype(np.float32)")
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        rows = int(np.count_nonzero(~np.isfinite(x).all(1)))
        raise ValueError(f"{what} contains {bad} NaN/inf values in {rows} rows; drop or "
                         "impute those rows before fitting")
    if x.shape[0] < 2:
        raise ValueError(f"{what} has {x.shape[0]} point(s); a mixture needs at least 2")
    if not isinstance(num_components, (int, np.integer)) or num_components < 1:
        raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
    if x.shape[0] < num_components:
        raise ValueError(f"num_components={num_components} is larger than the {x.shape[0]} "
                         "points; use at most as many components as points")
    return x


def best_of(results: EMResult) -> tuple[EMResult, jax.Array]:
    """The restart with the highest final log-likelihood (NaN counts as -inf) from results
    with a leading restart axis; returns (that EMResult, its index)."""
    ll = jnp.where(jnp.isfinite(results.log_likelihood), results.log_likelihood, -jnp.inf)
    i = jnp.argmax(ll)
    return jax.tree_util.tree_map(lambda a: a[i], results), i


def default_restart_batch(x, restarts: int) -> int:
    """How many EM restarts run at once (vmapped); batches of that size follow one
    another (``lax.map``). All at once on accelerators, where one fit leaves most of the
    chip idle. On a CPU one fit in D >= MAP_MIN_DIM already keeps every core busy, and a
    vmapped while_loop runs every restart until the slowest has converged: at 50,000
    points in 64-D, K = 10, on 2 cores, 16 vmapped restarts took 2.8x as long as the same
    16 fits one after another, while in 2-D the vmapped ones were 1.2x faster. So there
    they run one at a time."""
    if jax.default_backend() == "cpu" and x.shape[-1] >= gmm_losses.MAP_MIN_DIM:
        return 1
    return restarts


def map_restarts(fit: Callable, x, inits, restart_batch: int | None = None):
    """fit(init) -> result over the leading [restarts] axis of ``inits`` (fits to x):
    all vmapped when restart_batch >= restarts, else ``lax.map`` in vmapped batches of
    restart_batch; None: `default_restart_batch`."""
    restarts = len(jax.tree_util.tree_leaves(inits)[0])
    if restart_batch is None:
        restart_batch = default_restart_batch(x, restarts)
    if restart_batch >= restarts:
        return jax.vmap(fit)(inits)
    return jax.lax.map(fit, inits, batch_size=max(int(restart_batch), 1))


@partial(jax.jit, static_argnames=("num_components", "covariance_type", "init", "restarts",
                                   "max_iter", "restart_batch"))
def fit_em_compiled(key, x, *, num_components: int, covariance_type: str = "full",
                    init: str = "kmeans++", restarts: int = 1, tol=1e-3, max_iter: int = 100,
                    reg_covar=1e-6, restart_batch: int | None = None):
    """The compiled core of `fit_em` (no host checks): returns (best EMResult, all
    restarts' EMResult with a leading [restarts] axis). ``restart_batch``: restarts run
    at once (default `default_restart_batch`); the results do not depend on it."""
    keys = jax.random.split(key, restarts)
    inits = jax.vmap(lambda k: init_params(k, x, num_components, method=init,
                                           covariance_type=covariance_type,
                                           reg_covar=reg_covar))(keys)
    results = map_restarts(lambda p: em(x, p, covariance_type=covariance_type, tol=tol,
                                        max_iter=max_iter, reg_covar=reg_covar),
                           x, inits, restart_batch)
    return best_of(results)[0], results


def check_fit(result: EMResult, what: str = "Gaussian mixture", fix: str = "increase "
              "reg_covar (e.g. 1e-4) or lower num_components") -> None:
    if not np.isfinite(float(result.log_likelihood)):
        raise FloatingPointError(
            f"{what} fit failed: the log-likelihood became non-finite in every restart "
            f"(a singular covariance: duplicate or degenerate points); {fix}")


def fit_em(key, x, num_components: int, *, covariance_type: str = "full",
           init: str = "kmeans++", restarts: int = 1, tol: float = 1e-3,
           max_iter: int = 100, reg_covar: float = 1e-6, restart_batch: int | None = None):
    """Fits a K-component Gaussian mixture to x [N, D] by EM from ``restarts``
    initialisations in one compiled program, keeping the best by final log-likelihood.
    ``restart_batch`` restarts run at once (vmapped; default `default_restart_batch`).

    Returns (best EMResult, all restarts' EMResult [restarts, ...]). Raises ValueError on
    bad input (see the module docstring) and FloatingPointError if every restart ended
    non-finite."""
    if covariance_type not in COVARIANCE_TYPES:
        raise ValueError(f"unknown covariance_type {covariance_type!r}; expected one of "
                         f"{COVARIANCE_TYPES}")
    if init not in INITS:
        raise ValueError(f"unknown init {init!r}; expected one of {INITS}")
    if not tol > 0 or max_iter < 1 or restarts < 1 or reg_covar < 0:
        raise ValueError(f"need tol > 0, max_iter >= 1, restarts >= 1, reg_covar >= 0; got "
                         f"tol={tol}, max_iter={max_iter}, restarts={restarts}, "
                         f"reg_covar={reg_covar}")
    x = check_data(x, num_components)
    best, results = fit_em_compiled(key, jnp.asarray(x), num_components=num_components,
                                    covariance_type=covariance_type, init=init,
                                    restarts=restarts, tol=tol, max_iter=max_iter,
                                    reg_covar=reg_covar, restart_batch=restart_batch)
    check_fit(best)
    return best, results


# ------------------------------------------------- gradient-based maximum likelihood

class Unconstrained(NamedTuple):
    """Unconstrained parameters: weights = softmax(logits); precision Cholesky factor
    U = triu(raw, 1) + diag(exp(diag(raw))) (full), exp(raw) (diag, spherical), so any
    real values give a valid mixture."""
    logits: jax.Array         # [K]
    means: jax.Array          # [K, D]
    prec_chol_raw: jax.Array  # full [K, D, D] | diag [K, D] | spherical [K]


def to_unconstrained(params: GMMParams, *, covariance_type: str = "full") -> Unconstrained:
    pc = gmm_losses.precision_cholesky(params.covariances, covariance_type)
    if covariance_type == "full":
        d = jnp.diagonal(pc, axis1=-2, axis2=-1)
        raw = jnp.triu(pc, 1) + jax.vmap(jnp.diag)(jnp.log(d))
    else:
        raw = jnp.log(pc)
    return Unconstrained(jnp.log(params.weights), params.means, raw)


def precision_cholesky_of(u: Unconstrained, *, covariance_type: str = "full"):
    raw = u.prec_chol_raw
    if covariance_type == "full":
        d = jnp.exp(jnp.diagonal(raw, axis1=-2, axis2=-1))
        return jnp.triu(raw, 1) + jax.vmap(jnp.diag)(d)
    return jnp.exp(raw)


def from_unconstrained(u: Unconstrained, *, covariance_type: str = "full") -> GMMParams:
    pc = precision_cholesky_of(u, covariance_type=covariance_type)
    if covariance_type == "full":
        inv = jnp.swapaxes(gmm_losses.lower_triangular_inverse(      # U^-1 (U upper)
            jnp.swapaxes(pc, -1, -2)), -1, -2)
        cov = jnp.swapaxes(inv, -1, -2) @ inv                 # (U U^T)^-1 = U^-T U^-1
    else:
        cov = pc ** -2
    return GMMParams(jax.nn.softmax(u.logits), u.means, cov)


def unconstrained_log_likelihood(x, u: Unconstrained, *, covariance_type: str = "full"):
    """log p(x_n) [N] from unconstrained parameters (no Cholesky inside: differentiable
    everywhere); nats."""
    pc = precision_cholesky_of(u, covariance_type=covariance_type)
    lj = jax.nn.log_softmax(u.logits) + gmm_losses.log_gaussian_prob(
        x, u.means, pc, covariance_type=covariance_type)
    return logsumexp(lj, axis=-1)


def make_mle_loss(covariance_type: str = "full"):
    """loss_fn(params, batch, key, hparams) for `genjax.train.make_train_step`: params is
    an `Unconstrained` with a leading [R] restart axis, batch [B, D]. The loss is the sum
    over restarts of each one's mean negative log-likelihood, so with an element-wise
    optimiser (Adam, SGD; no global-norm clipping) the R restarts train independently in
    one program. Metrics: best and mean (over restarts) batch NLL, nats per point."""

    def loss_fn(params, batch, key, hparams):
        del key, hparams
        nll = -jax.vmap(lambda u: jnp.mean(unconstrained_log_likelihood(
            batch, u, covariance_type=covariance_type)))(params)          # [R]
        return jnp.sum(nll), {"nll_best": jnp.min(nll), "nll_mean": jnp.mean(nll)}

    return loss_fn
