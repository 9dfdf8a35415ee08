"""The diffusion core and the DDPM objectives against mathematics: moments of q(x_t|x_0),
the posterior by Bayes' rule, an oracle denoiser, DDIM(eta=1, S=T) = ancestral, the
discretised decoder's normalisation and the bound's value in a known case."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from genjax.diffusion import forward, samplers
from genjax.diffusion.schedules import cosine_betas, make_schedule
from genjax.losses import ddpm as L

E = (4, 4, 1)


def _x0(seed=0, b=3):
    """8-bit images scaled to [-1, 1], with both edge values present."""
    u8 = np.random.default_rng(seed).integers(0, 256, (b,) + E)
    u8[:, 0, 0, 0], u8[:, 0, 1, 0] = 0, 255
    return jnp.asarray(u8 / 127.5 - 1.0, jnp.float32)


def _oracle(s, x0_star, prediction):
    """The ideal denoiser when the data are the single image x0_star."""
    def model_fn(xt, t):
        x0 = jnp.broadcast_to(x0_star, xt.shape)
        eps = forward.eps_from_x0(s, xt, t, x0)
        return {"eps": eps, "x0": x0, "v": forward.v_from_eps_x0(s, t, eps, x0)}[prediction]
    return model_fn


def test_schedules():
    s = make_schedule("linear", 1000)
    np.testing.assert_allclose([s.betas[0], s.betas[-1]], [1e-4, 0.02], rtol=1e-6)
    assert 0 < float(s.alpha_bars[-1]) < 1e-4                        # x_T is nearly pure noise
    c = make_schedule("cosine", 100)
    t = np.arange(1, 101) / 100
    f = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    np.testing.assert_allclose(np.asarray(c.alpha_bars)[:-1], f[:-1], rtol=1e-4)
    assert np.all(cosine_betas(100) <= 0.999)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("quadratic", 10)


def test_q_samples_have_the_closed_form_mean_and_variance():
    s = make_schedule("linear", 200)
    x0 = jnp.broadcast_to(_x0()[:1], (20000,) + E)
    for step in (0, 50, 199):
        t = jnp.full((x0.shape[0],), step)
        xt = forward.q_sample(s, x0, t, jax.random.normal(jax.random.key(step), x0.shape))
        mean, var = forward.q_mean_var(s, x0, t)
        np.testing.assert_allclose(xt.mean(0), mean[0], atol=4 * math.sqrt(var[0, 0, 0, 0] / 20000))
        np.testing.assert_allclose(xt.var(0), np.full(E, var[0, 0, 0, 0]), rtol=0.05)


def test_posterior_matches_bayes_rule():
    """q(x_{t-1} | x_t, x_0) from prior N(sqrt(ab_{t-1}) x_0, 1 - ab_{t-1}) and likelihood
    N(x_t; sqrt(alpha_t) x_{t-1}, beta_t): product of Gaussians, in float64, and on a grid."""
    s = make_schedule("cosine", 50)
    betas, ab = np.asarray(s.betas, np.float64), np.cumprod(1 - np.asarray(s.betas, np.float64))
    x0, xt = 0.3, -0.7
    for step in (1, 10, 49):
        ab_prev, alpha = ab[step - 1], 1 - betas[step]
        prec = 1 / (1 - ab_prev) + alpha / betas[step]
        mean = (math.sqrt(ab_prev) * x0 / (1 - ab_prev) + math.sqrt(alpha) * xt / betas[step]) / prec
        m, v, lv = forward.q_posterior(s, jnp.full((1, 1), x0), jnp.full((1, 1), xt),
                                       jnp.array([step]))
        np.testing.assert_allclose([float(m[0, 0]), float(v[0, 0])], [mean, 1 / prec], rtol=2e-4)
        np.testing.assert_allclose(float(lv[0, 0]), math.log(1 / prec), rtol=1e-4, atol=1e-5)
        grid = np.linspace(mean - 12 / math.sqrt(prec), mean + 12 / math.sqrt(prec), 20001)
        w = (norm.pdf(grid, math.sqrt(ab_prev) * x0, math.sqrt(1 - ab_prev))
             * norm.pdf(xt, math.sqrt(alpha) * grid, math.sqrt(betas[step])))
        w /= w.sum()
        np.testing.assert_allclose((w * grid).sum(), mean, rtol=1e-4)
        np.testing.assert_allclose((w * (grid - mean) ** 2).sum(), 1 / prec, rtol=1e-3)
    # t = 0: the posterior is x_0 itself
    m, v, _ = forward.q_posterior(s, jnp.full((1, 1), x0), jnp.full((1, 1), xt), jnp.array([0]))
    np.testing.assert_allclose([float(m[0, 0]), float(v[0, 0])], [x0, 0.0], atol=1e-6)


def test_prediction_conversions_round_trip():
    s = make_schedule("linear", 100)
    x0, eps = _x0(), jax.random.normal(jax.random.key(0), (3,) + E)
    t = jnp.array([0, 37, 99])
    xt = forward.q_sample(s, x0, t, eps)
    v = forward.v_from_eps_x0(s, t, eps, x0)
    for pred, out in (("eps", eps), ("x0", x0), ("v", v)):
        x0_hat, eps_hat = forward.to_x0_eps(s, xt, t, out, pred)
        np.testing.assert_allclose(x0_hat, x0, atol=2e-3)   # eps -> x0 divides by sqrt(ab)
        np.testing.assert_allclose(eps_hat, eps, atol=2e-3)


@pytest.mark.parametrize("prediction", ["eps", "x0", "v"])
def test_oracle_denoiser_has_zero_loss_and_the_samplers_recover_the_data(prediction):
    s = make_schedule("linear", 100)
    x0 = _x0(b=1)
    model_fn = _oracle(s, x0[0], prediction)
    batch = jnp.broadcast_to(x0, (16,) + E)
    loss, _ = L.noise_loss(batch, jax.random.key(1), model_fn=model_fn, schedule=s,
                           prediction=prediction)
    assert float(loss) < 1e-8
    for sample in (samplers.ancestral(jax.random.key(2), model_fn, s, (4,) + E,
                                      prediction=prediction),
                   samplers.ddim(jax.random.key(3), model_fn, s, (4,) + E, num_steps=10,
                                 prediction=prediction)):
        np.testing.assert_allclose(sample, batch[:4], atol=1e-5)


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_with_eta_one_and_all_steps_is_the_ancestral_sampler(clip):
    s = make_schedule("linear", 60)
    w = jax.random.normal(jax.random.key(0), (16, 16)) * 0.3

    def model_fn(xt, t):          # some smooth, t-dependent, imperfect denoiser
        flat = xt.reshape(xt.shape[0], -1)
        return (jnp.tanh(flat @ w) * (1 + t[:, None] / 60)).reshape(xt.shape)

    key = jax.random.key(5)
    a, path_a = samplers.ancestral(key, model_fn, s, (6,) + E, variance="posterior",
                                   clip=clip, return_path=True)
    d, path_d = samplers.ddim(key, model_fn, s, (6,) + E, num_steps=60, eta=1.0, clip=clip,
                              return_path=True)
    assert path_a.shape == path_d.shape == (61, 6) + E
    np.testing.assert_allclose(path_d, path_a, rtol=1e-4, atol=2e-4)
    np.testing.assert_allclose(d, a, rtol=1e-4, atol=2e-4)
    # eta = 0 is deterministic: the same start gives the same sample whatever the key's noise
    d0 = samplers.ddim(key, model_fn, s, (6,) + E, num_steps=20, eta=0.0)
    assert not np.allclose(d0, d)


def test_discretised_gaussian_sums_to_one_over_the_256_values():
    x = jnp.asarray(np.arange(256) / 127.5 - 1.0, jnp.float32)
    for mean, log_scale in ((0.1, -3.0), (-0.97, -1.0), (0.999, -6.0), (0.3, 1.0)):
        p = jnp.exp(L.discretized_gaussian_log_likelihood(x, mean=mean, log_scale=log_scale))
        np.testing.assert_allclose(float(p.sum()), 1.0, rtol=1e-4)


def test_bound_equals_its_analytic_value_for_the_oracle_with_posterior_variance():
    """Data = one image x*. The oracle's reverse steps equal the true posteriors, so every
    KL term vanishes, and the bound is L_T + L_0 in closed form: L_T from the Gaussian KL,
    L_0 the mass of x*'s bin under N(x*, beta-tilde_1)."""
    s = make_schedule("linear", 100)
    x0 = _x0(seed=3, b=1)
    model_fn = _oracle(s, x0[0], "eps")
    terms = L.vlb_terms(x0, jax.random.key(0), model_fn=model_fn, schedule=s,
                        variance="posterior")
    x = np.asarray(x0, np.float64).ravel()
    ab_T = np.prod(1 - np.asarray(s.betas, np.float64))
    prior = 0.5 * np.sum(ab_T * x**2 + (1 - ab_T) - 1 - np.log(1 - ab_T))
    sigma = math.exp(0.5 * float(s.posterior_log_variance[0]))
    h = 1 / 255 / sigma
    per_dim = np.where(np.abs(x) > 0.999, np.log(norm.cdf(h)), np.log(norm.cdf(h) - norm.cdf(-h)))
    analytic = prior - per_dim.sum()
    np.testing.assert_allclose(float(terms["prior"][0]), prior, atol=1e-6)   # ~6.6e-5 nats
    np.testing.assert_allclose(float(terms["bound"][0]), analytic, rtol=1e-3)
    bpd = L.bits_per_dim(terms["bound"], x.size)
    np.testing.assert_allclose(float(bpd[0]), analytic / (x.size * math.log(2)), rtol=1e-3)


@pytest.mark.slow
def test_stratified_bound_estimate_is_unbiased():
    s = make_schedule("linear", 40)
    x0 = _x0(seed=4, b=2)
    model_fn = lambda xt, t: 0.5 * xt                                       # noqa: E731
    exact = L.vlb_terms(x0, jax.random.key(0), model_fn=model_fn, schedule=s)["bound"]
    ests = jax.jit(jax.vmap(lambda k: L.vlb_terms(x0, k, model_fn=model_fn, schedule=s,
                                                  num_t=7)["bound"]))(
        jax.random.split(jax.random.key(1), 400))
    # the exact sum has its own noise (one x_t per step): compare with its average
    exacts = jax.jit(jax.vmap(lambda k: L.vlb_terms(x0, k, model_fn=model_fn,
                                                    schedule=s)["bound"]))(
        jax.random.split(jax.random.key(2), 100))
    se = np.sqrt(ests.var(0) / len(ests) + exacts.var(0) / len(exacts))
    assert np.all(np.abs(ests.mean(0) - exacts.mean(0)) < 4 * se), (ests.mean(0), exacts.mean(0), se)
    assert np.all(np.abs(exact - exacts.mean(0)) < 4 * exacts.std(0))
    assert np.all(se < 0.02 * exacts.mean(0))                # the test has power
    with pytest.raises(ValueError, match="between 1 and"):
        L.vlb_terms(x0, jax.random.key(0), model_fn=model_fn, schedule=s, num_t=40)
