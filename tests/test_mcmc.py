"""genjax.mcmc against mathematics.

* Invariance: MALA and HMC started at exact samples of a target (a correlated 2-D
  Gaussian, a 1-D two-component mixture) still hold exact samples after hundreds of steps:
  thousands of independent chains give iid draws at the last step, whose mean and
  covariance must lie within 5 Monte-Carlo standard errors of the truth, and whose
  chi-square statistic over cells of known probability must not reject at 1e-3. The same
  checks reject ULA at the same step (its discretisation bias) and a MALA whose accept
  rule forgets the proposal densities: they have power.
* The acceptance ratios against an independent float64 NumPy computation (the MH ratio
  with the log q terms written out; HMC's Hamiltonian after a hand-written leapfrog).
* ULA on N(0, s^2) is the AR(1) x' = (1 - h / (2 s^2)) x + sqrt(h) z, whose stationary
  variance h / (1 - (1 - h / (2 s^2))^2) the sampler reproduces; MALA at the same h has s^2.
* Annealed Langevin with the closed-form score of a smoothed 3-mode mixture puts the
  modes' weights (0.2, 0.3, 0.5) on them (chi-square on the counts); plain ULA from one
  mode does not.
* accept_rate: about 1 for tiny steps, decreasing with the step; per-chain step sizes and a
  vmap over step sizes equal separate calls.
* effective_sample_size on AR(1) chains: (1 - phi) / (1 + phi) of the draws, within 10%.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import signal, stats
from scipy.special import logsumexp

from genjax import mcmc
from genjax import random as grandom
from genjax.mcmc.chain import run_chain, split2
from genjax.mcmc.mala import accept_probability, value_and_grad

ALPHA = 1e-3          # significance of every goodness-of-fit test
Z = 5.0               # moment tolerance, in Monte-Carlo standard errors
N = 5000              # chains (iid draws at the last step)
STEPS = 300

# ------------------------------------------------------------------------- targets
# a correlated 2-D Gaussian: means (1, -2), scales (1, 3), correlation 0.9 (variances of
# its principal axes 9.83 and 0.17: the step must fit the narrow one)
MU = np.array([1.0, -2.0])
COV = np.array([[1.0, 0.9 * 3.0], [0.9 * 3.0, 9.0]])
CHOL = np.linalg.cholesky(COV)
PREC = np.linalg.inv(COV)


def gauss_log_prob(x):
    d = x - MU.astype(np.float32)
    return -0.5 * jnp.einsum("ci,ij,cj->c", d, PREC.astype(np.float32), d)


def gauss_score(x):
    return -(x - MU.astype(np.float32)) @ PREC.astype(np.float32)


def gauss_draws(n, seed):
    return MU + np.random.default_rng(seed).normal(size=(n, 2)) @ CHOL.T


def gauss_cells(x):
    """Cell of each draw among 40 of probability 1/40: whitened, 5 rings of the chi2(2)
    radius quantiles x 8 angular sectors."""
    u = np.linalg.solve(CHOL, (np.asarray(x, np.float64) - MU).T).T
    ring = np.minimum((stats.chi2(2).cdf((u ** 2).sum(1)) * 5).astype(int), 4)
    sector = np.minimum(((np.arctan2(u[:, 1], u[:, 0]) + np.pi) / (2 * np.pi) * 8)
                        .astype(int), 7)
    return np.bincount(ring * 8 + sector, minlength=40), np.full(40, 1 / 40)


# a 1-D two-component mixture 0.3 N(-2, 0.6^2) + 0.7 N(1.5, 1)
MW, MM, MS = np.array([0.3, 0.7]), np.array([-2.0, 1.5]), np.array([0.6, 1.0])


def mix_log_prob(x):                                    # x [C, 1] -> [C]
    z = (x - MM.astype(np.float32)) / MS.astype(np.float32)             # [C, 2]
    return jax.nn.logsumexp(np.log(MW / MS).astype(np.float32) - 0.5 * z ** 2, axis=-1)


def mix_draws(n, seed):
    rng = np.random.default_rng(seed)
    k = rng.choice(2, size=n, p=MW)
    return (MM[k] + MS[k] * rng.normal(size=n))[:, None]


def mix_cells(x):
    """20 cells of probability 1/20: equal bins of the mixture's CDF."""
    cdf = (MW * stats.norm.cdf((np.asarray(x, np.float64) - MM) / MS)).sum(-1)
    return np.bincount(np.minimum((cdf * 20).astype(int), 19), minlength=20), np.full(20, 0.05)


def mix_moments():
    mean = (MW * MM).sum()
    return np.array([mean]), np.array([[(MW * (MS ** 2 + MM ** 2)).sum() - mean ** 2]])


TARGETS = {
    "gauss": dict(log_prob=gauss_log_prob, draws=gauss_draws, cells=gauss_cells,
                  moments=lambda: (MU, COV)),
    "mixture": dict(log_prob=mix_log_prob, draws=mix_draws, cells=mix_cells,
                    moments=mix_moments),
}


def fit_report(x, target):
    """(largest |z| of the mean and covariance entries, chi-square p-value) of iid draws x
    [N, D] against the target: z = (estimate - truth) / its standard error, which is
    estimated from the draws (the standard deviation of x_i resp. (x_i - mu_i)(x_j - mu_j)
    over sqrt(N))."""
    x = np.asarray(x, np.float64)
    n, d = x.shape
    mean, cov = TARGETS[target]["moments"]()
    zs = list((x.mean(0) - mean) / (x.std(0) / np.sqrt(n)))
    c = x - mean
    for i in range(d):
        for j in range(i, d):
            f = c[:, i] * c[:, j]
            zs.append((f.mean() - cov[i, j]) / (f.std() / np.sqrt(n)))
    counts, probs = TARGETS[target]["cells"](x)
    return float(np.max(np.abs(zs))), float(stats.chisquare(counts, n * probs).pvalue)


def exact_start(target, seed=0):
    return jnp.asarray(TARGETS[target]["draws"](N, seed), jnp.float32)


# per target: MALA step (acceptance 0.82 and 0.84), HMC step and leapfrog count
SETTINGS = {"gauss": dict(mala=0.3, hmc=0.3, leapfrog=6),
            "mixture": dict(mala=1.0, hmc=0.6, leapfrog=5)}


def wrong_mala(key, x0, *, log_prob_fn, step_size, num_steps):
    """MALA whose Metropolis test uses p(y) / p(x) alone (the proposal is not symmetric:
    the log q terms are missing). Not invariant."""
    vg = value_and_grad(log_prob_fn)

    def transition(state, k, i):
        x, lp, g = state
        k_z, k_u = split2(k)
        y = x + 0.5 * step_size * g + jnp.sqrt(step_size) * grandom.normal(k_z, x.shape)
        lp_y, g_y = vg(y)
        log_r = lp_y - lp
        ok = jnp.log(grandom.uniform(k_u, (x.shape[0],))) < log_r
        return ((jnp.where(ok[:, None], y, x), jnp.where(ok, lp_y, lp),
                 jnp.where(ok[:, None], g_y, g)), accept_probability(log_r))

    return run_chain(key, (x0, *vg(x0)), transition, num_steps=num_steps,
                     position=lambda s: s[0])


def run_sampler(name, target, key, x0):
    lp, st = TARGETS[target]["log_prob"], SETTINGS[target]
    if name == "mala":
        return mcmc.mala(key, x0, log_prob_fn=lp, step_size=st["mala"], num_steps=STEPS)
    if name == "hmc":
        return mcmc.hmc(key, x0, log_prob_fn=lp, step_size=st["hmc"],
                        num_leapfrog=st["leapfrog"], num_steps=STEPS)
    if name == "hmc_mass":         # the target's marginal variances as the inverse mass
        var = np.diag(TARGETS[target]["moments"]()[1]).astype(np.float32)
        return mcmc.hmc(key, x0, log_prob_fn=lp, step_size=st["hmc"],
                        num_leapfrog=st["leapfrog"], num_steps=STEPS, inverse_mass=var)
    score = jax.grad(lambda x: jnp.sum(lp(x)))
    if name == "ula":
        return mcmc.ula(key, x0, score_fn=score, step_size=st["mala"], num_steps=STEPS)
    return wrong_mala(key, x0, log_prob_fn=lp, step_size=st["mala"], num_steps=STEPS)


# ---------------------------------------------------------------- invariance + power

@pytest.mark.parametrize("target", ["gauss", "mixture"])
@pytest.mark.parametrize("sampler", ["mala", "hmc", "hmc_mass"])
def test_exact_samplers_leave_the_target_invariant(sampler, target):
    x0 = exact_start(target)
    chain = jax.jit(lambda k, x: run_sampler(sampler, target, k, x))(jax.random.key(1), x0)
    acc = float(chain.accept_rate.mean())
    assert 0.5 < acc < 1.0, acc
    # the chains moved: most are far from where they started (in units of the target)
    moved = np.abs(np.asarray(chain.x - x0)).max(-1) > 0.1
    assert moved.mean() > 0.9
    z, p = fit_report(chain.x, target)
    assert z < Z and p > ALPHA, (sampler, target, z, p)


@pytest.mark.parametrize("target", ["gauss", "mixture"])
@pytest.mark.parametrize("sampler", ["ula", "wrong_mala"])
def test_the_invariance_check_rejects_biased_samplers(sampler, target):
    """ULA at MALA's step size, and MALA with the q terms left out of the Metropolis test,
    start at the same exact samples; the same check must reject them."""
    x0 = exact_start(target)
    chain = jax.jit(lambda k, x: run_sampler(sampler, target, k, x))(jax.random.key(1), x0)
    z, p = fit_report(chain.x, target)
    assert z > Z or p < ALPHA, (sampler, target, z, p)
    assert p < ALPHA, (sampler, target, z, p)


# ------------------------------------------------------------ acceptance by hand

def _np_log_prob_and_grad(x, a, b):
    """A non-Gaussian density in float64: log p(x) = -x^T A x / 2 - sum(x^4) / 4 +
    b . sin(x), and its gradient written out (x [C, D])."""
    lp = -0.5 * np.einsum("ci,ij,cj->c", x, a, x) - 0.25 * (x ** 4).sum(-1) \
        + (b * np.sin(x)).sum(-1)
    g = -x @ a - x ** 3 + b * np.cos(x)
    return lp, g


def _jax_log_prob(a, b):
    return lambda x: (-0.5 * jnp.einsum("ci,ij,cj->c", x, a, x) - 0.25 * (x ** 4).sum(-1)
                      + (b * jnp.sin(x)).sum(-1))


def _random_problem(seed, c=7, d=3):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(d, d))
    a = m @ m.T / d + np.eye(d)
    return a, rng.normal(size=d), rng.normal(size=(c, d)), rng.normal(size=(c, d))


def test_mala_log_acceptance_matches_a_hand_computation():
    a, b, x, noise = _random_problem(0)
    h = np.array([0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2])                 # per chain
    lp_x, g_x = _np_log_prob_and_grad(x, a, b)
    y = x + 0.5 * h[:, None] * g_x + np.sqrt(h)[:, None] * noise
    lp_y, g_y = _np_log_prob_and_grad(y, a, b)
    d = x.shape[1]

    def log_q(to, frm, g_frm):          # log N(to; frm + h/2 g, h I), with its constant
        r = to - frm - 0.5 * h[:, None] * g_frm
        return -0.5 * (r ** 2).sum(-1) / h - 0.5 * d * np.log(2 * np.pi * h)

    expected = lp_y - lp_x + log_q(x, y, g_y) - log_q(y, x, g_x)
    with jax.enable_x64(True):
        got = mcmc.mala_log_acceptance(_jax_log_prob(a, b), jnp.asarray(x), jnp.asarray(y),
                                       jnp.asarray(h))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-10)
    assert np.ptp(expected) > 1.0                   # a ratio that varies, not a constant
    # float32 too (what the sampler runs in)
    got32 = mcmc.mala_log_acceptance(_jax_log_prob(a.astype(np.float32), b.astype(np.float32)),
                                     jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32),
                                     jnp.asarray(h, jnp.float32))
    np.testing.assert_allclose(np.asarray(got32), expected, rtol=1e-3, atol=1e-3)


def test_hmc_log_acceptance_matches_a_hand_written_leapfrog():
    a, b, x, p = _random_problem(1)
    h, n_leap = 0.15, 7
    m_inv = np.array([0.5, 1.0, 2.0])

    xx, pp = x.copy(), p.copy()
    for _ in range(n_leap):
        pp = pp + 0.5 * h * _np_log_prob_and_grad(xx, a, b)[1]
        xx = xx + h * m_inv * pp
        pp = pp + 0.5 * h * _np_log_prob_and_grad(xx, a, b)[1]

    def energy(x, p):
        return -_np_log_prob_and_grad(x, a, b)[0] + 0.5 * (m_inv * p ** 2).sum(-1)

    expected = energy(x, p) - energy(xx, pp)
    with jax.enable_x64(True):
        lp = _jax_log_prob(a, b)
        x1, p1 = mcmc.leapfrog(lp, jnp.asarray(x), jnp.asarray(p), h, n_leap, m_inv)
        got = mcmc.hmc_log_acceptance(lp, jnp.asarray(x), jnp.asarray(p), h, n_leap, m_inv)
        got_h = mcmc.hamiltonian(lp, jnp.asarray(x), jnp.asarray(p), m_inv)
    np.testing.assert_allclose(np.asarray(x1), xx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(p1), pp, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(got_h), energy(x, p), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-9, atol=1e-9)
    assert np.abs(expected).max() > 1e-3            # the integrator's error is not zero
    # the leapfrog is reversible: flipping the momentum retraces the path
    with jax.enable_x64(True):
        xb, pb = mcmc.leapfrog(lp, x1, -p1, h, n_leap, m_inv)
    np.testing.assert_allclose(np.asarray(xb), x, atol=1e-9)
    np.testing.assert_allclose(np.asarray(-pb), p, atol=1e-9)


def test_samplers_accept_with_the_public_ratio():
    """One MALA step and one HMC step of the samplers accept exactly when u < ratio, with
    the draws of `mcmc.step_keys` and the public ratio functions."""
    a, b, x, _ = _random_problem(2, c=400)
    lp = _jax_log_prob(a.astype(np.float32), b.astype(np.float32))
    x = jnp.asarray(x, jnp.float32)
    key = jax.random.key(3)
    k_z, k_u = mcmc.step_keys(key, 0)
    z = grandom.normal(k_z, x.shape)
    log_u = np.log(np.asarray(grandom.uniform(k_u, (x.shape[0],))))

    h = 0.6
    y = x + 0.5 * h * jax.grad(lambda v: lp(v).sum())(x) + np.sqrt(h) * z
    log_r = np.asarray(mcmc.mala_log_acceptance(lp, x, y, h))
    chain = mcmc.mala(key, x, log_prob_fn=lp, step_size=h, num_steps=1)
    sure = np.abs(log_u - log_r) > 1e-4                  # away from float ties
    accepted = np.all(np.abs(np.asarray(chain.x) - np.asarray(y)) < 1e-5, -1)
    stayed = np.all(np.asarray(chain.x) == np.asarray(x), -1)
    np.testing.assert_array_equal(accepted[sure], (log_u < log_r)[sure])
    np.testing.assert_array_equal(stayed[sure], (log_u >= log_r)[sure])
    assert 0.2 < accepted.mean() < 0.95
    np.testing.assert_allclose(np.asarray(chain.accept_rate),
                               np.minimum(1.0, np.exp(log_r)), rtol=1e-4, atol=1e-5)

    h, n_leap = 0.4, 5
    y, _ = mcmc.leapfrog(lp, x, z, h, n_leap)
    log_r = np.asarray(mcmc.hmc_log_acceptance(lp, x, z, h, n_leap))
    chain = mcmc.hmc(key, x, log_prob_fn=lp, step_size=h, num_leapfrog=n_leap, num_steps=1)
    sure = np.abs(log_u - log_r) > 1e-4
    accepted = np.all(np.abs(np.asarray(chain.x) - np.asarray(y)) < 1e-5, -1)
    np.testing.assert_array_equal(accepted[sure], (log_u < log_r)[sure])
    assert 0.2 < accepted.mean() < 0.95


# ------------------------------------------------------------------ ULA's known bias

def test_ula_has_the_closed_form_stationary_variance_and_mala_removes_it():
    s2, h, n = 2.25, 1.0, 20000
    a = 1.0 - h / (2 * s2)
    ula_var = h / (1 - a ** 2)                               # 2.53, 12% above s^2
    x0 = jnp.asarray(np.random.default_rng(0).normal(size=(n, 1)) * np.sqrt(s2), jnp.float32)
    key = jax.random.key(4)

    @jax.jit
    def run(key, x0):
        u = mcmc.ula(key, x0, score_fn=lambda x: -x / s2, step_size=h, num_steps=200)
        m = mcmc.mala(key, x0, log_prob_fn=lambda x: -0.5 * (x ** 2).sum(-1) / s2,
                      step_size=h, num_steps=200)
        return u.x, m.x, m.accept_rate

    xu, xm, acc = run(key, x0)
    se = np.sqrt(2.0 / n)                  # relative standard error of a Gaussian variance
    vu, vm = float(np.var(xu)), float(np.var(xm))
    assert abs(vu / ula_var - 1) < 4 * se, (vu, ula_var)
    assert abs(vm / s2 - 1) < 4 * se, (vm, s2)
    assert abs(vu / s2 - 1) > 8 * se                         # the bias is resolved
    assert 0.5 < float(acc.mean()) < 0.99          # MALA did reject some proposals


def test_ess_of_ula_chains_is_that_of_their_ar1_process():
    """ULA on N(0, s^2) is AR(1) with phi = 1 - h / (2 s^2): the sampler's kept states must
    have the effective sample size (1 - phi) / (1 + phi) per draw (and with thin = 4,
    phi^4 in place of phi)."""
    s2, h = 1.0, 0.5
    phi = 1 - h / (2 * s2)                                   # 0.75
    x0 = jnp.asarray(np.random.default_rng(13).normal(size=(64, 1)), jnp.float32)
    key = jax.random.key(14)
    for thin in (1, 4):
        chain = jax.jit(lambda k, x: mcmc.ula(k, x, score_fn=lambda v: -v / s2,
                                              step_size=h, num_steps=4000 * thin, thin=thin,
                                              keep_samples=True))(key, x0)
        p = phi ** thin
        ess = mcmc.effective_sample_size(chain.samples)
        np.testing.assert_allclose(ess, 4000 * 64 * (1 - p) / (1 + p), rtol=0.1)


# ------------------------------------------------------------------ annealed Langevin

W3 = np.array([0.2, 0.3, 0.5])
M3 = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 6.0]])
S3 = 0.5                                                # each component N(m_k, 0.25 I)


def smoothed_mixture_score(sigma):
    """The score of the mixture convolved with N(0, sigma^2 I): a mixture with variances
    S3^2 + sigma^2, whose score is -(x - sum_k r_k(x) m_k) / v with r the responsibilities."""
    def score(x):
        v = S3 ** 2 + sigma ** 2
        d2 = ((x[:, None, :] - M3.astype(np.float32)) ** 2).sum(-1)              # [C, 3]
        r = jax.nn.softmax(np.log(W3).astype(np.float32) - 0.5 * d2 / v, axis=-1)
        return -(x - r @ M3.astype(np.float32)) / v
    return score


@pytest.mark.parametrize("n", [4000, pytest.param(20000, marks=pytest.mark.slow)])
def test_annealed_langevin_finds_the_modes_in_proportion(n):
    # a wide geometric ladder, sigma_1 = 10 > the largest distance between modes (8), and
    # alpha_i / sigma_i^2 = 0.2 at every level. Annealing is not exact: with 10 levels of
    # 100 steps the counts of 20,000 chains are 1-2% off (0.215, 0.299, 0.486: p = 5e-7);
    # 30 levels bring the error below what 20,000 chains resolve (p = 0.49)
    sigmas = np.geomspace(10.0, 0.1, 30).astype(np.float32)

    def score_fn(x, level):
        return smoothed_mixture_score(jnp.asarray(sigmas)[level])(x)

    @jax.jit
    def run(key):
        x0 = 10.0 * jax.random.normal(key, (n, 2))
        chain = mcmc.annealed_langevin(jax.random.fold_in(key, 1), x0, score_fn=score_fn,
                                       sigmas=sigmas, step_size=0.002, steps_per_level=100,
                                       keep_levels=True)
        # plain ULA at the last level's score, every chain started at the first mode
        stuck = mcmc.ula(key, jnp.broadcast_to(jnp.asarray(M3[0], jnp.float32), (n, 2)),
                         score_fn=smoothed_mixture_score(0.1), step_size=0.05,
                         num_steps=1000)
        return chain, stuck.x

    chain, stuck = run(jax.random.key(5))
    assert chain.samples.shape == (30, n, 2)
    x = np.asarray(chain.x)

    def assign(x):
        return np.argmin(((x[:, None] - M3) ** 2).sum(-1), 1)

    counts = np.bincount(assign(x), minlength=3)
    assert stats.chisquare(counts, n * W3).pvalue > ALPHA, counts
    # the denoised samples sit at the modes with the component's spread (0.5)
    k = assign(x)
    spread = np.sqrt(((x - M3[k]) ** 2).mean())
    assert 0.4 < spread < 0.65, spread
    # at the first level the chains are one broad cloud, not yet at the modes
    first = np.asarray(chain.samples[0])
    assert np.sqrt(((first - M3[assign(first)]) ** 2).mean()) > 2.0
    # plain ULA cannot leave the mode it starts in
    assert stats.chisquare(np.bincount(assign(np.asarray(stuck)), minlength=3),
                           n * W3).pvalue < 1e-12


# ---------------------------------------------------------------- acceptance rates

def test_accept_rate_falls_with_the_step_and_per_chain_steps_match_separate_calls():
    hs = np.array([1e-4, 0.05, 0.3, 1.0], np.float32)
    c = 500
    x0 = jnp.asarray(np.tile(gauss_draws(c, 6), (len(hs), 1)), jnp.float32)      # [4c, 2]
    per_chain = jnp.asarray(np.repeat(hs, c))
    key = jax.random.key(7)

    run = jax.jit(lambda h, x: mcmc.mala(key, x, log_prob_fn=gauss_log_prob, step_size=h,
                                         num_steps=50, burn_in=10))
    chain = run(per_chain, x0)
    acc = np.asarray(chain.accept_rate).reshape(len(hs), c).mean(1)
    assert acc[0] > 0.999
    assert np.all(np.diff(acc) < -0.01), acc
    for i, h in enumerate(hs):       # each block of chains is the separate call's block
        sep = run(jnp.float32(h), x0)
        rows = slice(i * c, (i + 1) * c)
        np.testing.assert_allclose(np.asarray(chain.x[rows]), np.asarray(sep.x[rows]),
                                   rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(chain.accept_rate[rows]),
                                   np.asarray(sep.accept_rate[rows]), rtol=1e-5, atol=1e-6)

    # HMC's rate falls with the step too
    hmc = jax.jit(jax.vmap(lambda h: mcmc.hmc(key, x0[:c], log_prob_fn=gauss_log_prob,
                                              step_size=h, num_leapfrog=4, num_steps=30)
                           .accept_rate.mean()))
    hacc = np.asarray(hmc(jnp.asarray([0.01, 0.2, 0.5])))
    assert hacc[0] > 0.999 and np.all(np.diff(hacc) < 0), hacc


@pytest.mark.slow
def test_vmap_over_step_sizes_equals_separate_calls():
    x0 = jnp.asarray(mix_draws(300, 8), jnp.float32)
    key = jax.random.key(9)
    hs = jnp.asarray([0.1, 0.5, 1.5])

    def run(h):
        m = mcmc.mala(key, x0, log_prob_fn=mix_log_prob, step_size=h, num_steps=40)
        u = mcmc.ula(key, x0, score_fn=jax.grad(lambda x: mix_log_prob(x).sum()),
                     step_size=h, num_steps=40)
        c = mcmc.hmc(key, x0, log_prob_fn=mix_log_prob, step_size=h / 2, num_leapfrog=3,
                     num_steps=40)
        return m.x, m.accept_rate, u.x, c.x, c.accept_rate

    batched = jax.jit(jax.vmap(run))(hs)
    single = jax.jit(run)
    for i in range(len(hs)):
        for got, want in zip(batched, single(hs[i])):
            np.testing.assert_allclose(np.asarray(got[i]), np.asarray(want),
                                       rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_chain_bookkeeping_burn_in_thin_and_kept_states():
    """samples are the states after steps burn_in + thin, burn_in + 2 thin, ... of the
    same run, and accept_rate averages only the steps after burn-in."""
    x0 = jnp.asarray(gauss_draws(64, 10), jnp.float32)
    key = jax.random.key(11)
    kw = dict(log_prob_fn=gauss_log_prob, step_size=0.5)
    every = mcmc.mala(key, x0, num_steps=23, keep_samples=True, **kw)
    assert every.samples.shape == (23, 64, 2)
    np.testing.assert_array_equal(np.asarray(every.samples[-1]), np.asarray(every.x))
    chain = mcmc.mala(key, x0, num_steps=23, burn_in=5, thin=4, keep_samples=True, **kw)
    assert chain.samples.shape == ((23 - 5) // 4, 64, 2)
    np.testing.assert_allclose(np.asarray(chain.samples),
                               np.asarray(every.samples[5 + 4 - 1::4][:4]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(chain.x), np.asarray(every.x), atol=1e-6)
    assert mcmc.mala(key, x0, num_steps=23, **kw).samples is None
    # step i draws from fold_in(key, i) whatever the run length, so the first 5 steps of
    # every run are the same: the rate over steps 6..23 is (23 r_23 - 5 r_5) / 18
    r5 = np.asarray(mcmc.mala(key, x0, num_steps=5, **kw).accept_rate, np.float64)
    r23 = np.asarray(every.accept_rate, np.float64)
    np.testing.assert_allclose(np.asarray(chain.accept_rate), (23 * r23 - 5 * r5) / 18,
                               atol=1e-5)
    assert np.abs(r5 - r23).max() > 1e-3
    u = mcmc.ula(key, x0, score_fn=gauss_score, step_size=0.1, num_steps=10, burn_in=3,
                 thin=2, keep_samples=True)
    assert u.samples.shape == (3, 64, 2)
    np.testing.assert_array_equal(np.asarray(u.accept_rate), np.ones(64))
    with pytest.raises(ValueError, match="burn_in"):
        mcmc.mala(key, x0, num_steps=5, burn_in=5, **kw)
    with pytest.raises(ValueError, match="step_size"):
        mcmc.mala(key, x0, log_prob_fn=gauss_log_prob, step_size=jnp.ones(3), num_steps=5)
    with pytest.raises(ValueError, match="log_prob_fn"):
        mcmc.mala(key, x0, log_prob_fn=lambda x: x, step_size=0.1, num_steps=5)


# ------------------------------------------------------------------------- ESS

def _ar1(phi, s, c, d, seed):
    """c chains of s draws of d independent stationary AR(1) coordinates, [S, C, D]."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=(s, c, d))
    e[0] /= np.sqrt(1 - phi ** 2)                      # stationary start
    return signal.lfilter([1.0], [1.0, -phi], e, axis=0)


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9, -0.4])
def test_effective_sample_size_of_ar1_chains(phi):
    # the estimator's relative spread here is 0.7% (phi = 0) to 3% (phi = 0.9) (20 seeds)
    s, c, d = 4000, 64, 4
    x = _ar1(phi, s, c, d, seed=int(10 * (phi + 1)))
    ess = mcmc.effective_sample_size(x)
    assert ess.shape == (d,)
    want = s * c * (1 - phi) / (1 + phi)
    np.testing.assert_allclose(ess, want, rtol=0.1)
    # jax input, an event shape, and a single chain work
    assert mcmc.effective_sample_size(jnp.asarray(x.reshape(s, c, 2, 2), jnp.float32)).shape \
        == (2, 2)
    one = mcmc.effective_sample_size(_ar1(phi, 50000, 1, 1, seed=3))      # spread <= 6%
    np.testing.assert_allclose(one, 50000 * (1 - phi) / (1 + phi), rtol=0.2)


def test_effective_sample_size_sees_disagreeing_chains():
    """Chains stuck at different levels (between-chain variance) have few effective
    draws, though each chain alone looks iid."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(1000, 8, 1)) * 0.1 + rng.normal(size=(1, 8, 1))
    assert mcmc.effective_sample_size(x)[0] < 0.05 * 8000


def test_logsumexp_reference():          # the mixture density agrees with scipy's
    x = np.linspace(-5, 5, 11)[:, None]
    ref = logsumexp(np.log(MW) + stats.norm.logpdf(x, MM, MS), axis=-1) + 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(np.asarray(mix_log_prob(jnp.asarray(x, jnp.float32))), ref,
                               rtol=1e-5, atol=1e-5)
