"""Recommender objectives: Mult-VAE and Mult-DAE (Liang et al., 2018, "Variational
Autoencoders for Collaborative Filtering"; reference code dawenl/vae_cf).

A user is a row x [I] of click counts over I items (0/1 in the paper's data). The models
see the row L2-normalised and, in training, with dropout on its items
(`normalize_and_dropout`), and predict logits [I] of a multinomial over items; the
reconstruction term is the multinomial log-likelihood of the *raw* row
(`multinomial_log_likelihood`).

All functions take arrays and plain callables, never module objects:

  encode(h)          h: [B, I] float  ->  Mult-VAE: (mean [B, Z], log_var [B, Z]) of q(z | x)
                                          Mult-DAE: the deterministic code [B, H]
  decode_logits(z)   z: [B, Z] or [B, H] ->  logits [B, I] of the multinomial over items

Units: nats; log-likelihoods are summed over the items I (and KLs over the latent
dimensions Z) and averaged over the batch B only where a function says so.

Shapes are checked at trace time (`genjax.shapes`): x has shape [B, I]; the encoder's
outputs have B rows (mean and log_var both [B, Z]); the decoder's logits have exactly x's
shape. A mismatch raises a ``ValueError`` naming the argument or callable output and both
shapes, instead of silently broadcasting.

Weight decay: dawenl's code adds an L2 term on the weight matrices to the batch-mean loss
(``lam * sum W**2``; lam = 0 for the Mult-VAE and 0.01 / batch_size for the Mult-DAE in its
notebook). Here that term is `l2_penalty` (``weight / 2 * sum W**2``, so weight = 2 * lam
reproduces it), added by the caller to the loss, or an optimizer's weight decay.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import distributions as dist
from genjax import random as grandom
from genjax.shapes import Shapes

# tf.nn.l2_normalize's epsilon: x / sqrt(max(sum x^2, eps)), so a row of zeros stays zero
_L2_EPS = 1e-12


def multinomial_log_likelihood(logits, x):
    """sum_i x_i * log softmax(logits)_i: logits [B, I], x [B, I] (click counts, usually
    0/1) -> [B]; nats.

    This is the multinomial log-pmf of the counts x with probabilities softmax(logits),
    without its count constant log(n! / prod_i x_i!) (n = sum_i x_i), which does not
    depend on the model: the paper's and dawenl's reconstruction term.
    """
    s = Shapes("losses.recommend.multinomial_log_likelihood")
    s("logits", logits, "B I")
    s("x", x, "B I")
    return _multinomial_log_likelihood(logits, x)


def _multinomial_log_likelihood(logits, x):
    return jnp.sum(x * jax.nn.log_softmax(logits, axis=-1), axis=-1)      # [B]


def beta_annealing(step, *, total_anneal_steps, anneal_cap):
    """The KL weight of the Mult-VAE after ``step`` updates: min(anneal_cap, step /
    total_anneal_steps), as dawenl's ``min(anneal_cap, update_count / total_anneal_steps)``
    (the paper: 200000 steps, cap 0.2). total_anneal_steps = 0 gives the cap from the
    start.

    Element-wise: step is a scalar or any array of steps (int or float), and every argument
    may be traced (jit / vmap over a sweep of caps). Returns float32 of step's shape.
    """
    step = jnp.asarray(step, jnp.float32)
    total = jnp.asarray(total_anneal_steps, jnp.float32)
    ramp = step / jnp.where(total > 0, total, 1.0)
    return jnp.where(total > 0, jnp.minimum(anneal_cap, ramp),
                     jnp.broadcast_to(jnp.asarray(anneal_cap, jnp.float32), step.shape))


def normalize_and_dropout(x, key, *, dropout_rate, train: bool = True):
    """The encoder's input: each row of x [B, I] scaled to unit L2 norm, then, when
    ``train``, inverted dropout on its entries (each kept with probability
    1 - dropout_rate and scaled by 1 / (1 - dropout_rate)), as dawenl's
    ``tf.nn.dropout(tf.nn.l2_normalize(x, 1), keep_prob)``. Returns [B, I].

    A row of zeros (a user with no fold-in items) stays zero, not NaN: the norm is floored
    at sqrt(1e-12) as in tf.nn.l2_normalize. dropout_rate is a scalar in [0, 1) and may be
    traced; ``train`` is a Python bool (static). ``key`` is unused (may be None) when
    train is False.
    """
    s = Shapes("losses.recommend.normalize_and_dropout")
    s("x", x, "B I")
    s("dropout_rate", dropout_rate, "")
    return _normalize_and_dropout(x, key, dropout_rate, train)


def _normalize_and_dropout(x, key, dropout_rate, train):
    x = jnp.asarray(x, jnp.result_type(x, jnp.float32))
    sq = jnp.sum(x * x, axis=-1, keepdims=True)                          # [B, 1]
    h = x * jax.lax.rsqrt(jnp.maximum(sq, _L2_EPS))                      # [B, I]
    if not train:
        return h
    keep = 1.0 - jnp.asarray(dropout_rate, h.dtype)
    mask = grandom.bernoulli(key, keep, h.shape)                         # [B, I]
    return jnp.where(mask, h / keep, jnp.zeros_like(h))


def _check_train(s: Shapes, train) -> None:
    if not isinstance(train, bool):
        s.fail(f"train = {train!r} must be a Python bool (static: it picks the sampled or "
               "the mean code and whether dropout applies)")


def mult_vae_loss(x, key, *, encode: Callable, decode_logits: Callable, beta,
                  dropout_rate=0.5, train: bool = True):
    """The Mult-VAE objective (the negative ELBO with a KL weight beta).

    x: [B, I] click counts. h = normalize_and_dropout(x); (mean, log_var) = encode(h),
    both [B, Z]; z = mean + exp(log_var / 2) * eps when ``train`` (one reparameterised
    sample), z = mean otherwise (dawenl's ``is_training`` switch; no dropout either);
    logits = decode_logits(z) [B, I].

    loss = mean_B[-multinomial_log_likelihood(logits, x) + beta * KL(q(z|x) || N(0, I))]
    (a scalar to minimise; the KL in closed form; beta may be traced, e.g. from
    `beta_annealing` or a sweep). Returns (loss, metrics) with batch means in nats:
    ``neg_ll`` and ``kl``, and ``beta``. The key is split into the dropout key and the
    sampling key; it is unused (may be None) when train is False.
    """
    s = Shapes("losses.recommend.mult_vae_loss")
    s("x", x, "B I")
    s("beta", beta, "")
    s("dropout_rate", dropout_rate, "")
    _check_train(s, train)
    k_drop, k_z = jax.random.split(key) if train else (None, None)
    h = _normalize_and_dropout(x, k_drop, dropout_rate, train)           # [B, I]
    encoded = encode(h)
    if not (isinstance(encoded, (tuple, list)) and len(encoded) == 2):
        s.fail(f"encode(h) must return a pair (mean [B, Z], log_var [B, Z]), got "
               f"{type(encoded).__name__}")
    mean, log_var = encoded
    s("encode(h)[0] (mean)", mean, "B Z")
    s("encode(h)[1] (log_var)", log_var, "B Z")
    z = dist.sample_normal_diag(k_z, mean, log_var) if train else mean   # [B, Z]
    logits = decode_logits(z)
    s("decode_logits(z)", logits, "B I")
    neg_ll = -_multinomial_log_likelihood(logits, x)                     # [B]
    kl = dist.normal_kl_to_standard(mean, log_var)                       # [B]
    loss = jnp.mean(neg_ll + beta * kl)
    return loss, {"neg_ll": jnp.mean(neg_ll), "kl": jnp.mean(kl),
                  "beta": jnp.asarray(beta, jnp.float32)}


def mult_dae_loss(x, key, *, encode: Callable, decode_logits: Callable, dropout_rate=0.5,
                  train: bool = True):
    """The Mult-DAE objective: the denoising autoencoder with the multinomial likelihood.

    x: [B, I] click counts. h = normalize_and_dropout(x) (the key is split as in
    `mult_vae_loss`, its first half being the dropout key, so both losses drop the same
    items for the same key); code = encode(h) [B, H], deterministic;
    logits = decode_logits(code) [B, I]. loss = mean_B[-multinomial_log_likelihood(
    logits, x)] (nats; no KL, so no beta; add `l2_penalty` for the paper's weight decay).
    Returns (loss, {"neg_ll": the same batch mean}). key is unused (may be None) when
    train is False.
    """
    s = Shapes("losses.recommend.mult_dae_loss")
    s("x", x, "B I")
    s("dropout_rate", dropout_rate, "")
    _check_train(s, train)
    k_drop = jax.random.split(key)[0] if train else None
    h = _normalize_and_dropout(x, k_drop, dropout_rate, train)           # [B, I]
    code = encode(h)
    s("encode(h) (code)", code, "B H")
    logits = decode_logits(code)
    s("decode_logits(code)", logits, "B I")
    neg_ll = jnp.mean(-_multinomial_log_likelihood(logits, x))
    return neg_ll, {"neg_ll": neg_ll}


def l2_penalty(params, *, weight):
    """weight / 2 * the sum of squares of the weight matrices in ``params`` (any pytree of
    arrays, e.g. the ``nnx.state`` of a `genjax.models.multvae` model): the leaves with
    at least 2 axes (dense kernels); biases (1 axis) and scalars are not penalised, as in
    dawenl's code, whose loss adds lam * sum W^2, i.e. this with weight = 2 * lam.
    Returns a scalar (add it to the batch-mean loss). weight may be traced.
    """
    leaves = [a for a in jax.tree_util.tree_leaves(params) if jnp.ndim(a) >= 2]
    total = sum((jnp.sum(jnp.square(a)) for a in leaves), jnp.zeros((), jnp.float32))
    return 0.5 * weight * total
