"""VAE objectives: the ELBO (closed-form or Monte-Carlo KL, beta weight) and the IWAE bound.

All functions take arrays and plain callables, never module objects:

  encode(x)  x: [B, *E] float  ->  (mean [B, Z], log_var [B, Z])   the Gaussian q(z | x)
  decode(z)  z: [N, Z]          ->  for likelihood="bernoulli": logits [N, *E]
                                    for likelihood="gaussian":  (mean [N, *E], log_var
                                    broadcastable to [N, *E])

Units: nats; log-densities are summed over the data dimensions E and the latent
dimensions Z, and averaged over the batch B only where a function says so.
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
from jax.scipy.special import logsumexp

from genjax import distributions as dist

LIKELIHOODS = ("bernoulli", "gaussian")
KL_ESTIMATORS = ("analytic", "mc")


def log_likelihood(x, decoded, likelihood: str = "bernoulli"):
    """log p(x | z) summed over the data axes of x: x [N, *E] -> [N]; nats.

    decoded: logits [N, *E] (bernoulli) or (mean, log_var) (gaussian).
    """
    # The event axes are flattened first ([N, 28, 28, 1] -> [N, 784]): XLA:CPU does not
    # vectorise element-wise work whose last axis has size 1, and this term and its
    # gradient are the largest element-wise work of a VAE step.
    event_ndim = x.ndim - 1

    def flat(a):
        return a.reshape(a.shape[:a.ndim - event_ndim] + (-1,))

    if likelihood == "bernoulli":
        return dist.log_bernoulli_logits(flat(x), flat(decoded), 1)
    if likelihood == "gaussian":
        mean, log_var = decoded
        return dist.log_normal_diag(flat(x), flat(mean), flat(log_var), 1)
    raise ValueError(f"unknown likelihood {likelihood!r}; expected one of {LIKELIHOODS}")


def elbo_terms(x, key, *, encode: Callable, decode: Callable, likelihood: str = "bernoulli",
               kl: str = "analytic"):
    """Per-example ELBO terms with one reparameterised sample z ~ q(z | x).

    x: [B, *E]. Returns a dict of [B] arrays in nats: ``log_px`` (reconstruction term
    log p(x | z)), ``kl`` (KL(q(z|x) || N(0, I)), closed form, or the one-sample estimate
    log q(z|x) - log p(z) when kl="mc") and ``elbo`` = log_px - kl.
    """
    if kl not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kl!r}; expected one of {KL_ESTIMATORS}")
    mean, log_var = encode(x)                                         # [B, Z]
    z = dist.sample_normal_diag(key, mean, log_var)                   # [B, Z]
    log_px = log_likelihood(x, decode(z), likelihood)                 # [B]
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
    t = elbo_terms(x, key, encode=encode, decode=decode, likelihood=likelihood, kl=kl)
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
    z = encode(x)[0]                                                  # [B, Z]
    log_px = log_likelihood(x, decode(z), likelihood)                 # [B]
    return -jnp.mean(log_px), {"log_px": jnp.mean(log_px),
                               "code_norm": jnp.mean(jnp.linalg.norm(z, axis=-1))}


def iw_log_weights(x, key, *, encode: Callable, decode: Callable, num_samples: int,
                   likelihood: str = "bernoulli"):
    """Log importance weights log p(x, z_k) - log q(z_k | x), z_k ~ q(z | x).

    x: [B, *E]. Returns [K, B] in nats, K = num_samples. decode is called once on the
    flattened [K * B, Z] latents.
    """
    mean, log_var = encode(x)                                         # [B, Z]
    z = dist.sample_normal_diag(key, mean, log_var, (num_samples,))   # [K, B, Z]
    k, b, zdim = z.shape
    decoded = decode(z.reshape(k * b, zdim))
    x_rep = jnp.broadcast_to(x, (k,) + x.shape).reshape((k * b,) + x.shape[1:])
    log_px = log_likelihood(x_rep, decoded, likelihood).reshape(k, b)  # [K, B]
    log_pz = dist.log_standard_normal(z)                              # [K, B]
    log_qz = dist.log_normal_diag(z, mean, log_var)                   # [K, B]
    return log_px + log_pz - log_qz


def iwae_bound_terms(x, key, *, encode: Callable, decode: Callable, num_samples: int,
                     likelihood: str = "bernoulli"):
    """Per-example IWAE bound log (1/K) sum_k w_k: [B] in nats. K = 1 gives the ELBO; the
    bound is non-decreasing in K in expectation and tends to log p(x)."""
    log_w = iw_log_weights(x, key, encode=encode, decode=decode, num_samples=num_samples,
                           likelihood=likelihood)
    return logsumexp(log_w, axis=0) - jnp.log(num_samples)


def iwae_bound(x, key, *, encode: Callable, decode: Callable, num_samples: int,
               likelihood: str = "bernoulli"):
    """The IWAE objective (Burda et al., 2016). x: [B, *E]. Returns (loss, metrics):
    loss = -mean_B bound (scalar), metrics = {"iwae": mean bound in nats}."""
    b = iwae_bound_terms(x, key, encode=encode, decode=decode, num_samples=num_samples,
                         likelihood=likelihood)
    return -jnp.mean(b), {"iwae": jnp.mean(b)}
