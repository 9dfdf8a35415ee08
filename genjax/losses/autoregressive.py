"""Autoregressive log-likelihoods: the chain rule p(x) = prod_i p(x_i | x_<i), exactly.

Every function is pure and takes arrays (and, for `autoregressive_log_likelihood`, a plain
callable). The data x is [B, D] (flatten images first), in the order of its last axis; to
use another ordering, permute the columns of x (and of the per-dimension parameters).

  FVBN   p(x_i = 1 | x_<i) = sigmoid(b_i + sum_{j<i} W_ij x_j)           W [D, D], b [D]
         (a logistic regression per dimension; ``context=k`` keeps only the k previous
         dimensions, the Markov / AR(k) truncation)
  NADE   h_i = sigmoid(c + W[:, <i] x_<i),  p(x_i = 1 | x_<i) = sigmoid(V_i . h_i + b_i)
         W [H, D], c [H], V [D, H], b [D]   (Larochelle & Murray, 2011)
  CNADE  the conditional NADE p(x | c) = prod_i p(x_i | x_<i, c) of a context c [B, C]
         (a one-hot class, `genjax.conditioning.one_hot`): the context enters every
         conditional through the shared pre-activation, h_i = sigmoid(c + U ctx +
         W[:, <i] x_<i); U [H, C], the rest as NADE (still O(HD) per example)
  RNADE  the NADE hidden layer with h_i = sigmoid(rho_i a_i) and a mixture of K Gaussians
         per dimension: [logit weights, means, log scales] = V_i^T h_i + b_i,
         V [D, H, 3K], b [D, 3K], rho [D]   (Uria, Murray & Larochelle, 2013)

The NADE pre-activations share the running sum a_{i+1} = a_i + W[:, i] x_i, so one pass
over the dimensions costs O(HD) per example instead of the O(HD^2) of recomputing
W[:, <i] x_<i for every i (`nade_log_likelihood_naive`). The pass is a ``lax.scan`` over
the D dimensions with a [B, H] carry, no Python loop. `nade_log_likelihood` has a
hand-written reverse-mode derivative (the O(HD) backward pass of Larochelle & Murray's
Algorithm 1) that recomputes the pre-activations backwards by subtraction instead of
storing them: O(BH + BD) memory and about 2.5x faster than differentiating the scan.

Units: nats; log-likelihoods are summed over the D dimensions and returned per example
([B]); only `nll_loss` averages over the batch.

The shapes above are checked at trace time (`genjax.shapes`): B, D, H and K must agree
across x and every parameter, and a mismatch raises a ``ValueError`` naming the argument
and both shapes (a [D] bias against [B, D] logits would otherwise broadcast silently).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genjax import distributions as dist
from genjax import numerics
from genjax.shapes import Shapes

LOG_2PI = math.log(2.0 * math.pi)


# ------------------------------------------------------------------------------ generic

def bernoulli_log_likelihood(x, logits):
    """sum_i log Bernoulli(x_i | sigmoid(logits_i)): x, logits [B, D] -> [B]; nats."""
    s = Shapes("losses.autoregressive.bernoulli_log_likelihood")
    s("x", x, "B D")
    s("logits", logits, "B D")
    return dist.log_bernoulli_logits(x, logits, event_ndim=1)


def autoregressive_log_likelihood(x, *, logits_fn: Callable):
    """log p(x) of a binary autoregressive model given as a callable.

    x: [B, D] in {0, 1}. logits_fn(x) -> [B, D], whose entry i is the logit of
    p(x_i = 1 | x_<i) and so may depend on x only through the entries before i in the
    model's ordering (a MADE, an FVBN, ...; nothing here checks that, only the shapes).
    Returns [B] nats.
    """
    s = Shapes("losses.autoregressive.autoregressive_log_likelihood")
    s("x", x, "B D")
    logits = logits_fn(x)
    s("logits_fn(x)", logits, "B D")
    return dist.log_bernoulli_logits(x, logits, event_ndim=1)


def categorical_autoregressive_log_likelihood(x, *, logits_fn: Callable):
    """log p(x) of a K-way autoregressive model given as a callable (a PixelCNN's 256-way
    softmax over 8-bit pixel values, ...).

    x: [B, D] with integer values in 0..K-1 (any dtype; cast to int). logits_fn(x) ->
    [B, D, K], whose entry [b, i] holds the logits of p(x_i = k | x_<i) over k and so may
    depend on x only through the entries before i in the model's ordering (not checked
    here, only the shapes). Returns [B] nats, sum_i log softmax(logits_i)[x_i]; values
    outside 0..K-1 are an error only through the shapes, so keep them in range.
    """
    s = Shapes("losses.autoregressive.categorical_autoregressive_log_likelihood")
    s("x", x, "B D")
    logits = logits_fn(x)
    s("logits_fn(x)", logits, "B D K")
    idx = jnp.asarray(x).astype(jnp.int32)[..., None]                   # [B, D, 1]
    log_p = jnp.take_along_axis(jax.nn.log_softmax(logits, axis=-1), idx, axis=-1)
    return jnp.sum(log_p[..., 0], axis=-1)


def nll_loss(log_px):
    """The maximum-likelihood objective from per-example log-likelihoods log_px [B]:
    returns (loss = -mean_B log_px, {"log_likelihood": mean_B log_px}); nats."""
    Shapes("losses.autoregressive.nll_loss")("log_px", log_px, "B")
    mean = jnp.mean(log_px)
    return -mean, {"log_likelihood": mean}


# --------------------------------------------------------------------------------- FVBN

def fvbn_mask(dim: int, context: int = 0, dtype=jnp.float32):
    """The FVBN's connectivity [D, D]: M[i, j] = 1 when x_j is a parent of x_i, i.e.
    j < i (and i - j <= context when context > 0, the AR(k) truncation)."""
    i = jnp.arange(dim)[:, None]
    j = jnp.arange(dim)[None, :]
    keep = j < i
    if context > 0:
        keep = keep & (i - j <= context)
    return keep.astype(dtype)


def fvbn_logits(x, *, W, b, context: int = 0):
    """Logits of p(x_i = 1 | x_<i) for every i: x [B, D] -> [B, D]. W [D, D] (only the
    entries allowed by `fvbn_mask` are used, so the others get zero gradient), b [D]."""
    _check_fvbn("losses.autoregressive.fvbn_logits", x, W, b)
    return _fvbn_logits(x, W, b, context)


def _check_fvbn(where, x, W, b):
    s = Shapes(where)
    s("x", x, "B D")
    s("W", W, "D D")
    s("b", b, "D")


def _fvbn_logits(x, W, b, context):
    return x @ (W * fvbn_mask(W.shape[0], context, W.dtype)).T + b


def fvbn_log_likelihood(x, *, W, b, context: int = 0):
    """Fully visible sigmoid belief network: x [B, D] in {0, 1} -> log p(x) [B]; nats.
    O(D^2) per example (or O(D k) parameters used with ``context=k``). W [D, D], b [D]."""
    _check_fvbn("losses.autoregressive.fvbn_log_likelihood", x, W, b)
    return dist.log_bernoulli_logits(x, _fvbn_logits(x, W, b, context), event_ndim=1)


# --------------------------------------------------------------------------------- NADE

def _check_nade(where, x, W, c, V, b, rho=None):
    """x [B, D], W [H, D], c [H], V [D, H] (NADE) or [D, H, 3K] with b [D, 3K] and rho [D]
    (RNADE); returns the checker."""
    s = Shapes(where)
    s("x", x, "B D")
    s("W", W, "H D")
    s("c", c, "H")
    if rho is None:
        s("V", V, "D H")
        s("b", b, "D")
    else:
        s("V", V, "D H O")
        s("b", b, "D O")
        s("rho", rho, "D")
        if s.dims["O"] % 3:
            s.fail(f"V has shape {jnp.shape(V)} but expected [D, H, 3K]: its last axis "
                   f"{s.dims['O']} holds (logit weights, means, log scales) of K components "
                   f"and must be a multiple of 3")
    return s


def _hidden_scan(x, W, c, V, rho=None):
    """The shared NADE pass. x [B, D], W [H, D], c [H], V [D, H, *O], rho [D] or None.
    For i = 0..D-1 (a_0 = c): h_i = sigmoid(rho_i a_i), out_i = h_i @ V_i, then
    a_{i+1} = a_i + x_i W[:, i]. Returns (a_D [B, H], out [B, D, *O])."""
    # the carry takes x's batch sharding when the batch is split over devices
    a0 = jnp.zeros_like(x[:, :1], dtype=jnp.result_type(x, W, c)) + c       # [B, H]

    def body(a, inp):
        xi, wi, vi, ri = inp                                  # [B], [H], [H, *O], []
        h = numerics.sigmoid(a if ri is None else ri * a)     # [B, H]
        return a + xi[:, None] * wi, h @ vi                   # [B, H], [B, *O]

    a_end, out = jax.lax.scan(body, a0, (x.T, W.T, V, rho))
    return a_end, jnp.moveaxis(out, 0, 1)


def nade_logits(x, *, W, c, V, b):
    """Logits of p(x_i = 1 | x_<i) for every i: x [B, D] -> [B, D], in O(HD) per example.
    W [H, D], c [H], V [D, H], b [D]. Differentiable by ordinary autodiff."""
    _check_nade("losses.autoregressive.nade_logits", x, W, c, V, b)
    return _hidden_scan(x, W, c, V)[1] + b


def nade_log_likelihood(x, *, W, c, V, b, groups: int = 1):
    """NADE log-likelihood: x [B, D] in {0, 1} -> log p(x) [B]; nats. O(HD) per example.

    W [H, D], c [H], V [D, H], b [D] (the lecture notes' notation). Reverse-mode
    derivatives (with respect to x and every parameter) come from the O(HD) backward pass
    of Larochelle & Murray (2011), not from differentiating the scan; higher-order
    derivatives are not supported (use `nade_logits` for those).

    ``groups`` (static) only shapes that backward pass: the parameter gradients are kept
    as partial sums over ``groups`` blocks of the batch until the end of the reverse scan,
    so that when the batch is split over that many devices no step of the scan
    communicates. Any value gives the same numbers up to float summation order; the
    largest divisor of B not above ``groups`` is used.
    """
    _check_nade("losses.autoregressive.nade_log_likelihood", x, W, c, V, b)
    return _nade_ll(x, W, c, V, b, math.gcd(int(groups), x.shape[0]) or 1)


def _nade_ll_and_residuals(x, W, c, V, b):
    a_end, out = _hidden_scan(x, W, c, V)
    logits = out + b                                                      # [B, D]
    return bernoulli_log_likelihood(x, logits), (x, W, V, a_end, logits)


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def _nade_ll(x, W, c, V, b, groups):
    return _nade_ll_and_residuals(x, W, c, V, b)[0]


def _nade_ll_fwd(x, W, c, V, b, groups):
    return _nade_ll_and_residuals(x, W, c, V, b)


def _nade_ll_bwd(groups, residuals, g):
    """Cotangents of (x, W, c, V, b) for the output cotangent g [B]. Reverse scan over
    i = D-1..0 carrying (a_{i+1} -> a_i by subtraction, da = sum_{k>i} dL/da_k):

      r_i = g (x_i - p_i)          dL/dlogit_i          dV_i = sum_b r_i h_i
      dW[:, i] = sum_b x_i da       dx_i = g logit_i + W[:, i] . da
      da += r_i V_i * h_i (1 - h_i)                      dc = sum_b da, db = sum_b r
    """
    dx, dw, da, dv, db = _nade_bwd_scan(groups, residuals, g)
    return (dx, dw, da.sum((0, 1)), dv, db)


def _nade_bwd_scan(groups, residuals, g):
    """`_nade_ll_bwd`'s reverse scan: (dx [B, D], dW [H, D], da [G, b, H] (dL/da_0 per
    example, grouped), dV [D, H], db [D])."""
    x, W, V, a_end, logits = residuals
    bsz, d = x.shape
    h_dim = W.shape[0]
    r = g[:, None] * (x - jax.nn.sigmoid(logits))                        # [B, D]
    grp, per = groups, bsz // groups
    xg, rg = x.reshape(grp, per, d), r.reshape(grp, per, d)              # [G, b, D]
    ag = a_end.reshape(grp, per, h_dim)                                  # [G, b, H]

    def body(carry, inp):
        a, da = carry                                                    # [G, b, H]
        xi, ri, wi, vi = inp                                             # [G, b], [H]
        a = a - xi[..., None] * wi                                       # a_i
        h = numerics.sigmoid(a)
        dv = jnp.einsum("gb,gbh->gh", ri, h)                             # [G, H]
        dw = jnp.einsum("gb,gbh->gh", xi, da)                            # [G, H]
        dxw = da @ wi                                                    # [G, b]
        da = da + (ri[..., None] * vi) * h * (1.0 - h)
        return (a, da), (dw, dv, dxw)

    (_, da), (dw, dv, dxw) = jax.lax.scan(
        body, (ag, jnp.zeros_like(ag)),
        (jnp.moveaxis(xg, 2, 0), jnp.moveaxis(rg, 2, 0), W.T, V), reverse=True)
    dx = g[:, None] * logits + jnp.moveaxis(dxw, 0, 2).reshape(bsz, d)
    return (dx.astype(x.dtype), dw.sum(1).T, da, dv.sum(1), r.sum(0))


_nade_ll.defvjp(_nade_ll_fwd, _nade_ll_bwd)


def nade_log_likelihood_naive(x, *, W, c, V, b):
    """The same log p(x) [B] computed the naive way, for tests and the benchmark: for each
    i separately h_i = sigmoid(W (x * 1[j < i]) + c), a [B, D] x [D, H] product per
    dimension (``lax.map`` over i), O(HD^2) per example. Shapes as `nade_log_likelihood`."""
    _check_nade("losses.autoregressive.nade_log_likelihood_naive", x, W, c, V, b)
    d = x.shape[1]

    def logit_i(inp):
        i, vi, bi = inp
        mask = (jnp.arange(d) < i).astype(x.dtype)                       # [D]
        h = numerics.sigmoid((x * mask) @ W.T + c)                       # [B, H]
        return h @ vi + bi                                               # [B]

    logits = jax.lax.map(logit_i, (jnp.arange(d), V, b)).T               # [B, D]
    return dist.log_bernoulli_logits(x, logits, event_ndim=1)


# --------------------------------------------------------------------- conditional NADE

def _check_cnade(where, x, context, W, c, U, V, b):
    """NADE's shapes and context [B, C], U [H, C]."""
    s = _check_nade(where, x, W, c, V, b)
    s("context", context, "B C")
    s("U", U, "H C")
    return s


def _context_bias(context, c, U):
    """The per-example a_0 = c + U context: [B, H]."""
    return c + context @ U.T


def conditional_nade_logits(x, context, *, W, c, U, V, b):
    """Logits of p(x_i = 1 | x_<i, context) for every i: x [B, D], context [B, C] ->
    [B, D], O(HD + HC) per example. W [H, D], c [H], U [H, C], V [D, H], b [D]: NADE's
    parameters with a_0 = c + U context instead of c. Differentiable by ordinary
    autodiff."""
    _check_cnade("losses.autoregressive.conditional_nade_logits", x, context, W, c, U, V, b)
    return _hidden_scan(x, W, _context_bias(context, c, U), V)[1] + b


def conditional_nade_log_likelihood(x, context, *, W, c, U, V, b, groups: int = 1):
    """Conditional NADE: x [B, D] in {0, 1}, context [B, C] -> log p(x | context) [B];
    nats, O(HD + HC) per example. The context shifts the shared hidden pre-activation,
    a_0 = c + U context (U [H, C]; the rest as `nade_log_likelihood`, whose O(HD)
    hand-written backward pass it uses, with dL/da_0 kept per example so the gradients
    reach U and the context by ordinary autodiff). With U = 0 it is
    `nade_log_likelihood`. ``groups``: as there."""
    _check_cnade("losses.autoregressive.conditional_nade_log_likelihood", x, context,
                 W, c, U, V, b)
    return _nade_ll_rows(x, W, _context_bias(context, c, U), V, b,
                         math.gcd(int(groups), x.shape[0]) or 1)


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def _nade_ll_rows(x, W, c_rows, V, b, groups):          # c_rows [B, H]: a_0 per example
    return _nade_ll_and_residuals(x, W, c_rows, V, b)[0]


def _nade_ll_rows_fwd(x, W, c_rows, V, b, groups):
    return _nade_ll_and_residuals(x, W, c_rows, V, b)


def _nade_ll_rows_bwd(groups, residuals, g):
    dx, dw, da, dv, db = _nade_bwd_scan(groups, residuals, g)
    return (dx, dw, da.reshape(residuals[0].shape[0], -1), dv, db)


_nade_ll_rows.defvjp(_nade_ll_rows_fwd, _nade_ll_rows_bwd)


def conditional_nade_log_likelihood_naive(x, context, *, W, c, U, V, b):
    """`conditional_nade_log_likelihood` the naive O(HD^2) way (for tests): for each i
    separately h_i = sigmoid(W (x * 1[j < i]) + c + U context)."""
    _check_cnade("losses.autoregressive.conditional_nade_log_likelihood_naive", x,
                 context, W, c, U, V, b)
    d = x.shape[1]
    a0 = _context_bias(context, c, U)                                    # [B, H]

    def logit_i(inp):
        i, vi, bi = inp
        mask = (jnp.arange(d) < i).astype(x.dtype)
        return numerics.sigmoid((x * mask) @ W.T + a0) @ vi + bi         # [B]

    logits = jax.lax.map(logit_i, (jnp.arange(d), V, b)).T               # [B, D]
    return dist.log_bernoulli_logits(x, logits, event_ndim=1)


# ------------------------------------------------------------- mixture conditionals

def gaussian_mixture_log_prob(x, logit_weights, means, log_scales):
    """log sum_k pi_k N(x | mu_k, sigma_k^2) for scalar x, element-wise.

    x [...]; logit_weights, means, log_scales [..., K] (pi = softmax(logit_weights),
    sigma = exp(log_scales)), the same K, their leading axes broadcasting to x's shape.
    Returns [...] (x's shape); nats."""
    s = Shapes("losses.autoregressive.gaussian_mixture_log_prob")
    x_shape = jnp.shape(x)
    for name, a in (("logit_weights", logit_weights), ("means", means),
                    ("log_scales", log_scales)):
        lead = s(name, a, "... K")[:-1]
        if not (len(lead) <= len(x_shape)
                and all(d in (1, e) for d, e in zip(reversed(lead), reversed(x_shape)))):
            s.fail(f"{name} has shape {jnp.shape(a)} but expected [..., K] whose leading "
                   f"axes broadcast to x's shape {x_shape}")
    log_pi = jax.nn.log_softmax(logit_weights, axis=-1)
    z = (x[..., None] - means) * jnp.exp(-log_scales)
    comp = -0.5 * (LOG_2PI + z * z) - log_scales
    return logsumexp(log_pi + comp, axis=-1)


def rnade_conditionals(x, *, W, c, V, b, rho, min_log_scale: float = -7.0):
    """The mixture parameters of p(x_i | x_<i) for every i: x [B, D] real ->
    (logit_weights, means, log_scales), each [B, D, K]. W [H, D], c [H], V [D, H, 3K],
    b [D, 3K], rho [D]. Log scales are clipped below at ``min_log_scale``."""
    _check_nade("losses.autoregressive.rnade_conditionals", x, W, c, V, b, rho)
    return _rnade_conditionals(x, W, c, V, b, rho, min_log_scale)


def _rnade_conditionals(x, W, c, V, b, rho, min_log_scale):
    _, out = _hidden_scan(x, W, c, V, rho)                               # [B, D, 3K]
    logit_w, means, log_s = jnp.split(out + b, 3, axis=-1)
    return logit_w, means, jnp.maximum(log_s, min_log_scale)


def rnade_log_likelihood(x, *, W, c, V, b, rho, min_log_scale: float = -7.0):
    """RNADE: x [B, D] real -> log p(x) [B]; nats (a density on R^D), O(HDK) per example.
    W [H, D], c [H], V [D, H, 3K], b [D, 3K], rho [D]."""
    _check_nade("losses.autoregressive.rnade_log_likelihood", x, W, c, V, b, rho)
    params = _rnade_conditionals(x, W, c, V, b, rho, min_log_scale)
    return jnp.sum(gaussian_mixture_log_prob(x, *params), axis=-1)
