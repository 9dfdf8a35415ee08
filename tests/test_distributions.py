"""Closed-form densities and KLs against independent computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax import distributions as dist


def test_kl_to_standard_is_zero_at_the_prior_and_positive_elsewhere():
    z = jnp.zeros((5, 7))
    np.testing.assert_array_equal(dist.normal_kl_to_standard(z, z), np.zeros(5))
    mean = jax.random.normal(jax.random.key(0), (5, 7))
    log_var = 0.3 * jax.random.normal(jax.random.key(1), (5, 7))
    kl = dist.normal_kl_to_standard(mean, log_var)
    assert kl.shape == (5,) and bool(jnp.all(kl > 0))


def test_kl_to_standard_equals_the_general_kl_with_a_standard_p():
    mean = jax.random.normal(jax.random.key(0), (4, 3))
    log_var = jax.random.normal(jax.random.key(1), (4, 3))
    np.testing.assert_allclose(dist.normal_kl_to_standard(mean, log_var),
                               dist.normal_kl(mean, log_var, 0.0, 0.0), rtol=1e-6)


def test_closed_form_kl_matches_a_large_sample_monte_carlo_estimate():
    kq, kp, ks = jax.random.split(jax.random.key(3), 3)
    mq, lq = jax.random.normal(kq, (2, 3, 4))
    mp, lp = 0.5 * jax.random.normal(kp, (2, 3, 4))
    n = 400_000
    z = dist.sample_normal_diag(ks, mq, lq, (n,))                      # [n, 3, 4]
    log_ratio = dist.log_normal_diag(z, mq, lq) - dist.log_normal_diag(z, mp, lp)  # [n, 3]
    mc, se = log_ratio.mean(0), log_ratio.std(0) / np.sqrt(n)
    exact = dist.normal_kl(mq, lq, mp, lp)
    assert np.all(np.abs(np.asarray(mc - exact)) < 6 * np.asarray(se) + 1e-4)


def test_log_normal_diag_matches_scipy():
    rng = np.random.default_rng(0)
    x, m = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    lv = rng.normal(size=(6, 5))
    expect = stats.norm.logpdf(x, m, np.exp(0.5 * lv)).sum(-1)
    np.testing.assert_allclose(dist.log_normal_diag(jnp.array(x), m, lv), expect, rtol=1e-5)
    np.testing.assert_allclose(dist.log_standard_normal(jnp.array(x)),
                               stats.norm.logpdf(x).sum(-1), rtol=1e-5)


@pytest.mark.parametrize("event_ndim", [1, 3])
def test_log_bernoulli_matches_direct_formula_and_is_stable(event_ndim):
    rng = np.random.default_rng(1)
    shape = (4, 6) if event_ndim == 1 else (4, 2, 3, 1)
    x = (rng.uniform(size=shape) < 0.5).astype(np.float32)
    logits = rng.normal(size=shape).astype(np.float32) * 3
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    expect = (x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(4, -1).sum(-1)
    np.testing.assert_allclose(dist.log_bernoulli_logits(x, logits, event_ndim), expect,
                               rtol=1e-5)
    big = dist.log_bernoulli_logits(jnp.ones((1, 1)), jnp.full((1, 1), -200.0))
    np.testing.assert_allclose(big, [-200.0], rtol=1e-6)          # no log(0) = -inf


def test_reparameterised_samples_have_the_right_moments_and_gradients():
    mean, log_var = jnp.array([[1.0, -2.0]]), jnp.log(jnp.array([[0.25, 4.0]]))
    z = dist.sample_normal_diag(jax.random.key(0), mean, log_var, (200_000,))
    np.testing.assert_allclose(z.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(z.var(0), jnp.exp(log_var), rtol=0.02)
    g = jax.grad(lambda m: dist.sample_normal_diag(jax.random.key(1), m, log_var).sum())(mean)
    np.testing.assert_allclose(g, np.ones((1, 2)))
