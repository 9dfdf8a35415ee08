"""The VAE objectives on a linear-Gaussian model whose log p(x) and posterior are exact.

Model: z ~ N(0, I_Z), x | z ~ N(W z + b, s2 I_D). Then p(x) = N(b, W W^T + s2 I) and
q*(z | x) = N(A (x - b), S) with S = (I + W^T W / s2)^-1, A = S W^T / s2.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from genjax import losses
from genjax.eval import iw_log_likelihood

D, Z, S2 = 5, 2, 0.3


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(D, Z))
    b = rng.normal(size=D)
    x = rng.multivariate_normal(b, W @ W.T + S2 * np.eye(D), size=16)
    S = np.linalg.inv(np.eye(Z) + W.T @ W / S2)
    A = S @ W.T / S2
    log_px = stats.multivariate_normal(b, W @ W.T + S2 * np.eye(D)).logpdf(x)
    f = lambda a: jnp.asarray(a, jnp.float32)
    decode = lambda z: (z @ f(W).T + f(b), jnp.log(S2))

    def encoder(scale):
        # Posterior mean, but a diagonal variance scaled away from the exact one.
        def encode(xx):
            mean = (xx - f(b)) @ f(A).T
            return mean, jnp.broadcast_to(jnp.log(f(np.diag(S)) * scale), mean.shape)
        return encode

    return dict(x=f(x), decode=decode, encoder=encoder, log_px=log_px, S=S)


@pytest.mark.slow
def test_elbo_is_below_log_px_and_iwae_tightens_with_k(model):
    encode = model["encoder"](3.0)            # a deliberately poor q
    x, decode = model["x"], model["decode"]
    keys = jax.random.split(jax.random.key(0), 200)
    def mean_bound(k):
        f = jax.vmap(lambda key: losses.iwae_bound_terms(
            x, key, encode=encode, decode=decode, num_samples=k, likelihood="gaussian"))
        return np.asarray(f(keys)).mean(0)                           # [B]
    elbo = np.asarray(jax.vmap(lambda key: losses.elbo_terms(
        x, key, encode=encode, decode=decode, likelihood="gaussian")["elbo"])(keys)).mean(0)
    bounds = [mean_bound(k) for k in (1, 5, 50)]
    np.testing.assert_allclose(bounds[0], elbo, atol=0.15)           # K = 1 is the ELBO
    assert np.all(elbo < model["log_px"])
    # Non-decreasing in K on average, and every bound stays below log p(x) on average.
    assert bounds[0].mean() < bounds[1].mean() < bounds[2].mean() < model["log_px"].mean()
    iw = np.asarray(iw_log_likelihood(x, jax.random.key(1), encode=encode, decode=decode,
                                      num_samples=4000, chunk_size=500,
                                      likelihood="gaussian"))
    np.testing.assert_allclose(iw, model["log_px"], atol=0.05)       # tends to log p(x)


def test_elbo_with_the_exact_posterior_equals_log_px():
    # With a 1-D latent the exact posterior is a diagonal Gaussian, so q = q* is
    # representable: then log p(x, z) - log q(z | x) = log p(x) for every z (the "mc"
    # one-sample ELBO is exact), and the closed-form-KL ELBO equals log p(x) on average.
    rng = np.random.default_rng(2)
    W = rng.normal(size=(D, 1)); b = rng.normal(size=D)
    x = rng.multivariate_normal(b, W @ W.T + S2 * np.eye(D), size=8).astype(np.float32)
    s = 1.0 / (1.0 + (W.T @ W).item() / S2)
    A = (s * W.T / S2).astype(np.float32)
    b32 = b.astype(np.float32)
    encode = lambda xx: ((xx - b32) @ A.T, jnp.full((xx.shape[0], 1), np.log(s), jnp.float32))
    decode = lambda z: (z @ W.T.astype(np.float32) + b32, jnp.log(S2))
    exact = stats.multivariate_normal(b, W @ W.T + S2 * np.eye(D)).logpdf(x)
    t = losses.elbo_terms(jnp.asarray(x), jax.random.key(3), encode=encode, decode=decode,
                          likelihood="gaussian", kl="mc")
    np.testing.assert_allclose(t["elbo"], exact, rtol=1e-4, atol=1e-3)
    keys = jax.random.split(jax.random.key(4), 4000)
    analytic = jax.vmap(lambda k: losses.elbo_terms(
        jnp.asarray(x), k, encode=encode, decode=decode, likelihood="gaussian")["elbo"])(keys)
    se = np.asarray(analytic.std(0)) / np.sqrt(len(keys))
    assert np.all(np.abs(np.asarray(analytic.mean(0)) - exact) < 6 * se + 1e-3)


def test_mc_kl_is_unbiased_for_the_closed_form(model):
    encode = model["encoder"](2.0)
    keys = jax.random.split(jax.random.key(4), 20_000)
    def kl_of(kind, key):
        return losses.elbo_terms(model["x"], key, encode=encode, decode=model["decode"],
                                 likelihood="gaussian", kl=kind)["kl"]
    mc = np.asarray(jax.vmap(lambda k: kl_of("mc", k))(keys))
    closed = np.asarray(kl_of("analytic", keys[0]))
    se = mc.std(0) / np.sqrt(len(keys))
    assert np.all(np.abs(mc.mean(0) - closed) < 6 * se + 1e-4)


def test_beta_weights_the_kl_and_reports_the_unweighted_elbo(model):
    encode, decode, x = model["encoder"](2.0), model["decode"], model["x"]
    key = jax.random.key(5)
    l1, m1 = losses.elbo(x, key, encode=encode, decode=decode, likelihood="gaussian")
    l4, m4 = losses.elbo(x, key, encode=encode, decode=decode, likelihood="gaussian", beta=4.0)
    np.testing.assert_allclose(l4 - l1, 3.0 * m1["kl"], rtol=1e-5)
    np.testing.assert_allclose(m4["elbo"], m1["elbo"])
    np.testing.assert_allclose(l1, -m1["elbo"], rtol=1e-6)


def test_bernoulli_elbo_gradients_are_finite_and_the_loss_is_positive():
    x = (jax.random.uniform(jax.random.key(0), (8, 12)) < 0.3).astype(jnp.float32)
    def loss(w):
        enc = lambda xx: (xx @ w[:, :3], xx @ w[:, 3:] * 0.1)
        dec = lambda z: z @ w[:, :3].T
        return losses.elbo(x, jax.random.key(1), encode=enc, decode=dec)[0]
    w = jax.random.normal(jax.random.key(2), (12, 6)) * 0.1
    g = jax.grad(loss)(w)
    assert float(loss(w)) > 0 and bool(jnp.all(jnp.isfinite(g)))
    with pytest.raises(ValueError, match="likelihood"):
        losses.log_likelihood(x, x, "poisson")
