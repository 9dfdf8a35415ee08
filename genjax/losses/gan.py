"""GAN objectives as pure functions of discriminator logits.

The discriminator outputs a logit l(x); D(x) = sigmoid(l(x)) is the probability that x
is real. The lectures' minimax game (Goodfellow et al., 2014) is

    min_G max_D V(D, G) = E_data[log D(x)] + E_z[log(1 - D(G(z)))]

and for a fixed G the best discriminator is D*(x) = p_data(x) / (p_data(x) + p_G(x)),
whose logit is log p_data(x) - log p_G(x) (`optimal_discriminator_logits`). Plugged in,
V(D*, G) = 2 JSD(p_data || p_G) - log 4, minimised (at -log 4) by p_G = p_data.

Everything is computed from logits with log-sigmoid identities, so nothing overflows or
underflows to log(0) however confident D is:

    log D(x)       = log sigmoid(l)      = -softplus(-l)
    log(1 - D(x))  = log sigmoid(-l)     = -softplus(l)

Shapes: ``real_logits`` [B] (D on data), ``fake_logits`` [B'] (D on generator samples).
Every loss is a scalar to *minimise*: the mean over the batch (per-example terms, then
``jnp.mean``), in nats. The ``*_weights`` arguments replace the batch mean by an
expectation under given probabilities ([B], summing to 1): with a discrete support they
give exact expectations (the tests use them to check V(D*, G) = 2 JSD - log 4).
These shapes are checked at trace time (`genjax.shapes`): a discriminator that returns
[B, 1] raises a ``ValueError`` (squeeze it to [B]) instead of, with weights [B], silently
broadcasting to a [B, B] sum.

Generator losses:

* ``saturating``  E_z[log(1 - D(G(z)))], the minimax game's own term. Its gradient with
  respect to the fake logit is -sigmoid(l), which vanishes when D rejects fakes
  confidently (l << 0): early in training G learns nothing.
* ``non_saturating``  -E_z[log D(G(z))]: the same fixed point, gradient sigmoid(l) - 1,
  close to -1 exactly when D rejects fakes (Goodfellow et al.'s practical choice).

Further objectives: the hinge loss (Lim & Ye 2017; Miyato et al. 2018) and the Wasserstein
critic with gradient penalty (WGAN-GP, Gulrajani et al. 2017). `OBJECTIVES` names the
(discriminator loss, generator loss) pairs `objective` returns.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax import numerics
from genjax.shapes import Shapes

OBJECTIVES = ("non_saturating", "minimax", "hinge", "wgan_gp")


def _check_logits(where, real_logits=None, fake_logits=None, real_weights=None,
                  fake_weights=None, *, fake_weights_name="fake_weights"):
    """real_logits [B], fake_logits [B'], real_weights [B], fake_weights [B'] (None: not an
    argument)."""
    s = Shapes(where)
    if real_logits is not None:
        s("real_logits", real_logits, "B")
    if fake_logits is not None:
        s("fake_logits", fake_logits, "B'")
    if real_weights is not None:
        s("real_weights", real_weights, "B")
    if fake_weights is not None:
        s(fake_weights_name, fake_weights, "B'")


def _mean(v, weights=None):
    """Batch mean of per-example terms [B], or the expectation sum_b w_b v_b."""
    return jnp.mean(v) if weights is None else jnp.sum(weights * v)


# ------------------------------------------------------------------ element-wise terms

def log_d(logits):
    """log D(x) = log sigmoid(l) = -softplus(-l), element-wise; finite for any l."""
    return numerics.log_sigmoid(logits)


def log_one_minus_d(logits):
    """log(1 - D(x)) = log sigmoid(-l) = -softplus(l), element-wise; finite for any l."""
    return numerics.log_sigmoid(-logits)


def optimal_discriminator_logits(log_p_data, log_p_model):
    """The logit of D*(x) = p_data(x) / (p_data(x) + p_G(x)): log p_data(x) - log p_G(x).
    Element-wise over points x (any shape, the same for both)."""
    s = Shapes("losses.gan.optimal_discriminator_logits")
    s("log_p_data", log_p_data, "*P")
    s("log_p_model", log_p_model, "*P")
    return log_p_data - log_p_model


# ------------------------------------------------------------------- the minimax game

def minimax_value(real_logits, fake_logits, *, real_weights=None, fake_weights=None):
    """V(D, G) = E_data[log D(x)] + E_G[log(1 - D(x))] in nats (a scalar, at most 0).
    real_logits [B], fake_logits [B']; the weights turn batch means into expectations."""
    _check_logits("losses.gan.minimax_value", real_logits, fake_logits, real_weights,
                  fake_weights)
    return (_mean(log_d(real_logits), real_weights)
            + _mean(log_one_minus_d(fake_logits), fake_weights))


def discriminator_loss(real_logits, fake_logits, *, real_weights=None, fake_weights=None):
    """-V(D, G) = mean_B[softplus(-l_real)] + mean_B'[softplus(l_fake)]: the binary
    cross-entropy of D labelling data 1 and samples 0 (sum of the two batch means).
    real_logits [B], fake_logits [B'], optional real_weights [B], fake_weights [B']."""
    _check_logits("losses.gan.discriminator_loss", real_logits, fake_logits, real_weights,
                  fake_weights)
    return -minimax_value(real_logits, fake_logits, real_weights=real_weights,
                          fake_weights=fake_weights)


def generator_loss_saturating(fake_logits, *, weights=None):
    """E_G[log(1 - D(x))] = -mean_B[softplus(l_fake)], the minimax game's term that G
    minimises. d/dl = -sigmoid(l): vanishes as D(G(z)) -> 0. fake_logits [B'], optional
    weights [B']."""
    _check_logits("losses.gan.generator_loss_saturating", fake_logits=fake_logits,
                  fake_weights=weights, fake_weights_name="weights")
    return _mean(log_one_minus_d(fake_logits), weights)


def generator_loss_non_saturating(fake_logits, *, weights=None):
    """-E_G[log D(x)] = mean_B[softplus(-l_fake)]. d/dl = sigmoid(l) - 1: close to -1
    when D rejects the fakes confidently, where the saturating loss gives ~0.
    fake_logits [B'], optional weights [B']."""
    _check_logits("losses.gan.generator_loss_non_saturating", fake_logits=fake_logits,
                  fake_weights=weights, fake_weights_name="weights")
    return -_mean(log_d(fake_logits), weights)


# --------------------------------------------------------------------------- hinge

def hinge_discriminator_loss(real_logits, fake_logits):
    """mean_B[relu(1 - l_real)] + mean_B'[relu(1 + l_fake)] (geometric GAN / SN-GAN).
    real_logits [B], fake_logits [B']."""
    _check_logits("losses.gan.hinge_discriminator_loss", real_logits, fake_logits)
    return jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))


def hinge_generator_loss(fake_logits):
    """-mean_B'[l_fake]; fake_logits [B']."""
    _check_logits("losses.gan.hinge_generator_loss", fake_logits=fake_logits)
    return -jnp.mean(fake_logits)


# ------------------------------------------------------------------------ WGAN-GP

def wasserstein_critic_loss(real_logits, fake_logits):
    """mean_B'[f(fake)] - mean_B[f(real)]: minus the critic's estimate of the Wasserstein-1
    distance (the outputs f are unbounded scores, called logits here for uniformity).
    real_logits [B], fake_logits [B']."""
    _check_logits("losses.gan.wasserstein_critic_loss", real_logits, fake_logits)
    return jnp.mean(fake_logits) - jnp.mean(real_logits)


def wasserstein_generator_loss(fake_logits):
    """-mean_B'[f(fake)]; fake_logits [B']."""
    _check_logits("losses.gan.wasserstein_generator_loss", fake_logits=fake_logits)
    return -jnp.mean(fake_logits)


def gradient_penalty(critic: Callable, real, fake, key):
    """mean_B[(||grad_x f(x_hat)||_2 - 1)^2] at x_hat = real + u (fake - real), u ~ U[0, 1]
    per example (Gulrajani et al. 2017). real, fake: [B, *E]; critic(x [B, *E]) -> [B]
    must treat examples independently (no batch statistics), so that the gradient of the
    summed outputs is each example's own gradient."""
    s = Shapes("losses.gan.gradient_penalty")
    s("real", real, "B *E")
    s("fake", fake, "B *E")
    u = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1))
    x_hat = real + u * (fake - real)                                    # [B, *E]

    def total(x):
        out = critic(x)
        s("critic(x_hat)", out, "B")
        return jnp.sum(out)

    grads = jax.grad(total)(x_hat)                                      # [B, *E]
    norms = jnp.sqrt(jnp.sum(grads.reshape(len(grads), -1) ** 2, -1) + 1e-12)   # [B]
    return jnp.mean((norms - 1.0) ** 2)


# ------------------------------------------------------------------------- pairing

def objective(name: str):
    """(discriminator loss, generator loss) of the objective ``name`` (`OBJECTIVES`):
    d_loss(real_logits, fake_logits) -> scalar, g_loss(fake_logits) -> scalar. For
    "wgan_gp" the gradient penalty is added by the caller (it needs the critic)."""
    pairs = {
        "non_saturating": (discriminator_loss, generator_loss_non_saturating),
        "minimax": (discriminator_loss, generator_loss_saturating),
        "hinge": (hinge_discriminator_loss, hinge_generator_loss),
        "wgan_gp": (wasserstein_critic_loss, wasserstein_generator_loss),
    }
    if name not in pairs:
        raise ValueError(f"unknown GAN objective {name!r}; expected one of {OBJECTIVES}")
    return pairs[name]
