"""The DDPM denoiser as a score, against Gaussian data where everything is closed form:
Tweedie's formula (score_from_eps of the MMSE noise predictor is the score of q(x_t), for
eps-, x0- and v-parameterised denoisers), the NCSN view at ddpm_sigmas (DSM there is
L_simple), and predictor-corrector sampling (corrector_steps=0 is the ancestral sampler;
with the exact model the samples have the data's moments)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.stats import norm

from genjax.diffusion import forward, samplers
from genjax.diffusion import score as DS
from genjax.diffusion.schedules import make_schedule
from genjax.losses import ddpm as LD
from genjax.losses import score as LS

E = (16, 16, 1)                                         # D = 256 independent pixels
D = 256
M = jnp.linspace(-0.5, 0.5, D).reshape(E)               # x_0 ~ N(m, v) per pixel
V = jnp.linspace(0.05, 0.3, D).reshape(E)


def _ab(s, t, x):
    return forward._at(s.alpha_bars, t, x)


def _optimal(s, prediction, m=M, v=V):
    """The MMSE denoiser for x_0 ~ N(m, v) (independent pixels), read as ``prediction``:
    x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps is Gaussian with variance ab v + 1 - ab, and
    E[eps | x_t] = sqrt(1 - ab) (x_t - sqrt(ab) m) / (ab v + 1 - ab) (Gaussian
    conditioning), E[x_0 | x_t] = m + sqrt(ab) v (x_t - sqrt(ab) m) / (ab v + 1 - ab)."""
    def model_fn(xt, t):
        ab = _ab(s, t, xt)
        r = (xt - jnp.sqrt(ab) * m) / (ab * v + 1 - ab)
        eps, x0 = jnp.sqrt(1 - ab) * r, m + jnp.sqrt(ab) * v * r
        return {"eps": eps, "x0": x0, "v": jnp.sqrt(ab) * eps - jnp.sqrt(1 - ab) * x0}[prediction]
    return model_fn


def _true_score(s, xt, t, m=M, v=V):
    """grad_x log q(x_t) with q(x_t) = N(sqrt(ab) m, ab v + 1 - ab), by autodiff of the
    log-density (independent of the closed forms above)."""
    def log_q(x):
        ab = _ab(s, t, x)
        return norm.logpdf(x, jnp.sqrt(ab) * m, jnp.sqrt(ab * v + 1 - ab)).sum()
    return jax.grad(log_q)(xt)


def test_tweedie_score_from_the_mmse_denoiser_is_the_score_of_q_xt():
    s = make_schedule("cosine", 100)
    t = jnp.arange(100)                                  # every step, one example each
    xt = jax.random.normal(jax.random.key(0), (100,) + E) * 1.3

    @jax.jit
    def scores(xt):
        eps = _optimal(s, "eps")(xt, t)
        return (_true_score(s, xt, t), DS.score_from_eps(s, t, eps),
                DS.eps_from_score(s, t, DS.score_from_eps(s, t, eps)), eps,
                *[DS.score_fn(_optimal(s, p), s, prediction=p)(xt, t) for p in ("eps", "x0", "v")])

    true, from_eps, eps_back, eps, *by_prediction = scores(xt)
    scale = np.abs(np.asarray(true)).max(axis=(1, 2, 3), keepdims=True)          # per step
    np.testing.assert_allclose(from_eps / scale, true / scale, atol=1e-5)
    np.testing.assert_allclose(eps_back, eps, rtol=1e-5, atol=1e-6)
    for p, got in zip(("eps", "x0", "v"), by_prediction):
        # x0 -> eps divides by sqrt(1 - ab): float32 rounding grows at the first steps
        np.testing.assert_allclose(got / scale, true / scale, atol=1e-5 if p != "x0" else 2e-4,
                                   err_msg=p)
    with pytest.raises(ValueError, match="unknown prediction"):
        DS.score_fn(_optimal(s, "eps"), s, prediction="score")


def test_ddpm_sigmas_are_the_ncsn_levels_of_the_scaled_variable():
    s = make_schedule("linear", 200)
    sig = np.asarray(DS.ddpm_sigmas(s))
    ab = np.cumprod(1 - np.asarray(s.betas, np.float64))
    assert sig.shape == (200,) and np.all(np.diff(sig) > 0)
    np.testing.assert_allclose(sig, np.sqrt((1 - ab) / ab), rtol=1e-4)
    # y = x_t / sqrt(ab) ~ N(m, v + sigma_t^2): its score is -eps_hat / sigma_t
    t = jnp.arange(0, 200, 7)
    y = jax.random.normal(jax.random.key(1), (len(t),) + E) * 2

    @jax.jit
    def both(y):
        sig_t = DS.ddpm_sigmas(s)[t].reshape(-1, 1, 1, 1)
        eps = _optimal(s, "eps")(jnp.sqrt(_ab(s, t, y)) * y, t)
        ncsn = jax.grad(lambda y: norm.logpdf(y, M, jnp.sqrt(V + sig_t**2)).sum())(y)
        return -eps / sig_t, ncsn

    np.testing.assert_allclose(*both(y), rtol=2e-4, atol=2e-5)


def test_dsm_at_ddpm_sigmas_is_l_simple():
    """With score_fn(y, t) = -eps_model(sqrt(ab_t) y, t) / sigma_t on the scaled variable,
    the NCSN objective at ddpm_sigmas is DDPM's L_simple summed over pixels and halved,
    draw for draw (the two losses use the same key the same way)."""
    s = make_schedule("linear", 50)
    sig = DS.ddpm_sigmas(s)
    w = jax.random.normal(jax.random.key(2), (D, D)) / 16

    def eps_model(xt, t):                  # an imperfect, t-dependent denoiser
        flat = xt.reshape(xt.shape[0], -1)
        return (jnp.tanh(flat @ w) * (1 + t[:, None] / 50)).reshape(xt.shape)

    def ncsn(y, level):
        ab = _ab(s, level, y)
        return -eps_model(jnp.sqrt(ab) * y, level) / sig[level].reshape(-1, 1, 1, 1)

    x0 = jax.random.uniform(jax.random.key(3), (8,) + E, minval=-1, maxval=1)
    key = jax.random.key(4)
    dsm, mse = jax.jit(lambda x0: (
        LS.denoising_score_matching(x0, key, score_fn=ncsn, sigmas=sig)[0],
        LD.noise_loss(x0, key, model_fn=eps_model, schedule=s)[0]))(x0)
    np.testing.assert_allclose(float(dsm), 0.5 * D * float(mse), rtol=1e-4)


def test_predictor_corrector_without_corrector_steps_is_the_ancestral_sampler():
    s = make_schedule("linear", 30)
    w = jax.random.normal(jax.random.key(5), (16, 16)) * 0.3

    def model_fn(xt, t):
        flat = xt.reshape(xt.shape[0], -1)
        return (jnp.tanh(flat @ w) * (1 + t[:, None] / 30)).reshape(xt.shape)

    key, shape = jax.random.key(6), (3, 4, 4, 1)
    a, path_a, pc, path_pc, pc1 = jax.jit(lambda key: (
        *samplers.ancestral(key, model_fn, s, shape, return_path=True),
        *DS.predictor_corrector(key, model_fn, s, shape, corrector_steps=0, return_path=True),
        DS.predictor_corrector(key, model_fn, s, shape, corrector_steps=1)))(key)
    assert path_pc.shape == (31,) + shape
    np.testing.assert_array_equal(path_pc, path_a)
    np.testing.assert_array_equal(pc, a)
    assert not np.allclose(pc1, a)                               # the corrector does move x
    with pytest.raises(ValueError, match="corrector_steps"):
        DS.predictor_corrector(key, model_fn, s, shape, corrector_steps=-1)


def _standardised(x, m=M, v=V):
    return (np.asarray(x, np.float64) - np.asarray(m)) / np.sqrt(np.asarray(v))


def test_predictor_corrector_with_the_exact_model_samples_the_data_distribution():
    """Gaussian data and its exact denoiser. The ancestral sampler with the "posterior"
    variance (beta-tilde, the lower bound) is too narrow with 50 steps; Langevin corrector
    steps with the exact score pull it back to the data's moments (unadjusted Langevin at
    snr 0.16 leaves a bias of a few percent in the variance)."""
    s = make_schedule("cosine", 50)
    n = 256                                                 # x 256 pixels: 65536 values
    sample = jax.jit(lambda key, c: DS.predictor_corrector(
        key, _optimal(s, "eps"), s, (n,) + E, variance="posterior", clip=False,
        corrector_steps=c), static_argnums=1)
    key = jax.random.key(7)
    anc = _standardised(sample(key, 0))
    pc = _standardised(sample(key, 3))
    se_mean = 1 / np.sqrt(anc.size)
    for z in (anc, pc):
        assert abs(z.mean()) < 5 * se_mean, z.mean()
        np.testing.assert_array_less(np.abs(z.mean(0)), 5 / np.sqrt(n))       # per pixel
    assert anc.var() < 0.9                                  # the predictor alone: too narrow
    assert abs(pc.var() - 1) < 0.04, pc.var()
    assert abs(pc.var() - 1) < 0.5 * abs(anc.var() - 1)


@pytest.mark.slow
def test_predictor_corrector_samples_a_two_component_mixture():
    """x_0 per pixel from 0.3 N(-0.6, 0.01) + 0.7 N(0.5, 0.02): the exact denoiser is the
    responsibility-weighted mix of the components' Gaussian ones. Predictor-corrector
    samples put the right mass in each mode, with the right moments (the narrow modes come
    out about 10% wider: 200 steps' discretisation and the unadjusted corrector)."""
    s = make_schedule("linear", 200)
    pis, ms, vs = np.array([0.3, 0.7]), np.array([-0.6, 0.5]), np.array([0.01, 0.02])

    def eps_model(xt, t):
        ab = _ab(s, t, xt)[..., None]                                   # [B, 1, ..., 1]
        x = xt[..., None]
        var = ab * vs + 1 - ab
        log_r = jnp.log(pis) + norm.logpdf(x, jnp.sqrt(ab) * ms, jnp.sqrt(var))
        r = jax.nn.softmax(log_r, -1)
        score = jnp.sum(r * -(x - jnp.sqrt(ab) * ms) / var, -1)
        return DS.eps_from_score(s, t, score)

    shape = (512, 64)
    x = np.asarray(jax.jit(lambda k: DS.predictor_corrector(
        k, eps_model, s, shape, clip=False, corrector_steps=2))(jax.random.key(8)), np.float64)
    mean = float(pis @ ms)
    var = float(pis @ (vs + ms**2)) - mean**2
    frac = (x < 0).mean()
    assert abs(frac - 0.3) < 5 * np.sqrt(0.3 * 0.7 / x.size) + 0.005, frac
    assert abs(x.mean() - mean) < 0.01, x.mean()
    assert abs(x.var() / var - 1) < 0.04, x.var() / var
    left = x[x < 0]
    right = x[x >= 0]
    for part, m, v in ((left, -0.6, 0.01), (right, 0.5, 0.02)):
        assert abs(part.mean() - m) < 0.01, (m, part.mean())
        assert abs(part.var() / v - 1) < 0.2, (v, part.var())
