"""The pure autoregressive log-likelihoods (genjax.losses.autoregressive) against the
mathematics: normalisation over all 2^D binary vectors, the O(HD) NADE pass against
per-dimension recomputation (in jax and in a plain numpy loop), its hand-written gradient
against autodiff of the naive form, and mixture conditionals that integrate to one.
Exact checks run in float64 (jax.enable_x64) so that tight tolerances test the formulas,
not float32 rounding; the float32 path is checked at its own tolerance."""

import itertools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate
from scipy.special import expit, logsumexp

from genjax.losses import autoregressive as ar

D_ENUM = 10


def all_binary(d):
    """All 2^d binary vectors [2^d, d] (float64)."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def nade_params(rng, d, h, scale=1.5):
    """Large weights: strongly dependent conditionals, far from independent pixels."""
    return dict(W=scale * rng.normal(size=(h, d)), c=rng.normal(size=h),
                V=scale * rng.normal(size=(d, h)), b=rng.normal(size=d))


def nade_numpy_loop(x, W, c, V, b):
    """Per-dimension recomputation in plain numpy, straight from the formula."""
    out = np.zeros(len(x))
    for n, xn in enumerate(x):
        for i in range(len(xn)):
            h = expit(W[:, :i] @ xn[:i] + c)
            p = expit(V[i] @ h + b[i])
            out[n] += np.log(p if xn[i] else 1.0 - p)
    return out


def test_nade_probabilities_of_all_binary_vectors_sum_to_one():
    rng = np.random.default_rng(0)
    x = all_binary(D_ENUM)
    with jax.enable_x64(True):
        p = nade_params(rng, D_ENUM, 7)
        lp = ar.nade_log_likelihood(jnp.asarray(x), **p)
        chex.assert_shape(lp, (2 ** D_ENUM,))
        assert abs(math.exp(logsumexp(np.asarray(lp))) - 1.0) < 1e-12
    # float32: the same sum to float32 accuracy
    p32 = {k: jnp.asarray(v, jnp.float32) for k, v in nade_params(rng, D_ENUM, 7).items()}
    lp32 = ar.nade_log_likelihood(jnp.asarray(x, jnp.float32), **p32)
    assert abs(math.exp(logsumexp(np.asarray(lp32, np.float64))) - 1.0) < 2e-5


@pytest.mark.parametrize("context", [0, 1, 3])
def test_fvbn_probabilities_of_all_binary_vectors_sum_to_one(context):
    rng = np.random.default_rng(1)
    x = all_binary(D_ENUM)
    with jax.enable_x64(True):
        W, b = 2.0 * rng.normal(size=(D_ENUM, D_ENUM)), rng.normal(size=D_ENUM)
        lp = ar.fvbn_log_likelihood(jnp.asarray(x), W=jnp.asarray(W), b=jnp.asarray(b),
                                    context=context)
        assert abs(math.exp(logsumexp(np.asarray(lp))) - 1.0) < 1e-12
        # the same numbers from the definition: logistic regression on the parents only
        ref = np.zeros(len(x))
        for i in range(D_ENUM):
            lo = 0 if context == 0 else max(0, i - context)
            p = expit(x[:, lo:i] @ W[i, lo:i] + b[i])
            ref += np.where(x[:, i] == 1, np.log(p), np.log1p(-p))
        np.testing.assert_allclose(np.asarray(lp), ref, atol=1e-10)


def test_fvbn_mask_is_strictly_lower_and_banded():
    m = np.asarray(ar.fvbn_mask(5, 2))
    expected = np.array([[0, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0],
                         [0, 1, 1, 0, 0], [0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(m, expected)
    np.testing.assert_array_equal(np.asarray(ar.fvbn_mask(4)), np.tril(np.ones((4, 4)), -1))


def test_nade_running_sum_equals_naive_recomputation():
    rng = np.random.default_rng(2)
    d, h = 23, 11
    x = (rng.random((9, d)) < 0.4).astype(np.float64)
    p = nade_params(rng, d, h)
    ref = nade_numpy_loop(x, **p)
    with jax.enable_x64(True):
        fast = ar.nade_log_likelihood(jnp.asarray(x), **p)
        naive = ar.nade_log_likelihood_naive(jnp.asarray(x), **p)
        logits = ar.nade_logits(jnp.asarray(x), **p)
        np.testing.assert_allclose(np.asarray(fast), ref, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(np.asarray(naive), ref, rtol=1e-12, atol=1e-10)
        np.testing.assert_allclose(
            np.asarray(ar.bernoulli_log_likelihood(jnp.asarray(x), logits)), ref, atol=1e-10)


def test_nade_float32_at_mnist_size_matches_naive():
    rng = np.random.default_rng(3)
    d, h = 784, 64
    x = jnp.asarray(rng.random((8, d)) < 0.2, jnp.float32)
    p = {k: jnp.asarray(v, jnp.float32) for k, v in nade_params(rng, d, h, 0.05).items()}
    fast = np.asarray(ar.nade_log_likelihood(x, **p))
    naive = np.asarray(ar.nade_log_likelihood_naive(x, **p))
    np.testing.assert_allclose(fast, naive, rtol=1e-5)
    assert np.all(fast < 0)


@pytest.mark.parametrize("groups", [1, 3])
def test_nade_hand_written_gradient_equals_autodiff_of_naive(groups):
    rng = np.random.default_rng(4)
    d, h, bsz = 12, 6, 6
    x = (rng.random((bsz, d)) < 0.5).astype(np.float64)
    p = nade_params(rng, d, h)
    weights = np.arange(1.0, bsz + 1)               # a non-uniform output cotangent
    names = ("x", "W", "c", "V", "b")

    def objective(fn):
        return lambda *a: jnp.sum(weights * fn(a[0], **dict(zip(names[1:], a[1:]))))

    fast = lambda x, **q: ar.nade_log_likelihood(x, **q, groups=groups)   # noqa: E731
    with jax.enable_x64(True):
        args = [jnp.asarray(v) for v in (x, p["W"], p["c"], p["V"], p["b"])]
        g_fast = jax.grad(objective(fast), argnums=range(5))(*args)
        g_ref = jax.grad(objective(ar.nade_log_likelihood_naive), argnums=range(5))(*args)
        for name, a, r in zip(names, g_fast, g_ref):
            chex.assert_equal_shape([a, r])
            np.testing.assert_allclose(np.asarray(a), np.asarray(r), atol=1e-11,
                                       err_msg=name)


def test_nade_gradient_float32_and_under_vmap_and_jit():
    """The custom derivative composes with jit and vmap (a sweep vmaps the step)."""
    rng = np.random.default_rng(5)
    d, h = 40, 16
    x = jnp.asarray(rng.random((8, d)) < 0.3, jnp.float32)
    stacked = {k: jnp.asarray(np.stack([nade_params(rng, d, h, 0.3)[k] for _ in range(3)]),
                              jnp.float32) for k in ("W", "c", "V", "b")}

    def loss(p, fn):
        return -jnp.mean(fn(x, **p))

    g_fast = jax.jit(jax.vmap(jax.grad(lambda p: loss(p, ar.nade_log_likelihood))))(stacked)
    g_ref = jax.vmap(jax.grad(lambda p: loss(p, ar.nade_log_likelihood_naive)))(stacked)
    for k in stacked:
        np.testing.assert_allclose(np.asarray(g_fast[k]), np.asarray(g_ref[k]),
                                   atol=2e-5 * float(jnp.max(jnp.abs(g_ref[k]))) + 1e-7,
                                   err_msg=k)


def test_autoregressive_log_likelihood_and_nll_loss():
    rng = np.random.default_rng(6)
    x = jnp.asarray(rng.random((5, 7)) < 0.5, jnp.float32)
    logits = jnp.asarray(rng.normal(size=(5, 7)), jnp.float32)
    lp = ar.autoregressive_log_likelihood(x, logits_fn=lambda v: logits)
    p = expit(np.asarray(logits, np.float64))
    ref = np.sum(np.where(np.asarray(x) == 1, np.log(p), np.log1p(-p)), -1)
    np.testing.assert_allclose(np.asarray(lp), ref, rtol=1e-5)
    loss, metrics = ar.nll_loss(lp)
    assert float(loss) == pytest.approx(-ref.mean(), rel=1e-5)
    assert float(metrics["log_likelihood"]) == pytest.approx(ref.mean(), rel=1e-5)


def test_gaussian_mixture_conditional_integrates_to_one_in_1d():
    rng = np.random.default_rng(7)
    k = 5
    logit_w, means, log_s = rng.normal(size=k), 2 * rng.normal(size=k), rng.normal(size=k) - 1
    with jax.enable_x64(True):
        f = jax.jit(lambda t: jnp.exp(ar.gaussian_mixture_log_prob(
            t, jnp.asarray(logit_w), jnp.asarray(means), jnp.asarray(log_s))))
        total, err = integrate.quad(lambda t: float(f(jnp.asarray(t))), -np.inf, np.inf,
                                    points=None, limit=200)
        assert abs(total - 1.0) < 1e-8 and err < 1e-8
        # the mean equals sum_k pi_k mu_k
        pi = np.exp(logit_w - logsumexp(logit_w))
        mean, _ = integrate.quad(lambda t: t * float(f(jnp.asarray(t))), -np.inf, np.inf,
                                 limit=200)
        assert mean == pytest.approx(float(pi @ means), abs=1e-7)


def rnade_params(rng, d, h, k, v_scale=1.0):
    return dict(W=rng.normal(size=(h, d)), c=rng.normal(size=h),
                V=v_scale * rng.normal(size=(d, h, 3 * k)), b=0.5 * rng.normal(size=(d, 3 * k)),
                rho=1.0 + 0.3 * rng.normal(size=d))


def test_rnade_density_integrates_to_one_in_2d():
    """Trapezoidal rule on a 801^2 grid over [-12, 12]^2 (step 0.03): every component
    met on the grid has |mean| < 3 and 0.2 < sigma < 3, so the grid resolves each
    Gaussian and the mass outside it is below 1e-9."""
    rng = np.random.default_rng(8)
    with jax.enable_x64(True):
        p = {k: jnp.asarray(v) for k, v in rnade_params(rng, 2, 6, 3, v_scale=0.3).items()}
        t = np.linspace(-12.0, 12.0, 801)
        gx, gy = np.meshgrid(t, t, indexing="ij")
        pts = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], -1))
        _, means, log_s = ar.rnade_conditionals(pts, **p)
        assert float(jnp.abs(means).max()) < 3 and -1.6 < float(log_s.min())
        assert float(log_s.max()) < 1.1
        dens = np.exp(np.asarray(jax.jit(lambda v: ar.rnade_log_likelihood(v, **p))(pts)))
        total = integrate.trapezoid(integrate.trapezoid(dens.reshape(gx.shape), t), t)
        assert abs(total - 1.0) < 1e-6
        # and x_2 | x_1 alone integrates to one for a few x_1
        for x1 in (-1.0, 0.3, 2.0):
            col = jnp.stack([jnp.full_like(jnp.asarray(t), x1), jnp.asarray(t)], -1)
            cond = ar.rnade_conditionals(col, **p)
            dens2 = np.exp(np.asarray(ar.gaussian_mixture_log_prob(
                col[:, 1], *(v[:, 1] for v in cond))))
            assert abs(integrate.trapezoid(dens2, t) - 1.0) < 1e-6


def test_rnade_running_sum_equals_per_dimension_definition():
    rng = np.random.default_rng(9)
    d, h, k = 5, 4, 3
    p = rnade_params(rng, d, h, k)
    x = rng.normal(size=(6, d))
    ref = np.zeros(len(x))
    for n in range(len(x)):
        for i in range(d):
            hid = expit(p["rho"][i] * (p["W"][:, :i] @ x[n, :i] + p["c"]))
            out = hid @ p["V"][i] + p["b"][i]
            lw, mu, ls = out[:k], out[k:2 * k], np.maximum(out[2 * k:], -7.0)
            lw = lw - logsumexp(lw)
            ref[n] += logsumexp(lw - 0.5 * np.log(2 * np.pi) - ls
                                - 0.5 * ((x[n, i] - mu) / np.exp(ls)) ** 2)
    with jax.enable_x64(True):
        lp = ar.rnade_log_likelihood(jnp.asarray(x), **{k_: jnp.asarray(v) for k_, v in p.items()})
        np.testing.assert_allclose(np.asarray(lp), ref, rtol=1e-12, atol=1e-10)
