"""The GAN objectives against the mathematics: the optimal discriminator, the value
2 JSD - log 4, the gradients' closed forms, saturation, stability, the gradient penalty."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon

from genjax.losses import gan

B = 7
rng = np.random.default_rng(0)
LOGITS = jnp.asarray(rng.normal(scale=3.0, size=B), jnp.float32)
OTHER = jnp.asarray(rng.normal(scale=3.0, size=B), jnp.float32)


def _discrete_pair(seed, k, concentration=1.0):
    r = np.random.default_rng(seed)
    p = r.dirichlet(np.full(k, concentration))
    q = r.dirichlet(np.full(k, concentration))
    return p, q


@pytest.mark.parametrize("seed, k, conc", [(0, 2, 1.0), (1, 5, 1.0), (2, 20, 0.3),
                                           (3, 50, 5.0), (4, 10, 0.05)])
def test_value_at_the_optimal_discriminator_is_2jsd_minus_log4(seed, k, conc):
    # float64 so that the comparison is limited by the identity, not by rounding
    with jax.enable_x64():
        p, q = _discrete_pair(seed, k, conc)
        p, q = np.maximum(p, 1e-300), np.maximum(q, 1e-300)
        p, q = p / p.sum(), q / q.sum()
        logits = gan.optimal_discriminator_logits(jnp.log(p), jnp.log(q))
        # the discriminator of every support point, scored under both distributions
        v = gan.minimax_value(logits, logits, real_weights=jnp.asarray(p),
                              fake_weights=jnp.asarray(q))
        jsd = jensenshannon(p, q, base=math.e) ** 2        # scipy returns sqrt(JSD)
        np.testing.assert_allclose(float(v), 2 * jsd - math.log(4), rtol=1e-10, atol=1e-12)
        # D* = p / (p + q)
        np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(logits)), p / (p + q),
                                   rtol=1e-10)


def test_optimal_discriminator_maximises_the_value():
    p, q = _discrete_pair(7, 12)
    p32, q32 = jnp.asarray(p, jnp.float32), jnp.asarray(q, jnp.float32)

    def value(logits):
        return gan.minimax_value(logits, logits, real_weights=p32, fake_weights=q32)

    star = gan.optimal_discriminator_logits(jnp.log(p32), jnp.log(q32))
    # stationary: dV/dl_k = p_k (1 - D_k) - q_k D_k = 0 at D* = p / (p + q)
    np.testing.assert_allclose(np.asarray(jax.grad(value)(star)), 0.0, atol=1e-7)
    v_star = float(value(star))
    r = np.random.default_rng(1)
    for _ in range(20):                           # and a maximum: any other D is worse
        assert float(value(star + jnp.asarray(r.normal(size=12) * 0.5, jnp.float32))) < v_star


def test_value_bounds_identical_and_disjoint_distributions():
    p, _ = _discrete_pair(3, 6)
    pj = jnp.asarray(p, jnp.float32)
    # p_G = p_data: D* = 1/2 everywhere, V = -log 4 (the global minimum over G)
    star = gan.optimal_discriminator_logits(jnp.log(pj), jnp.log(pj))
    np.testing.assert_allclose(float(gan.minimax_value(star, star, real_weights=pj,
                                                       fake_weights=pj)), -math.log(4),
                               rtol=1e-6)
    # (nearly) disjoint supports: JSD = log 2, V = 0; finite although D* saturates
    real = jnp.full((4,), 60.0)                 # D = 1 - 1e-26 on the data
    fake = jnp.full((4,), -60.0)                # D = 1e-26 on the samples
    v = gan.minimax_value(real, fake)
    assert np.isfinite(float(v)) and abs(float(v)) < 1e-20


# ------------------------------------------------------------------ gradients vs logits

def _sig(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@pytest.mark.parametrize("name, fn, closed_form", [
    ("non_saturating", gan.generator_loss_non_saturating, lambda l: (_sig(l) - 1.0) / B),
    ("saturating", gan.generator_loss_saturating, lambda l: -_sig(l) / B),
    ("hinge_g", gan.hinge_generator_loss, lambda l: np.full(B, -1.0 / B)),
    ("wasserstein_g", gan.wasserstein_generator_loss, lambda l: np.full(B, -1.0 / B)),
])
def test_generator_loss_gradients_equal_their_closed_forms(name, fn, closed_form):
    np.testing.assert_allclose(np.asarray(jax.grad(fn)(LOGITS)), closed_form(LOGITS),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name, fn, d_real, d_fake", [
    # d/dl of softplus(-l) = sigmoid(l) - 1 ; of softplus(l) = sigmoid(l)
    ("bce", gan.discriminator_loss, lambda l: (_sig(l) - 1.0) / B, lambda l: _sig(l) / B),
    ("hinge", gan.hinge_discriminator_loss, lambda l: -(np.asarray(l) < 1.0).astype(float) / B,
     lambda l: (np.asarray(l) > -1.0).astype(float) / B),
    ("wasserstein", gan.wasserstein_critic_loss, lambda l: np.full(B, -1.0 / B),
     lambda l: np.full(B, 1.0 / B)),
])
def test_discriminator_loss_gradients_equal_their_closed_forms(name, fn, d_real, d_fake):
    g_real, g_fake = jax.grad(fn, argnums=(0, 1))(LOGITS, OTHER)
    np.testing.assert_allclose(np.asarray(g_real), d_real(LOGITS), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.asarray(g_fake), d_fake(OTHER), rtol=1e-5, atol=1e-7)


def test_losses_equal_the_textbook_formulas():
    d_real, d_fake = _sig(LOGITS), _sig(OTHER)
    np.testing.assert_allclose(float(gan.discriminator_loss(LOGITS, OTHER)),
                               -np.mean(np.log(d_real)) - np.mean(np.log(1 - d_fake)),
                               rtol=1e-5)
    np.testing.assert_allclose(float(gan.generator_loss_saturating(OTHER)),
                               np.mean(np.log(1 - d_fake)), rtol=1e-5)
    np.testing.assert_allclose(float(gan.generator_loss_non_saturating(OTHER)),
                               -np.mean(np.log(d_fake)), rtol=1e-5)
    np.testing.assert_allclose(float(gan.hinge_discriminator_loss(LOGITS, OTHER)),
                               np.mean(np.maximum(0, 1 - np.asarray(LOGITS)))
                               + np.mean(np.maximum(0, 1 + np.asarray(OTHER))), rtol=1e-6)


def test_non_saturating_gradient_is_larger_when_d_rejects_fakes_confidently():
    # D(G(z)) = sigmoid(-8) = 3.4e-4: the saturating loss's gradient nearly vanishes
    confident = jnp.full((B,), -8.0)
    g_sat = np.asarray(jax.grad(gan.generator_loss_saturating)(confident))
    g_ns = np.asarray(jax.grad(gan.generator_loss_non_saturating)(confident))
    assert np.all(np.abs(g_ns) > 1000 * np.abs(g_sat))
    np.testing.assert_allclose(np.abs(g_ns), (1 - _sig(-8.0)) / B, rtol=1e-6)
    # the two differ in size by (1 - D) / D: larger for every D < 1/2, smaller above
    logits = jnp.linspace(-6.0, 6.0, 13)
    r = np.abs(np.asarray(jax.grad(gan.generator_loss_non_saturating)(logits))) / np.abs(
        np.asarray(jax.grad(gan.generator_loss_saturating)(logits)))
    np.testing.assert_allclose(r, np.exp(-np.asarray(logits)), rtol=1e-4)
    # both push the same way: towards larger D(G(z))
    assert np.all(np.sign(g_sat) == np.sign(g_ns))


def test_non_saturating_generator_learns_where_saturating_stalls():
    """A 1-D generator x = theta + z against a fixed discriminator that rejects x near 0
    (logit = 4 x - 8, so D(G(z)) ~ 3e-4 at theta = 0): the gradient in theta."""
    z = jnp.asarray(np.random.default_rng(0).normal(scale=0.1, size=64), jnp.float32)
    logit = lambda theta: 4.0 * (theta + z) - 8.0                      # noqa: E731
    g_sat = float(jax.grad(lambda t: gan.generator_loss_saturating(logit(t)))(0.0))
    g_ns = float(jax.grad(lambda t: gan.generator_loss_non_saturating(logit(t)))(0.0))
    assert g_ns < 0 and g_sat < 0                    # both move theta towards the data
    assert abs(g_ns) > 500 * abs(g_sat)
    np.testing.assert_allclose(g_ns, -4.0 * np.mean(1 - _sig(np.asarray(logit(0.0)))),
                               rtol=1e-5)


def test_extreme_logits_give_finite_losses_and_gradients():
    extreme = jnp.asarray([-1e4, -100.0, 0.0, 100.0, 1e4], jnp.float32)
    for fn in (gan.generator_loss_saturating, gan.generator_loss_non_saturating):
        assert np.isfinite(float(fn(extreme)))
        assert np.all(np.isfinite(np.asarray(jax.grad(fn)(extreme))))
    val, grads = jax.value_and_grad(gan.discriminator_loss, argnums=(0, 1))(extreme, extreme)
    assert np.isfinite(float(val)) and all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    # the naive formula overflows where the log-sigmoid form does not
    with np.errstate(divide="ignore", over="ignore"):
        assert not np.isfinite(np.log(1.0 / (1.0 + np.exp(np.float32(1e4)))))
    np.testing.assert_allclose(float(gan.log_d(jnp.float32(-1e4))), -1e4, rtol=1e-6)
    np.testing.assert_allclose(float(gan.log_one_minus_d(jnp.float32(1e4))), -1e4, rtol=1e-6)


# ---------------------------------------------------------------------- gradient penalty

def test_gradient_penalty_of_linear_and_quadratic_critics():
    key = jax.random.key(0)
    real = jax.random.normal(jax.random.key(1), (16, 3, 2))
    fake = jax.random.normal(jax.random.key(2), (16, 3, 2))
    w = jax.random.normal(jax.random.key(3), (3, 2))
    linear = lambda x: jnp.sum(x * w, axis=(1, 2))                      # noqa: E731
    # a linear critic's gradient is w everywhere: penalty (||w|| - 1)^2
    np.testing.assert_allclose(float(gan.gradient_penalty(linear, real, fake, key)),
                               (float(jnp.linalg.norm(w)) - 1.0) ** 2, rtol=1e-5)
    unit = lambda x: jnp.sum(x * w / jnp.linalg.norm(w), axis=(1, 2))  # noqa: E731
    assert float(gan.gradient_penalty(unit, real, fake, key)) < 1e-9
    # f(x) = ||x||^2 / 2 has gradient x_hat = real + u (fake - real), u ~ U[0, 1]
    quad = lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2))                 # noqa: E731
    u = jax.random.uniform(key, (16, 1, 1))
    x_hat = np.asarray(real + u * (fake - real)).reshape(16, -1)
    expected = np.mean((np.linalg.norm(x_hat, axis=1) - 1.0) ** 2)
    np.testing.assert_allclose(float(gan.gradient_penalty(quad, real, fake, key)), expected,
                               rtol=1e-5)


def test_objectives_pair_the_right_losses():
    for name in gan.OBJECTIVES:
        d_loss, g_loss = gan.objective(name)
        assert np.isfinite(float(d_loss(LOGITS, OTHER))) and np.isfinite(float(g_loss(OTHER)))
    assert gan.objective("minimax")[1] is gan.generator_loss_saturating
    assert gan.objective("non_saturating")[1] is gan.generator_loss_non_saturating
    assert gan.objective("minimax")[0] is gan.objective("non_saturating")[0]
    with pytest.raises(ValueError, match="unknown GAN objective"):
        gan.objective("wgan")
