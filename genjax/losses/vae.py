"""VAE objectives: the ELBO (closed-form or Monte-Carlo KL, beta weight) and the IWAE bound.

All functions take arrays and plain callables, never module objects:

  encode(x)  x: [B, *E] float  ->  (mean [B, Z], log_var [B, Z])   the Gaussian q(z | x)
  decode(z)  z: [N, Z]          ->  for likelihood="bernoulli": logits [N, *E]
                                    for likelihood="gaussian":  (mean [N, *E], log_var
                                    broadcastable to [N, *E])

Units: nats; log-densities are summed over the data dimensions E and the latent
dimensions Z, and averaged over the batch B only where a function says so.

Shapes are checked at trace time (`genjax.shapes`): x has a batch axis; the encoder's mean
and log_var are both [B, Z]; the decoder's logits (or Gaussian mean) have exactly x's
shape and its Gaussian log_var broadcasts to it. A mismatch raises a ``ValueError`` naming
the argument or callable output and both shapes, instead of silently broadcasting.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genjax import distributions as dist
from genjax.shapes import Shapes

LIKELIHOODS = ("bernoulli", "gaussian")
KL_ESTIMATORS = ("analytic", "mc")


def _check_likelihood(likelihood: str) -> None:
    if likelihood not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}")


def _check_decoded(s: Shapes, decoded, likelihood: str, name: str, spec: str,
                   x_name: str, x_shape) -> None:
    """decoded (bernoulli logits, or the gaussian (mean, log_var)) against x [N, *E]:
    logits and mean of shape ``spec`` (bound to x's), log_var broadcastable to x's
    shape. ``name`` is what to call decoded in a message ("decoded", "decode(z)")."""
    if likelihood == "bernoulli":
        s(f"{name} (logits)", decoded, spec)
        return
    if not (isinstance(decoded, (tuple, list)) and len(decoded) == 2):
        s.fail(f"{name} must be a pair (mean, log_var) for the gaussian likelihood, got "
               f"{type(decoded).__name__}")
    s(f"{name}[0] (mean)", decoded[0], spec)
    s.broadcastable(f"{name}[1] (log_var)", decoded[1], x_name, x_shape)


def _check_encoded(s: Shapes, encoded, name: str = "encode(x)"):
    """encode(x) -> (mean [B, Z], log_var [B, Z]); returns the pair."""
    if not (isinstance(encoded, (tuple, list)) and len(encoded) == 2):
        s.fail(f"{name} must return a pair (mean [B, Z], log_var [B, Z]), got "
               f"{type(encoded).__name__}")
    s(f"{name}[0] (mean)", encoded[0], "B Z")
    s(f"{name}[1] (log_var)", encoded[1], "B Z")
    return encoded


def log_likelihood(x, decoded, likelihood: str = "bernoulli"):
    """log p(x | z) summed over the data axes of x: x [N, *E] -> [N]; nats.

    decoded: logits [N, *E] (bernoulli), or (mean [N, *E], log_var broadcastable to
    [N, *E], e.g. a scalar) (gaussian): the same N and E as x.
    """
    _check_likelihood(likelihood)
    s = Shapes("losses.vae.log_likelihood")
    s("x", x, "N *E")
    _check_decoded(s, decoded, likelihood, "decoded", "N *E", "x", x.shape)
    return _log_likelihood(x, decoded, likelihood)


def _log_likelihood(x, decoded, likelihood: str):
    # The event axes are flattened first ([N, 28, 28, 1] -> [N, 784]): XLA:CPU does not
    # vectorise element-wise work whose last axis has size 1, and this term and its
    # gradient are the largest element-wise work of a VAE step.
    event_ndim = x.ndim - 1

    def flat(a):
        return a.reshape(a.shape[:a.ndim - event_ndim] + (-1,))

    if likelihood == "bernoulli":
        return dist.log_bernoulli_logits(flat(x), flat(decoded), 1)
    mean, log_var = decoded                                  # gaussian (callers check)
    if jnp.ndim(log_var) and jnp.shape(log_var) != x.shape:
        # flattening a partly broadcast log_var (e.g. [28, 1], one per image column)
        # would misalign it; the full one gives the same numbers
        log_var = jnp.broadcast_to(log_var, x.shape)
    return dist.log_normal_diag(flat(x), flat(mean), flat(log_var), 1)


def elbo_terms(x, key, *, encode: Callable, decode: Callable, likelihood: str = "bernoulli",
               kl: str = "analytic"):
    """Per-example ELBO terms with one reparameterised sample z ~ q(z | x).

    x: [B, *E]. Returns a dict of [B] arrays in nats: ``log_px`` (reconstruction term
    log p(x | z)), ``kl`` (KL(q(z|x) || N(0, I)), closed form, or the one-sample estimate
    log q(z|x) - log p(z) when kl="mc") and ``elbo`` = log_px - kl.
    """
    return _elbo_terms(x, key, encode, decode, likelihood, kl, "losses.vae.elbo_terms")


def _elbo_terms(x, key, encode, decode, likelihood, kl, where):
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kl!r}; expected one of {KL_ESTIMATORS}")
    _check_likelihood(likelihood)
    s = Shapes(where)
    s("x", x, "B *E")
    mean, log_var = _check_encoded(s, encode(x))                      # [B, Z]
    z = dist.sample_normal_diag(key, mean, log_var)                   # [B, Z]
    decoded = decode(z)
    _check_decoded(s, decoded, likelihood, "decode(z)", "B *E", "x", x.shape)
    log_px = _log_likelihood(x, decoded, likelihood)                  # [B]
    if kl == "analytic":
        kl_b = dist.normal_kl_to_standard(mean, log_var)              # [B]
    else:
        kl_b = dist.log_normal_diag(z, mean, log_var) - dist.log_standard_normal(z)
    return {"log_px": log_px, "kl": kl_b, "elbo": log_px - kl_b}


def elbo(x, key, *, encode: Callable, decode: Callable, likelihood: str = "bernoulli",
         beta=1.0, kl: str = "analytic"):
    """The (beta-)VAE objective.

    x: [B, *E]. loss = mean_B[-log p(x|z) + beta * KL] (a scalar to minimise; beta may be a
    traced array so that a sweep can vmap over it). Returns (loss, metrics) where metrics
    holds batch means in nats: ``elbo`` (always the beta = 1 bound), ``log_px``, ``kl``.
    """
    t = _elbo_terms(x, key, encode, decode, likelihood, kl, "losses.vae.elbo")
    loss = jnp.mean(-t["log_px"] + beta * t["kl"])
    return loss, {k: jnp.mean(v) for k, v in t.items()}


def autoencoder_loss(x, *, encode: Callable, decode: Callable,
                     likelihood: str = "bernoulli"):
    """The deterministic autoencoder's objective: -log p(x | z = mean of encode(x)), the
    reconstruction term alone (no noise, no KL, so nothing ties the codes to N(0, I)).

    x: [B, *E]. Returns (loss, metrics): loss = mean_B[-log p(x | z)] in nats; metrics
    ``log_px`` (batch mean) and ``code_norm`` (mean |z|, which for a VAE stays near
    sqrt(Z) and for an autoencoder drifts wherever reconstruction wants it).
    """
    _check_likelihood(likelihood)
    s = Shapes("losses.vae.autoencoder_loss")
    s("x", x, "B *E")
    encoded = encode(x)
    if not isinstance(encoded, (tuple, list)):        # [0] would take the first example
        s.fail(f"encode(x) must return a pair (mean [B, Z], log_var [B, Z]) or a sequence "
               f"whose first entry is the codes [B, Z], got {type(encoded).__name__}")
    z = encoded[0]                                                    # [B, Z]
    s("encode(x)[0] (codes)", z, "B Z")
    decoded = decode(z)
    _check_decoded(s, decoded, likelihood, "decode(z)", "B *E", "x", x.shape)
    log_px = _log_likelihood(x, decoded, likelihood)                  # [B]
    return -jnp.mean(log_px), {"log_px": jnp.mean(log_px),
                               "code_norm": jnp.mean(jnp.linalg.norm(z, axis=-1))}


def iw_log_weights(x, key, *, encode: Callable, decode: Callable, num_samples: int,
                   likelihood: str = "bernoulli"):
    """Log importance weights log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x).

    x: [B, *E]. Returns [K, B] in nats, K = num_samples. decode is called once on the
    flattened [K * B, Z] latents and returns [K * B, *E] (bernoulli logits, or the gaussian
    (mean [K * B, *E], log_var broadcastable to it)), sample-major.
    """
    return _iw_log_weights(x, key, encode, decode, num_samples, likelihood,
                           "losses.vae.iw_log_weights")


def _iw_log_weights(x, key, encode, decode, num_samples, likelihood, where):
    _check_likelihood(likelihood)
    s = Shapes(where)
    s.positive_int("num_samples", num_samples)
    s("x", x, "B *E")
    mean, log_var = _check_encoded(s, encode(x))                      # [B, Z]
    z = dist.sample_normal_diag(key, mean, log_var, (num_samples,))   # [K, B, Z]
    k, b, zdim = z.shape
    decoded = decode(z.reshape(k * b, zdim))
    x_rep = jnp.broadcast_to(x, (k,) + x.shape).reshape((k * b,) + x.shape[1:])
    s.bind("KB", k * b, "= num_samples * B")
    _check_decoded(s, decoded, likelihood, "decode(z)", "KB *E", "x repeated num_samples times",
                   x_rep.shape)
    log_px = _log_likelihood(x_rep, decoded, likelihood).reshape(k, b)  # [K, B]
    log_pz = dist.log_standard_normal(z)                              # [K, B]
    log_qz = dist.log_normal_diag(z, mean, log_var)                   # [K, B]
    return log_px + log_pz - log_qz


def iwae_bound_terms(x, key, *, encode: Callable, decode: Callable, num_samples: int,
                     likelihood: str = "bernoulli"):
    """Per-example IWAE bound log (1/K) sum_k w_k: x [B, *E] -> [B] in nats. K = 1 gives
    the ELBO; the bound is non-decreasing in K in expectation and tends to log p(x)."""
    return _iwae_bound_terms(x, key, encode, decode, num_samples, likelihood,
                             "losses.vae.iwae_bound_terms")


def _iwae_bound_terms(x, key, encode, decode, num_samples, likelihood, where):
    log_w = _iw_log_weights(x, key, encode, decode, num_samples, likelihood, where)
    return logsumexp(log_w, axis=0) - jnp.log(num_samples)


def iwae_bound(x, key, *, encode: Callable, decode: Callable, num_samples: int,
               likelihood: str = "bernoulli"):
    """The IWAE objective (Burda et al., 2016). x: [B, *E]. Returns (loss, metrics):
    loss = -mean_B bound (scalar), metrics = {"iwae": mean bound in nats}."""
    b = _iwae_bound_terms(x, key, encode, decode, num_samples, likelihood,
                          "losses.vae.iwae_bound")
    return -jnp.mean(b), {"iwae": jnp.mean(b)}
