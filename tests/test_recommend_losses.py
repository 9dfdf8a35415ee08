"""Mult-VAE / Mult-DAE objectives (genjax.losses.recommend) and models
(genjax.models.multvae) against independent computations."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy.special import gammaln, logsumexp
from scipy.stats import multinomial

from genjax import losses
from genjax.losses import recommend
from genjax.models.multvae import MultDAE, MultVAE, scores

B, I, Z = 6, 9, 3


def _clicks(seed, shape=(B, I), p=0.4):
    x = (np.random.default_rng(seed).random(shape) < p).astype(np.float32)
    x[0] = 0.0                                          # a user with no clicks
    x[1, :3] = 1.0                                      # and one with some for sure
    return x


def test_multinomial_log_likelihood_is_scipys_logpmf_without_the_count_constant():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)).astype(np.float32) * 2
    x = rng.integers(0, 4, size=(5, 7)).astype(np.float32)       # counts, not only 0/1
    x[0] = 0.0
    got = np.asarray(jax.jit(losses.multinomial_log_likelihood)(logits, x))
    p = np.exp(logits - logsumexp(logits, axis=-1, keepdims=True)).astype(np.float64)
    p /= p.sum(-1, keepdims=True)
    n = x.sum(-1)
    want = [multinomial.logpmf(x[b], n[b], p[b])
            - (gammaln(n[b] + 1) - gammaln(x[b] + 1).sum()) for b in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert got[0] == 0.0


def _linear_callables(seed):
    rng = np.random.default_rng(seed)
    We, Wd = rng.normal(size=(I, 2 * Z)) * 0.5, rng.normal(size=(Z, I)) * 0.5
    be, bd = rng.normal(size=2 * Z) * 0.1, rng.normal(size=I) * 0.1
    encode = lambda h: (h @ We[:, :Z] + be[:Z], h @ We[:, Z:] + be[Z:])  # noqa: E731
    decode = lambda zz: zz @ Wd + bd                                       # noqa: E731
    return (We, be, Wd, bd), encode, decode


def _numpy_loss(x, params, mask, eps, beta, keep):
    """The negative ELBO of dawenl's code, in float64 NumPy, from the same random draws."""
    We, be, Wd, bd = params
    x = x.astype(np.float64)
    norm = np.sqrt(np.maximum((x ** 2).sum(-1, keepdims=True), 1e-12))
    h = x / norm
    if mask is not None:
        h = np.where(mask, h / keep, 0.0)
    mean, log_var = h @ We[:, :Z] + be[:Z], h @ We[:, Z:] + be[Z:]
    zz = mean if eps is None else mean + np.exp(0.5 * log_var) * eps
    logits = zz @ Wd + bd
    log_softmax = logits - logsumexp(logits, axis=-1, keepdims=True)
    neg_ll = -(x * log_softmax).sum(-1)
    kl = 0.5 * (np.exp(log_var) + mean ** 2 - 1.0 - log_var).sum(-1)
    return np.mean(neg_ll + beta * kl), neg_ll.mean(), kl.mean()


@pytest.mark.parametrize("train", [True, False])
def test_mult_vae_loss_is_neg_ll_plus_beta_kl_computed_independently(train):
    x = _clicks(1)
    params, encode, decode = _linear_callables(2)
    key, beta, rate = jax.random.key(3), 0.3, 0.25
    fn = jax.jit(lambda x, key, beta: recommend.mult_vae_loss(
        x, key, encode=lambda h: tuple(jnp.asarray(a, jnp.float32) for a in encode(h)),
        decode_logits=lambda zz: decode(zz).astype(jnp.float32), beta=beta,
        dropout_rate=rate, train=train))
    loss, m = fn(x, key, beta)
    if train:   # the draws the loss makes: dropout from the first half of the key, eps
        k_drop, k_z = jax.random.split(key)
        mask = np.asarray(jax.random.bernoulli(k_drop, 1 - rate, (B, I)))
        eps = np.asarray(jax.random.normal(k_z, (B, Z)), np.float64)
        assert 0 < mask.mean() < 1
    else:
        mask = eps = None
    want, neg_ll, kl = _numpy_loss(x, params, mask, eps, beta, 1 - rate)
    np.testing.assert_allclose(float(loss), want, rtol=1e-5)
    np.testing.assert_allclose(float(m["neg_ll"]), neg_ll, rtol=1e-5)
    np.testing.assert_allclose(float(m["kl"]), kl, rtol=1e-5)
    assert float(m["beta"]) == pytest.approx(beta)
    np.testing.assert_allclose(float(loss), float(m["neg_ll"] + beta * m["kl"]), rtol=1e-6)


def test_beta_annealing_ramps_to_the_cap_and_zero_steps_means_the_cap():
    f = jax.jit(lambda s, t, c: recommend.beta_annealing(s, total_anneal_steps=t,
                                                         anneal_cap=c))
    steps = jnp.array([0, 1, 50, 100, 150, 10 ** 6])
    np.testing.assert_allclose(f(steps, 200, 0.2), [0.0, 0.005, 0.2 * 1.0, 0.2, 0.2, 0.2])
    np.testing.assert_allclose(f(steps, 100, 1.0), [0.0, 0.01, 0.5, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(f(steps, 0, 0.3), [0.3] * 6)
    # a sweep over caps: vmap with everything traced
    caps = jnp.array([0.1, 0.5])
    np.testing.assert_allclose(jax.vmap(lambda c: f(jnp.array(30), 100, c))(caps),
                               [0.1, 0.3])
    assert float(recommend.beta_annealing(7, total_anneal_steps=0, anneal_cap=0.2)) \
        == pytest.approx(0.2)


def test_normalize_and_dropout_unit_rows_zero_rows_stay_zero_and_inverted_scaling():
    x = _clicks(4, (50, 40))
    f = jax.jit(lambda x, key, rate: recommend.normalize_and_dropout(
        x, key, dropout_rate=rate))
    key = jax.random.key(5)
    h0 = np.asarray(f(x, key, 0.0))
    norms = np.linalg.norm(h0, axis=-1)
    np.testing.assert_allclose(norms[1:], 1.0, rtol=1e-6)
    assert np.all(h0[0] == 0.0) and np.all(np.isfinite(h0))
    np.testing.assert_allclose(np.asarray(recommend.normalize_and_dropout(
        x, None, dropout_rate=0.7, train=False)), h0, rtol=1e-6)          # eval: no dropout
    h = np.asarray(f(x, key, 0.5))
    assert np.all(np.isfinite(h)) and np.all(h[0] == 0.0)
    kept = h != 0
    np.testing.assert_allclose(h[kept], 2.0 * h0[kept], rtol=1e-6)        # scaled 1 / keep
    assert np.all(h0[~kept & (h0 != 0)] != 0)                              # some dropped
    frac = kept.sum() / (h0 != 0).sum()
    assert 0.4 < frac < 0.6


def test_mult_dae_loss_has_no_beta_and_is_the_vae_loss_without_kl_or_noise():
    x = _clicks(6)
    assert "beta" not in inspect.signature(recommend.mult_dae_loss).parameters
    params, encode, decode = _linear_callables(7)
    code = lambda h: jnp.tanh(encode(h)[0]).astype(jnp.float32)           # noqa: E731
    dec = lambda c: decode(c).astype(jnp.float32)                        # noqa: E731
    key = jax.random.key(8)
    dae, m = jax.jit(lambda x, k: recommend.mult_dae_loss(
        x, k, encode=code, decode_logits=dec, dropout_rate=0.3))(x, key)
    # the same dropout (same key) and a code with no noise (std e^-40), weighted beta = 0
    vae, _ = jax.jit(lambda x, k: recommend.mult_vae_loss(
        x, k, encode=lambda h: (code(h), jnp.full((B, Z), -80.0)), decode_logits=dec,
        beta=0.0, dropout_rate=0.3))(x, key)
    np.testing.assert_allclose(float(dae), float(vae), rtol=1e-6)
    assert float(m["neg_ll"]) == float(dae)
    # in eval mode it is the plain reconstruction of the normalised rows
    dae_eval, _ = recommend.mult_dae_loss(x, None, encode=code, decode_logits=dec,
                                          train=False)
    h = x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
    logits = np.asarray(dec(code(h)), np.float64)
    want = -np.mean((x * (logits - logsumexp(logits, -1, keepdims=True))).sum(-1))
    np.testing.assert_allclose(float(dae_eval), want, rtol=1e-5)
    with pytest.raises(TypeError):
        recommend.mult_dae_loss(x, key, encode=code, decode_logits=dec, beta=0.2)


def test_train_must_be_a_python_bool():
    params, encode, decode = _linear_callables(0)
    with pytest.raises(ValueError, match="train"):
        recommend.mult_vae_loss(_clicks(0), jax.random.key(0), encode=encode,
                                decode_logits=decode, beta=0.2, train=1)


def test_models_shapes_init_and_gradients_flow_through_the_losses():
    x = jnp.asarray(_clicks(9, (B, 20)))
    vae = MultVAE(20, hidden=(8,), latent=4, rngs=nnx.Rngs(0))
    dae = MultDAE(20, latent=5, rngs=nnx.Rngs(1))
    mean, log_var = vae.encode(x)
    assert mean.shape == log_var.shape == (B, 4)
    assert vae.decode_logits(mean).shape == (B, 20)
    assert dae.encode(x).shape == (B, 5) and np.all(np.abs(dae.encode(x)) < 1)
    assert dae.decode_logits(dae.encode(x)).shape == (B, 20)
    assert scores(vae, x).shape == scores(dae, x).shape == (B, 20)
    assert [(layer.in_features, layer.out_features) for layer in vae.encoder] == [(20, 8), (8, 8)]
    assert [(layer.in_features, layer.out_features) for layer in vae.decoder] == [(4, 8), (8, 20)]
    assert [(layer.in_features, layer.out_features) for layer in dae.encoder] == [(20, 5)]
    for layer in list(vae.encoder) + list(vae.decoder) + list(dae.encoder):
        limit = np.sqrt(6.0 / (layer.in_features + layer.out_features))    # Glorot uniform
        assert np.abs(layer.kernel[...]).max() <= limit
        assert 0 < np.abs(layer.bias[...]).max() <= 0.002                  # N(0, 0.001^2), 2 sd

    for model, loss_fn in [(vae, lambda m, x, k: recommend.mult_vae_loss(
            x, k, encode=m.encode, decode_logits=m.decode_logits, beta=0.2)),
                           (dae, lambda m, x, k: recommend.mult_dae_loss(
            x, k, encode=m.encode, decode_logits=m.decode_logits))]:
        graphdef, params = nnx.split(model)

        def objective(p, x, k, loss_fn=loss_fn, graphdef=graphdef):
            loss, _ = loss_fn(nnx.merge(graphdef, p), x, k)
            return loss + recommend.l2_penalty(p, weight=0.01)

        loss, grads = jax.jit(jax.value_and_grad(objective))(params, x, jax.random.key(2))
        assert np.isfinite(float(loss))
        for g in jax.tree_util.tree_leaves(grads):
            assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_l2_penalty_is_half_weight_times_the_kernels_squares():
    vae = MultVAE(12, hidden=(6,), latent=3, rngs=nnx.Rngs(3))
    _, params = nnx.split(vae)
    kernels = [np.asarray(layer.kernel[...], np.float64)
               for layer in list(vae.encoder) + list(vae.decoder)]
    want = 0.5 * 0.3 * sum((k ** 2).sum() for k in kernels)
    np.testing.assert_allclose(float(jax.jit(lambda p: recommend.l2_penalty(
        p, weight=0.3))(params)), want, rtol=1e-5)
