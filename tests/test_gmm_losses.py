"""The pure mixture log-likelihoods (genjax.losses.gmm) against scikit-learn, scipy and
brute-force sums. Peer checks run in float64 (jax.enable_x64) so that a 1e-5 agreement
tests the formulas, not float32 rounding; the float32 path is checked at its own tolerance.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture

from genjax.losses import gmm as L

COV_TYPES = ("full", "diag", "spherical")


def _data(dim=3, n=400, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n // 2, dim)) @ rng.normal(size=(dim, dim)) + 2.0
    b = rng.normal(size=(n - n // 2, dim)) * 0.5 - 1.0
    return np.concatenate([a, b])


def _sklearn(x, cov_type, k=4):
    return GaussianMixture(k, covariance_type=cov_type, random_state=0, max_iter=20).fit(x)


@pytest.mark.parametrize("cov_type", COV_TYPES)
@pytest.mark.parametrize("dim", [2, 20])        # both code paths (element-wise, lax.map)
def test_log_likelihood_equals_sklearn_score_samples(cov_type, dim):
    x = _data(dim)
    sk = _sklearn(x, cov_type)
    with jax.enable_x64(True):
        ll = L.log_likelihood(jnp.asarray(x), sk.weights_, sk.means_, sk.covariances_,
                              covariance_type=cov_type)
        chex.assert_shape(ll, (len(x),))
        np.testing.assert_allclose(np.asarray(ll), sk.score_samples(x), atol=1e-5, rtol=0)
        pc = L.precision_cholesky(jnp.asarray(sk.covariances_), cov_type)
        np.testing.assert_allclose(np.asarray(pc), sk.precisions_cholesky_, atol=1e-8)
    # float32 (the default): the same to float32 accuracy
    ll32 = L.log_likelihood(jnp.asarray(x, jnp.float32),
                            *(jnp.asarray(v, jnp.float32) for v in
                              (sk.weights_, sk.means_, sk.covariances_)),
                            covariance_type=cov_type)
    np.testing.assert_allclose(np.asarray(ll32), sk.score_samples(x), rtol=1e-4, atol=1e-3)


def test_log_likelihood_equals_scipy_sum_of_densities():
    rng = np.random.default_rng(1)
    k, d = 3, 2
    w = rng.dirichlet(np.ones(k))
    mu = rng.normal(size=(k, d))
    a = rng.normal(size=(k, d, d))
    cov = a @ a.transpose(0, 2, 1) + 0.1 * np.eye(d)
    x = rng.normal(size=(50, d)) * 2
    expect = np.log(sum(w[j] * stats.multivariate_normal(mu[j], cov[j]).pdf(x)
                        for j in range(k)))
    with jax.enable_x64(True):
        got = L.log_likelihood(jnp.asarray(x), w, mu, cov, covariance_type="full")
    np.testing.assert_allclose(np.asarray(got), expect, rtol=1e-10)


def test_responsibilities_are_bayes_rule_and_elbo_is_tight_at_the_posterior():
    x = _data(2, n=200)
    sk = _sklearn(x, "full", k=3)
    with jax.enable_x64(True):
        args = (jnp.asarray(x), sk.weights_, sk.means_, sk.covariances_)
        r = L.responsibilities(*args)
        np.testing.assert_allclose(np.asarray(r), sk.predict_proba(x), atol=1e-10)
        np.testing.assert_allclose(np.asarray(r.sum(-1)), 1.0, atol=1e-12)
        log_px = L.log_likelihood(*args)
        # ELBO = log p(x) exactly at q = p(z | x)
        np.testing.assert_allclose(np.asarray(L.elbo(args[0], r, *args[1:])),
                                   np.asarray(log_px), atol=1e-10)
        # any other q: log p(x) - ELBO = KL(q || p(z | x)) > 0
        q = jax.nn.softmax(jax.random.normal(jax.random.key(0), r.shape, jnp.float64), -1)
        gap = log_px - L.elbo(args[0], q, *args[1:])
        kl = jnp.sum(q * (jnp.log(q) - jnp.log(r)), -1)
        np.testing.assert_allclose(np.asarray(gap), np.asarray(kl), atol=1e-8)
        assert float(gap.min()) > 0
        # a one-hot q (zeros allowed: 0 log 0 = 0) gives log p(x, z = argmax)
        hard = jax.nn.one_hot(jnp.argmax(r, -1), 3, dtype=jnp.float64)
        lj = L.log_joint(*args)
        np.testing.assert_allclose(np.asarray(L.elbo(args[0], hard, *args[1:])),
                                   np.asarray(jnp.max(lj, -1)), atol=1e-10)


def test_precision_cholesky_inverts_the_covariance():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 20, 20))
    cov = a @ a.transpose(0, 2, 1) + np.eye(20)
    with jax.enable_x64(True):
        u = np.asarray(L.precision_cholesky(jnp.asarray(cov), "full"))
    np.testing.assert_allclose(u @ u.transpose(0, 2, 1), np.linalg.inv(cov), atol=1e-10)
    np.testing.assert_array_equal(np.tril(u, -1), 0.0)       # upper triangular


def test_singular_covariance_is_nan_not_a_number_that_looks_valid():
    cov = np.zeros((1, 2, 2), np.float32)                      # a point mass
    ll = L.log_likelihood(jnp.zeros((3, 2)), jnp.ones(1), jnp.zeros((1, 2)), cov)
    assert not np.isfinite(np.asarray(ll)).any()


def test_unknown_covariance_type_is_an_error():
    with pytest.raises(ValueError, match="covariance_type"):
        L.log_likelihood(jnp.zeros((3, 2)), jnp.ones(1), jnp.zeros((1, 2)), jnp.ones(1),
                         covariance_type="tied")


def test_bernoulli_mixture_is_normalised_and_equals_a_brute_force_sum():
    d, k = 5, 3
    rng = np.random.default_rng(3)
    w = rng.dirichlet(np.ones(k))
    logits = rng.normal(size=(k, d)) * 2
    xs = np.array(list(itertools.product([0.0, 1.0], repeat=d)))          # all 2^D
    with jax.enable_x64(True):
        ll = np.asarray(L.bernoulli_mixture_log_likelihood(jnp.asarray(xs), w, logits))
    assert logsumexp(ll) == pytest.approx(0.0, abs=1e-12)                  # sums to one
    p = 1 / (1 + np.exp(-logits))
    brute = np.log([sum(w[j] * np.prod(np.where(x == 1, p[j], 1 - p[j])) for j in range(k))
                    for x in xs])
    np.testing.assert_allclose(ll, brute, rtol=1e-10)
