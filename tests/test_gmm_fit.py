"""Fitting mixtures (genjax.models.gmm, genjax.models.bernoulli_mixture): EM against
scikit-learn's EM from the same start, sampling, restarts, initialisation, bad input and
gradient-based maximum likelihood. Peer checks run in float64 (jax.enable_x64)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.mixture import GaussianMixture

from genjax.models import bernoulli_mixture as bm
from genjax.models import gmm
from genjax.train import init_state, make_train_step

COV_TYPES = ("full", "diag", "spherical")


def _blobs(n=600, dim=2, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    z = rng.integers(0, 3, n)
    scales = np.array([0.5, 1.0, 0.3])[z, None]
    return (centres[z] + rng.normal(size=(n, dim)) * scales).astype(np.float32)


def _precisions(params, cov_type):
    c = np.asarray(params.covariances, np.float64)
    return np.linalg.inv(c) if cov_type == "full" else 1.0 / c


@pytest.mark.parametrize("cov_type, dim", [("full", 2), ("full", 20), ("diag", 2),
                                           ("spherical", 20)])
def test_em_from_the_same_start_matches_sklearn(cov_type, dim):
    x = _blobs(dim=dim).astype(np.float64)
    with jax.enable_x64(True):
        xj = jnp.asarray(x)
        init = gmm.init_params(jax.random.key(3), xj, 4, covariance_type=cov_type)
        w = np.asarray(init.weights)
        sk = GaussianMixture(4, covariance_type=cov_type, tol=1e-3, reg_covar=1e-6,
                             max_iter=100, weights_init=w / w.sum(),
                             means_init=np.asarray(init.means),
                             precisions_init=_precisions(init, cov_type),
                             init_params="random_from_data").fit(x)
        r = jax.jit(lambda x, p: gmm.em(x, p, covariance_type=cov_type, tol=1e-3,
                                        max_iter=100))(xj, init)
        assert bool(r.converged) and sk.converged_
        assert int(r.n_iter) == sk.n_iter_
        assert float(r.log_likelihood) == pytest.approx(sk.score(x), abs=1e-4)
        assert float(r.lower_bound) == pytest.approx(sk.lower_bound_, abs=1e-4)
        np.testing.assert_allclose(np.asarray(r.params.means), sk.means_, atol=1e-4)
        np.testing.assert_allclose(np.asarray(r.params.covariances), sk.covariances_,
                                   atol=1e-4)


def test_em_never_decreases_the_likelihood():
    x = jnp.asarray(_blobs(300).astype(np.float64))
    with jax.enable_x64(True):
        init = gmm.init_params(jax.random.key(0), x, 5, method="random")
        em = jax.jit(lambda m: gmm.em(x, init, tol=1e-12, max_iter=m).log_likelihood)
        lls = [float(em(i)) for i in range(1, 8)]
    assert all(b >= a - 1e-10 for a, b in zip(lls, lls[1:])), lls


def test_sampling_follows_the_generative_process():
    params = gmm.GMMParams(jnp.array([0.2, 0.5, 0.3]),
                           jnp.array([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]]),
                           jnp.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, 0.0], [0.0, 2.0]],
                                      [[1.0, -0.8], [-0.8, 1.0]]]))
    n = 40_000
    x, z = gmm.sample(jax.random.key(0), params, n)
    x, z = np.asarray(x), np.asarray(z)
    freq = np.bincount(z, minlength=3) / n
    # component frequencies within 4 binomial standard deviations
    sd = np.sqrt(np.asarray(params.weights) * (1 - np.asarray(params.weights)) / n)
    assert np.all(np.abs(freq - np.asarray(params.weights)) < 4 * sd)
    for k in range(3):
        xk = x[z == k]
        np.testing.assert_allclose(xk.mean(0), params.means[k], atol=0.05)
        np.testing.assert_allclose(np.cov(xk.T), params.covariances[k], atol=0.08)
    # diag and spherical draws have the stated variances
    for cov_type, cov in (("diag", jnp.array([[0.25, 4.0]])), ("spherical", jnp.array([2.0]))):
        p = gmm.GMMParams(jnp.ones(1), jnp.zeros((1, 2)), cov)
        xs = np.asarray(gmm.sample(jax.random.key(1), p, n, covariance_type=cov_type)[0])
        expect = np.broadcast_to(np.asarray(cov[0]), (2,))
        np.testing.assert_allclose(xs.var(0), expect, rtol=0.05)


@pytest.mark.slow
def test_vmapped_restarts_equal_separate_fits_and_the_best_is_kept():
    # float64, so that batched and unbatched arithmetic cannot round a stopping decision
    # differently
    with jax.enable_x64(True):
        x = jnp.asarray(_blobs(400).astype(np.float64))
        best, results = gmm.fit_em(jax.random.key(7), x, 3, restarts=4, tol=1e-4)
        assert results.log_likelihood.shape == (4,)
        keys = jax.random.split(jax.random.key(7), 4)
        em = jax.jit(lambda p: gmm.em(x, p, tol=1e-4, max_iter=100))
        for i in range(4):
            single = em(gmm.init_params(keys[i], x, 3))
            assert float(single.log_likelihood) == pytest.approx(
                float(results.log_likelihood[i]), abs=1e-8)
            assert int(single.n_iter) == int(results.n_iter[i])
        assert float(best.log_likelihood) == float(results.log_likelihood.max())


def test_restarts_in_sequence_or_in_batches_equal_the_vmapped_ones():
    """restart_batch only schedules the work: 5 restarts one at a time, in batches of 2
    (the last one short) and all vmapped give the same fits (float64, as above)."""
    with jax.enable_x64(True):
        x = jnp.asarray(_blobs(300, dim=16).astype(np.float64))
        runs = [gmm.fit_em(jax.random.key(3), x, 3, restarts=5, tol=1e-4, restart_batch=b)
                for b in (1, 2, 5)]
        for best, results in runs[:2]:
            np.testing.assert_allclose(results.log_likelihood, runs[2][1].log_likelihood,
                                       rtol=0, atol=1e-8)
            np.testing.assert_array_equal(results.n_iter, runs[2][1].n_iter)
            np.testing.assert_allclose(best.params.means, runs[2][0].params.means, atol=1e-8)
    on_cpu = jax.default_backend() == "cpu"
    assert gmm.default_restart_batch(jnp.zeros((10, 64)), 16) == (1 if on_cpu else 16)
    assert gmm.default_restart_batch(jnp.zeros((10, 2)), 16) == 16


def test_kmeans_plusplus_never_picks_a_point_that_is_already_a_centre():
    # 500 copies of one point and a single far point: after the first centre, every copy
    # has distance 0, so the second centre must be the other location
    x = jnp.concatenate([jnp.zeros((500, 2)), jnp.array([[10.0, 10.0]])])
    for seed in range(5):
        idx = np.asarray(gmm.kmeans_plusplus(jax.random.key(seed), x, 2))
        assert sorted(np.asarray(x)[idx, 0].tolist()) == [0.0, 10.0]
    # more centres than distinct points: the extra ones are drawn uniformly, no NaN
    idx = gmm.kmeans_plusplus(jax.random.key(0), x, 4)
    assert np.all((np.asarray(idx) >= 0) & (np.asarray(idx) < 501))


@pytest.mark.parametrize("x, k, match", [
    (np.ones((3, 2), np.float32), 5, "larger than the 3 points"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, np.inf]], np.float32), 2,
     "2 NaN/inf values in 2 rows"),
    (np.ones((1, 2), np.float32), 1, "at least 2"),
    (np.ones((4,), np.float32), 2, r"\[N, D\]"),
])
def test_bad_input_is_a_clear_error(x, k, match):
    with pytest.raises(ValueError, match=match):
        gmm.fit_em(jax.random.key(0), x, k)
    with pytest.raises(ValueError, match=match):
        bm.fit_em(jax.random.key(0), x, k)


def test_duplicate_and_degenerate_points_stay_finite_thanks_to_reg_covar():
    # all points identical, and 2-D points on a line: every covariance is singular
    same = np.ones((60, 2), np.float32)
    line = np.stack([np.linspace(0, 1, 60), np.linspace(0, 1, 60)], 1).astype(np.float32)
    for x, types in ((same, ("full", "spherical")), (line, ("full",))):
        for cov_type in types:
            best, _ = gmm.fit_em(jax.random.key(0), x, 3, covariance_type=cov_type,
                                 restarts=2, reg_covar=1e-6)
            assert np.isfinite(float(best.log_likelihood))
            assert np.all(np.isfinite(np.asarray(best.params.covariances)))
            # a component on identical points is a spike of variance reg_covar
            if x is same:
                assert float(best.log_likelihood) > 5
    # without the regulariser it is a clear error, not a NaN result
    with pytest.raises(FloatingPointError, match="reg_covar"):
        gmm.fit_em(jax.random.key(0), same, 3, restarts=2, reg_covar=0.0)


def test_unconstrained_parameterisation_round_trips_and_gives_the_same_likelihood():
    x = jnp.asarray(_blobs(300))

    @partial(jax.jit, static_argnums=0)
    def round_trip(cov_type):
        p = gmm.init_params(jax.random.key(1), x, 3, covariance_type=cov_type)
        u = gmm.to_unconstrained(p, covariance_type=cov_type)
        return (p, gmm.from_unconstrained(u, covariance_type=cov_type),
                gmm.unconstrained_log_likelihood(x, u, covariance_type=cov_type),
                gmm.log_likelihood(x, p, covariance_type=cov_type))

    for cov_type in COV_TYPES:
        p, back, ll_u, ll = round_trip(cov_type)
        for a, b in zip(p, back):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(ll_u), np.asarray(ll), atol=1e-3)


@pytest.fixture(scope="module")
def em_optimum():
    x = jnp.asarray(_blobs(500))
    return x, gmm.fit_em(jax.random.key(0), x, 3, restarts=2, tol=1e-6, max_iter=500)[0]


def test_the_likelihood_gradient_vanishes_at_the_em_optimum(em_optimum):
    x, em_best = em_optimum
    u_em = gmm.to_unconstrained(em_best.params)
    g = jax.jit(jax.grad(lambda v: jnp.mean(gmm.unconstrained_log_likelihood(x, v))))(u_em)
    assert max(float(jnp.abs(a).max()) for a in jax.tree_util.tree_leaves(g)) < 1e-3


@pytest.mark.slow
def test_gradient_mle_with_the_shared_train_step_reaches_the_em_optimum(em_optimum):
    x, em_best = em_optimum
    # two restarts trained together from k-means++ starts, full batch, Adam
    inits = jax.vmap(lambda k: gmm.init_params(k, x, 3))(jax.random.split(jax.random.key(1), 2))
    u = jax.vmap(gmm.to_unconstrained)(inits)
    tx = optax.scale_by_adam()
    state = init_state(u, tx, {"lr": 0.05})
    step = make_train_step(gmm.make_mle_loss("full"), tx)

    @jax.jit
    def run(state):
        return jax.lax.scan(lambda s, _: step(s, x, jax.random.key(0)), state, None,
                            length=400)

    state, metrics = run(state)
    assert metrics["nll_best"][-1] < metrics["nll_best"][0]
    ll = jax.vmap(lambda v: jnp.mean(gmm.unconstrained_log_likelihood(x, v)))(state.params)
    assert float(ll.max()) == pytest.approx(float(em_best.log_likelihood), abs=2e-3)


def test_bernoulli_mixture_em_recovers_a_planted_mixture():
    d, k, n = 30, 3, 2000
    rng = np.random.default_rng(0)
    probs = np.where(rng.random((k, d)) < 0.5, 0.9, 0.1)
    truth = bm.BernoulliMixtureParams(jnp.array([0.5, 0.3, 0.2]),
                                      jnp.asarray(np.log(probs / (1 - probs)), jnp.float32))
    x, _ = bm.sample(jax.random.key(0), truth, n)
    best, res = bm.fit_em(jax.random.key(1), x, k, restarts=3, tol=1e-5, prior_count=0.0)
    true_ll = float(jnp.mean(bm.log_likelihood(x, truth)))
    # the MLE fits the sample at least as well as the truth, and not much better
    assert true_ll - 1e-3 <= float(best.log_likelihood) < true_ll + 0.1
    np.testing.assert_allclose(np.sort(np.asarray(best.params.weights)), [0.2, 0.3, 0.5],
                               atol=0.03)
    # the M-step is the closed form (sum_n r x + a) / (n_k + 2a)
    r = jax.nn.softmax(jax.random.normal(jax.random.key(2), (n, k)), -1)
    p = bm.m_step(x, r, prior_count=1.0)
    expect = (np.asarray(r).T @ np.asarray(x) + 1.0) / (np.asarray(r).sum(0)[:, None] + 2.0)
    np.testing.assert_allclose(np.asarray(jax.nn.sigmoid(p.logits)), expect, rtol=1e-4)
    with pytest.raises(ValueError, match=r"x in \[0, 1\]"):
        bm.fit_em(jax.random.key(0), np.asarray(x) * 2, 2)
