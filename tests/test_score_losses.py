"""Score-matching objectives against mathematics: on Gaussian data (whose noisy scores are
known) DSM's minimiser is the true noisy score and its per-level value is closed form;
Vincent's identity DSM(s) = 0.5 sigma^2 E||s - s*||^2 + const; sliced score matching
equals exact score matching in expectation over the projections; exact score matching
equals an independent Jacobian and its minimiser is the sample Gaussian's score; and
energy models' scores (-grad E) differentiate through all of them."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from genjax.losses import score as S

MU = np.array([0.5, -1.0])
SIGMA = np.array([[1.0, 0.6], [0.6, 0.8]])                    # correlated 2-D Gaussian
CHOL = np.linalg.cholesky(SIGMA)
SIGMAS = S.geometric_sigmas(2.0, 0.1, 3)                        # [2, 0.447, 0.1]
L = len(SIGMAS)


def _data(key, n):
    return jnp.asarray(MU, jnp.float32) + jax.random.normal(key, (n, 2)) @ jnp.asarray(CHOL.T,
                                                                                      jnp.float32)


def _affine(params):
    """s(x, i) = A_i x + b_i: params (A [L, 2, 2], b [L, 2])."""
    A, b = params
    return lambda x, level: jnp.einsum("bij,bj->bi", A[level], x) + b[level]


def _true_params():
    """The score of N(mu, Sigma + sigma_i^2 I): A_i = -(Sigma + sigma_i^2 I)^-1, b_i = -A_i mu."""
    A = np.stack([-np.linalg.inv(SIGMA + s**2 * np.eye(2)) for s in SIGMAS.astype(np.float64)])
    return A, -A @ MU


def _f32(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), tree)


def _close_in_expectation(a, b, n_se=4.5):
    """a, b: replicates [K, ...] of two estimators of the same expectation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), n_se * se + 1e-7)
    return se


def test_geometric_sigmas():
    s = S.geometric_sigmas(50.0, 0.01, 10)
    assert s.dtype == np.float32 and s.shape == (10,)
    np.testing.assert_allclose([s[0], s[-1]], [50.0, 0.01], rtol=1e-6)
    ratios = s[1:] / s[:-1]
    np.testing.assert_allclose(ratios, np.full(9, (0.01 / 50) ** (1 / 9)), rtol=1e-5)
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        S.geometric_sigmas(0.1, 1.0, 3)


def test_dsm_minimiser_is_the_true_noisy_score():
    """The DSM loss is quadratic in an affine model's (A_i, b_i): one Newton step from the
    true values gives the sample minimiser. Over independent replicates, the gradient at
    the true values averages to zero and the minimiser to the true values (DSM's variance
    grows as sigma falls: the target -z / sigma is noisy; hence the large batches)."""
    flat_star, unravel = ravel_pytree(_f32(_true_params()))

    @jax.jit
    @jax.vmap
    def replicate(key):
        kx, kl = jax.random.split(key)
        x = _data(kx, 20000)
        f = lambda p: S.denoising_score_matching(x, kl, score_fn=_affine(unravel(p)),  # noqa: E731
                                                 sigmas=SIGMAS)[0]
        g, H = jax.grad(f)(flat_star), jax.hessian(f)(flat_star)
        return g, flat_star - jnp.linalg.solve(H, g)

    g, est = replicate(jax.random.split(jax.random.key(0), 16))
    zeros = np.zeros_like(np.asarray(g))
    se_g = _close_in_expectation(g, zeros)
    se_est = _close_in_expectation(est, np.broadcast_to(flat_star, est.shape))
    # the test has power: a few percent of each parameter's scale
    assert np.all(se_est < 0.03 * (1 + np.abs(flat_star))) and np.all(se_g < 0.01), se_est

    # and the loss at the true score is below its value at perturbed scores (same draws)
    x, key = _data(jax.random.key(1), 20000), jax.random.key(2)
    loss = jax.jit(lambda p: S.denoising_score_matching(x, key, score_fn=_affine(unravel(p)),
                                                        sigmas=SIGMAS)[0])
    best = float(loss(flat_star))
    for i, d in enumerate(jax.random.normal(jax.random.key(3), (4,) + flat_star.shape)):
        assert best < float(loss(flat_star + 0.2 * d / jnp.linalg.norm(d))), i


def _noisy(key, n):
    """Exact draws of (x_noisy, level, sigma) with the level uniform."""
    kx, kl, kz = jax.random.split(key, 3)
    level = jax.random.randint(kl, (n,), 0, L)
    sigma = jnp.asarray(SIGMAS)[level][:, None]
    return _data(kx, n) + sigma * jax.random.normal(kz, (n, 2)), level, sigma


def test_vincent_identity_dsm_differences_are_explicit_score_differences():
    """E DSM(s) = 0.5 E sigma^2 ||s - s*||^2 + const: the difference of two models' DSM
    losses (same draws) equals the difference of their weighted explicit errors against
    the true noisy score (estimated from independent exact noisy samples)."""
    star = _affine(_f32(_true_params()))
    w = jax.random.normal(jax.random.key(4), (2, 2))
    A1, b1 = _f32(_true_params())
    s1 = lambda x, l: star(x, l) + 0.3 * jnp.tanh(x @ w)                   # noqa: E731
    s2 = _affine((A1 + 0.1 * jnp.eye(2), b1 - 0.2))

    @jax.jit
    @jax.vmap
    def replicate(key):
        k1, k2, k3 = jax.random.split(key, 3)
        x = _data(k1, 2000)
        lhs = (S.denoising_score_matching(x, k2, score_fn=s1, sigmas=SIGMAS)[0]
               - S.denoising_score_matching(x, k2, score_fn=s2, sigmas=SIGMAS)[0])
        xn, level, sigma = _noisy(k3, 2000)
        err = lambda s: jnp.sum((sigma * (s(xn, level) - star(xn, level))) ** 2, -1)  # noqa: E731
        return lhs, 0.5 * jnp.mean(err(s1) - err(s2))

    lhs, rhs = replicate(jax.random.split(jax.random.key(5), 32))
    se = _close_in_expectation(lhs, rhs)
    assert se < 0.1 * abs(float(rhs.mean())), (se, rhs.mean())           # the test has power


def test_dsm_per_level_at_the_true_score_is_closed_form():
    """At the true score, E 0.5 || sigma s* + z ||^2 = 0.5 (D - sigma^2 tr((Sigma +
    sigma^2 I)^-1)) at each level; DSM's loss averages the levels."""
    star = _affine(_f32(_true_params()))
    sig = SIGMAS.astype(np.float64)
    want = 0.5 * np.array([2 - s**2 * np.trace(np.linalg.inv(SIGMA + s**2 * np.eye(2)))
                           for s in sig])

    @jax.jit
    @jax.vmap
    def replicate(key):
        k1, k2 = jax.random.split(key)
        x = _data(k1, 2000)
        return (S.dsm_per_level(x, k2, score_fn=star, sigmas=SIGMAS),
                S.denoising_score_matching(x, k2, score_fn=star, sigmas=SIGMAS)[0])

    per, dsm = replicate(jax.random.split(jax.random.key(6), 16))
    assert per.shape == (16, L)
    _close_in_expectation(per, np.broadcast_to(want, per.shape))
    _close_in_expectation(dsm, np.full(dsm.shape, want.mean()))
    assert np.all(np.diff(want) > 0.1)                 # the levels are told apart


def _mlp_score(key, d, hidden=8):
    """A tiny random tanh MLP as a nonlinear score on x [B, *E], D = prod(E)."""
    k1, k2, k3 = jax.random.split(key, 3)
    W1 = jax.random.normal(k1, (d, hidden)) / np.sqrt(d)
    b1 = jax.random.normal(k2, (hidden,))
    W2 = jax.random.normal(k3, (hidden, d)) / np.sqrt(hidden)

    def score(x):
        h = jnp.tanh(x.reshape(x.shape[0], -1) @ W1 + b1)
        return (h @ W2 - 0.5 * x.reshape(x.shape[0], -1)).reshape(x.shape)
    return score


def test_exact_score_matching_equals_independent_computations():
    # linear score: tr(A) + 0.5 ||A x + b||^2 by hand
    kA, kb, kx = jax.random.split(jax.random.key(7), 3)
    A, b = jax.random.normal(kA, (3, 3)), jax.random.normal(kb, (3,))
    x = jax.random.normal(kx, (5, 3))
    loss, m = jax.jit(lambda x: S.exact_score_matching(x, score_fn=lambda y: y @ A.T + b))(x)
    want = np.trace(A) + 0.5 * np.sum((np.asarray(x) @ np.asarray(A).T + np.asarray(b)) ** 2, -1)
    np.testing.assert_allclose(float(loss), want.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(m["trace"]), np.trace(A), rtol=1e-5)
    # nonlinear score on image-shaped events [B, 2, 2]: per-example jax.jacrev
    score = _mlp_score(jax.random.key(8), 4)
    x = jax.random.normal(jax.random.key(9), (6, 2, 2))

    @jax.jit
    def both(x):
        one = lambda xi: score(xi[None])[0].reshape(4)                       # noqa: E731
        jac = jax.vmap(jax.jacrev(one))(x).reshape(6, 4, 4)
        want = jnp.trace(jac, axis1=1, axis2=2) + 0.5 * jnp.sum(score(x).reshape(6, 4)**2, -1)
        return S.exact_score_matching(x, score_fn=score), want.mean()

    (loss, m), want = both(x)
    np.testing.assert_allclose(float(loss), float(want), rtol=1e-5)
    np.testing.assert_allclose(float(m["esm"]), float(loss))


def test_exact_score_matching_is_minimised_by_the_gaussian_score():
    """Hyvarinen: ESM = 0.5 E||s - s*||^2 + const. For an affine s(x) = A x + b the
    objective is quadratic; its minimiser on a sample is the score of the Gaussian with the
    sample's mean and (biased) covariance, and the gradient at the true score vanishes in
    expectation."""
    def loss(p, x):
        return S.exact_score_matching(x, score_fn=lambda y: y @ p[0].T + p[1])[0]

    flat0, unravel = ravel_pytree((jnp.zeros((2, 2)), jnp.zeros(2)))

    @jax.jit
    def newton(x):                       # from any start: the objective is quadratic
        f = lambda p: loss(unravel(p), x)                                    # noqa: E731
        return unravel(flat0 - jnp.linalg.solve(jax.hessian(f)(flat0), jax.grad(f)(flat0)))

    x = _data(jax.random.key(10), 3000)
    A_hat, b_hat = newton(x)
    xn = np.asarray(x, np.float64)
    cov = np.cov(xn.T, bias=True)
    np.testing.assert_allclose(A_hat, -np.linalg.inv(cov), rtol=2e-3, atol=2e-4)
    np.testing.assert_allclose(b_hat, np.linalg.inv(cov) @ xn.mean(0), rtol=2e-3, atol=2e-4)

    A_star = -np.linalg.inv(SIGMA)
    p_star = _f32((A_star, -A_star @ MU))
    g = jax.jit(jax.vmap(lambda k: ravel_pytree(jax.grad(loss)(p_star, _data(k, 1000)))[0]))(
        jax.random.split(jax.random.key(11), 32))
    _close_in_expectation(g, np.zeros_like(np.asarray(g)))


@pytest.mark.parametrize("projection", ["gaussian", "rademacher"])
def test_sliced_equals_exact_score_matching_in_expectation(projection):
    score = _mlp_score(jax.random.key(12), 3)
    x = 1.5 * jax.random.normal(jax.random.key(13), (32, 3))
    esm, esm_m = S.exact_score_matching(x, score_fn=score)

    @jax.jit
    @jax.vmap
    def replicate(key):
        ssm, m = S.sliced_score_matching(x, key, score_fn=score, num_projections=4,
                                         projection=projection)
        vr, _ = S.sliced_score_matching(x, key, score_fn=score, num_projections=4,
                                        projection=projection, variance_reduction=True)
        return ssm, vr, m["trace"], m["sq_norm"]

    ssm, vr, trace, sq_norm = replicate(jax.random.split(jax.random.key(14), 256))
    for est in (ssm, vr):
        se = _close_in_expectation(est, np.full(est.shape, float(esm)))
        assert se < 0.02 * abs(float(esm_m["trace"])), se              # the test has power
    _close_in_expectation(trace, np.full(trace.shape, float(esm_m["trace"])))
    np.testing.assert_allclose(sq_norm, float(esm_m["sq_norm"]), rtol=1e-5)  # no projection
    assert float(vr.std()) < float(ssm.std())                         # VR reduces the variance


def test_rademacher_projections_give_the_exact_trace_of_a_diagonal_jacobian():
    """An element-wise score (a separable quartic energy) has a diagonal Jacobian, and
    v_i^2 = 1: SSM-VR with Rademacher projections is exact score matching, draw by draw."""
    score = lambda x: -(x**3) - 0.5 * x                                       # noqa: E731
    x = jax.random.normal(jax.random.key(15), (8, 4))
    esm, vr = jax.jit(lambda x, k: (
        S.exact_score_matching(x, score_fn=score)[0],
        S.sliced_score_matching(x, k, score_fn=score, variance_reduction=True)[0]))(
            x, jax.random.key(16))
    np.testing.assert_allclose(float(vr), float(esm), rtol=1e-5)
    xn = np.asarray(x, np.float64)
    np.testing.assert_allclose(float(esm), np.mean(np.sum(-3 * xn**2 - 0.5
                                                          + 0.5 * (xn**3 + 0.5 * xn)**2, -1)),
                               rtol=1e-5)


def test_energy_model_scores_differentiate_through_every_loss():
    """score = -grad_x E(x) for E(x) = 0.5 x^T P x - c^T x is the linear score
    -(P + P^T)/2 x + c: every loss and its gradient with respect to (P, c) equals the one
    computed with that explicit linear score (third derivatives through jvp / jacfwd of
    grad; no stop_gradient anywhere)."""
    kP, kc, kx = jax.random.split(jax.random.key(17), 3)
    P = jax.random.normal(kP, (L, 2, 2)) + 2 * jnp.eye(2)
    c = jax.random.normal(kc, (L, 2))
    x = jax.random.normal(kx, (16, 2))
    key = jax.random.key(18)

    def energy_score(p, level=None):
        P, c = p if level is None else (p[0][level], p[1][level])

        def energy(y):                                                        # [B]
            return 0.5 * jnp.einsum("bi,bij,bj->b", y, P, y) - jnp.sum(c * y, -1)
        return lambda x: -jax.grad(lambda y: energy(y).sum())(x)

    def linear_score(p, level=None):
        P, c = p if level is None else (p[0][level], p[1][level])
        return lambda y: -jnp.einsum("bij,bj->bi", 0.5 * (P + jnp.swapaxes(P, 1, 2)), y) + c

    def per_example(p):                  # one (P, c) broadcast to the batch, for ESM / SSM
        return (jnp.broadcast_to(p[0][0], (16, 2, 2)), jnp.broadcast_to(p[1][0], (16, 2)))

    losses = {
        "dsm": lambda make, p: S.denoising_score_matching(
            x, key, score_fn=lambda y, l: make(p, l)(y), sigmas=SIGMAS)[0],
        "esm": lambda make, p: S.exact_score_matching(
            x, score_fn=make(per_example(p)))[0],
        "ssm": lambda make, p: S.sliced_score_matching(
            x, key, score_fn=make(per_example(p)), num_projections=2,
            projection="gaussian")[0],
    }
    out = jax.jit(lambda p: {name: [jax.value_and_grad(lambda q: f(make, q))(p)
                                    for make in (energy_score, linear_score)]
                             for name, f in losses.items()})((P, c))
    for name, ((va, ga), (vb, gb)) in out.items():
        np.testing.assert_allclose(float(va), float(vb), rtol=1e-5, err_msg=name)
        for a, b in zip(ga, gb):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5, err_msg=name)
        assert float(jnp.abs(ga[0]).sum()) > 0, name


def test_a_score_of_the_wrong_shape_raises_naming_the_function():
    x, key = jnp.zeros((4, 3)), jax.random.key(0)
    bad = lambda *a: jnp.zeros((4, 1))                                        # noqa: E731
    calls = {
        "denoising_score_matching": lambda: S.denoising_score_matching(
            x, key, score_fn=bad, sigmas=SIGMAS),
        "dsm_per_level": lambda: S.dsm_per_level(x, key, score_fn=bad, sigmas=SIGMAS),
        "sliced_score_matching": lambda: S.sliced_score_matching(x, key, score_fn=bad),
        "exact_score_matching": lambda: S.exact_score_matching(x, score_fn=bad),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=rf"^losses\.score\.{name}: score_fn\(x.*\) has "
                                             r"shape \(4, 1\) but expected \[B, \*E\] = \(4, 3\)"):
            jax.eval_shape(call)
    with pytest.raises(ValueError, match="unknown projection"):
        S.sliced_score_matching(x, key, score_fn=lambda y: y, projection="sphere")
