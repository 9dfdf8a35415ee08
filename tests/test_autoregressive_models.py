"""The autoregressive models (FVBN, NADE, MADE, RNADE): exact normalisation over all 2^D
binary vectors, MADE's masks are autoregressive (jax.jacfwd), and the compiled ancestral
samplers draw from the models' own distributions (chi-square against the exact
probabilities, with a threshold that every plausible wrong sampler exceeds by orders of
magnitude)."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats
from scipy.special import logsumexp, ndtr

from genjax.models.fvbn import FVBN
from genjax.models.made import MADE, made_masks
from genjax.models.nade import NADE
from genjax.models.rnade import RNADE

D_ENUM = 10


def all_binary(d):
    """All 2^d binary vectors [2^d, d] (float64), first coordinate major."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def scaled(model, factor, seed=42):
    """The model with every nnx.Param multiplied by ``factor`` and random biases added
    (strong dependencies between dimensions, far from independent pixels). numpy does
    the arithmetic: eager jax ops would compile once per new shape."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(seed)

    def scale(v):
        v = np.asarray(v)
        return jnp.asarray(factor * v + (0.5 * rng.normal(size=v.shape) if v.ndim == 1
                                         else 0.0), v.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map(scale, params), rest)


def make_model(name, d, *, seed=0, **kw):
    rngs = nnx.Rngs(seed)
    if name == "fvbn":
        m = FVBN((d,), **kw)
        graphdef, params = nnx.split(m)
        dtype = params["W"][...].dtype
        params["W"][...] = jnp.asarray(2.0 * np.random.default_rng(seed).normal(size=(d, d)),
                                       dtype)
        return nnx.merge(graphdef, params)
    if name == "nade":
        return scaled(NADE((d,), hidden=kw.get("hidden", 7), rngs=rngs), 2.0)
    if name == "made":
        return scaled(MADE((d,), hidden=kw.get("hidden", (16, 16)), rngs=rngs,
                           ordering=kw.get("ordering", "random"),
                           num_masks=kw.get("num_masks", 1)), 2.0)
    raise ValueError(name)


# ----------------------------------------------------------------------- normalisation

@pytest.mark.parametrize("name, kw", [("fvbn", {}), ("fvbn", {"context": 2}),
                                      ("nade", {}), ("made", {}),
                                      ("made", {"ordering": "natural", "hidden": (20,)})])
def test_probabilities_of_all_binary_vectors_sum_to_one(name, kw):
    with jax.enable_x64(True):
        model = make_model(name, D_ENUM, **kw)
        lp = np.asarray(model.log_prob(jnp.asarray(all_binary(D_ENUM))))
    assert lp.dtype == np.float64 and lp.shape == (2 ** D_ENUM,)
    assert abs(math.exp(logsumexp(lp)) - 1.0) < 1e-12
    # not trivially uniform: the model puts very different mass on different vectors
    assert lp.max() - lp.min() > 5


def test_made_ensemble_of_orderings_sums_to_one_and_differs_from_each_member():
    with jax.enable_x64(True):
        model = make_model("made", D_ENUM, num_masks=4)
        x = jnp.asarray(all_binary(D_ENUM))
        ens = np.asarray(model.log_prob_ensemble(x))
        members = np.stack([np.asarray(model.log_prob(x, k)) for k in range(4)])
    assert abs(math.exp(logsumexp(ens)) - 1.0) < 1e-12
    for k in range(4):
        assert abs(math.exp(logsumexp(members[k])) - 1.0) < 1e-12
    np.testing.assert_allclose(ens, logsumexp(members, axis=0) - math.log(4), atol=1e-12)
    assert np.abs(members[0] - members[1]).max() > 0.5      # distinct orderings


def test_float32_models_normalise_to_float32_accuracy():
    x = jnp.asarray(all_binary(D_ENUM), jnp.float32)
    for name in ("fvbn", "nade", "made"):
        lp = np.asarray(make_model(name, D_ENUM).log_prob(x), np.float64)
        assert abs(math.exp(logsumexp(lp)) - 1.0) < 5e-5, name


# ------------------------------------------------------------------------- MADE masks

@pytest.mark.parametrize("ordering, hidden, num_masks", [
    ("reverse", (32,), 1), ("random", (40, 30, 20), 3)])
def test_made_output_i_does_not_depend_on_inputs_at_or_after_i(ordering, hidden, num_masks):
    d = 12
    model = make_model("made", d, ordering=ordering, hidden=hidden, num_masks=num_masks)
    x = jax.random.normal(jax.random.key(1), (d,))          # real inputs: ReLUs active
    orders = np.asarray(model.orders[...])
    jacobian = jax.jit(jax.jacfwd(lambda v, k: model.logits(v[None], k)[0]))  # [out, in]
    for k in range(num_masks):
        jac = np.asarray(jacobian(x, k))
        rank = np.empty(d, int)
        rank[orders[k]] = np.arange(d)
        forbidden = rank[None, :] >= rank[:, None]          # input j at/after output i
        assert np.all(jac[forbidden] == 0.0), (k, np.argwhere(jac * forbidden))
        # the masks are not vacuous: outputs late in the ordering see earlier inputs
        last = orders[k][-1]
        assert np.count_nonzero(jac[last]) >= d // 2
    if ordering == "reverse":
        np.testing.assert_array_equal(orders[0], np.arange(d)[::-1])


def test_made_mask_connectivity_is_exactly_the_ordering():
    """Counting paths through the binary masks: input j reaches output i iff j comes
    before i in the ordering (given enough hidden units to realise every pair)."""
    d = 8
    orders, masks = made_masks(d, (64, 64), ordering="random", num_masks=3, seed=5)
    for k in range(3):
        paths = masks[0][k] @ masks[1][k] @ masks[2][k]                      # [in, out]
        rank = np.empty(d, int)
        rank[orders[k]] = np.arange(d)
        allowed = rank[:, None] < rank[None, :]                              # j before i
        np.testing.assert_array_equal(paths > 0, allowed)
    orders, masks = made_masks(d, (16,), ordering="natural", num_masks=2, seed=0)
    np.testing.assert_array_equal(orders, np.tile(np.arange(d), (2, 1)))
    assert not np.array_equal(masks[0][0], masks[0][1])     # degrees redrawn per mask
    assert masks[1][0][:, 0].sum() == 0                      # x_0's logit is a constant


# -------------------------------------------------------------------------- sampling

N_SAMPLES = 200_000
D_SAMPLE = 5


def chi2_statistic(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


def counts_index(xb):
    """Row index of each binary vector in `all_binary` order (first coordinate major)."""
    return (np.asarray(xb, np.int64) * (2 ** np.arange(xb.shape[1])[::-1])).sum(-1)


def counts_of(x):
    return np.bincount(counts_index(x), minlength=2 ** x.shape[1]).astype(np.float64)


@pytest.mark.parametrize("name", ["fvbn", "nade", "made"])
def test_ancestral_samples_follow_the_models_own_probabilities(name):
    """Chi-square of 200,000 draws against the exact probabilities of all 32 vectors.

    The threshold is the 1 - 1e-6 quantile of chi2(31) (~ 80); the draws use a fixed key.
    A wrong sampler's statistic is about N * chi2-divergence(q || p) + 31; for the wrong
    samplers a bug would produce (independent pixels with the right marginals, the
    reverse ordering, the conditionals shifted by one position) that is > 20x the
    threshold (asserted below); such a non-central chi-square has a standard deviation
    of about the square root of twice its mean, so it never falls below the threshold."""
    kw = {"fvbn": {}, "nade": {"hidden": 7}, "made": {"hidden": (16, 16)}}[name]
    model = make_model(name, D_SAMPLE, **kw)
    x_all = jnp.asarray(all_binary(D_SAMPLE), jnp.float32)
    lp_model = np.asarray(model.log_prob(x_all), np.float64)
    p = np.exp(lp_model - logsumexp(lp_model))          # sums to 1 up to ~1e-6 (float32)
    x, log_p = jax.jit(lambda k: model.sample(k, N_SAMPLES))(jax.random.key(0))
    x = np.asarray(x)
    assert x.shape == (N_SAMPLES, D_SAMPLE) and set(np.unique(x)) <= {0.0, 1.0}
    # the sampler's own log p of what it drew equals the model's log_prob
    np.testing.assert_allclose(np.asarray(log_p)[:1000],
                               np.asarray(model.log_prob(jnp.asarray(x[:1000]))), atol=1e-4)
    threshold = stats.chi2.isf(1e-6, 2 ** D_SAMPLE - 1)
    stat = chi2_statistic(counts_of(x), p)
    assert stat < threshold, (stat, threshold)
    tv = 0.5 * np.abs(counts_of(x) / N_SAMPLES - p).sum()
    assert tv < 0.01

    # power: what plausible wrong samplers would score
    xb = all_binary(D_SAMPLE)
    marg = xb.T @ p                                              # P(x_i = 1)
    independent = np.prod(np.where(xb == 1, marg, 1 - marg), axis=1)
    reversed_order = np.exp(lp_model[counts_index(xb[:, ::-1])])  # the reversed vectors
    shifted = np.exp(lp_model[counts_index(np.roll(xb, 1, axis=1))])
    for q in (independent, reversed_order / reversed_order.sum(), shifted / shifted.sum()):
        expected_stat = N_SAMPLES * np.sum((q - p) ** 2 / p) + 2 ** D_SAMPLE - 1
        assert expected_stat > 20 * threshold


def test_samplers_are_one_scan_whose_program_does_not_grow_with_the_dimension():
    def program_size(model):
        jaxpr = jax.make_jaxpr(lambda k: model.sample(k, 3))(jax.random.key(0))
        return len(jaxpr.eqns), str(jaxpr).count("scan[")

    for name in ("fvbn", "nade", "made"):
        kw = {"hidden": (8,)} if name == "made" else {}
        small, big = (program_size(make_model(name, d, **kw)) for d in (5, 60))
        assert small == big and small[1] >= 1, (name, small, big)
    r_small, r_big = (program_size(RNADE((d,), hidden=4, num_components=2,
                                         rngs=nnx.Rngs(0))) for d in (2, 40))
    assert r_small == r_big


def test_rnade_samples_follow_its_density():
    """Rosenblatt transform: for exact draws, u_i = F(x_i | x_<i) (the conditional
    mixture CDFs, from the model's own conditionals) are independent U(0, 1). Checked on
    100,000 draws of a 3-D RNADE by a Kolmogorov-Smirnov test per dimension and a
    chi-square of (u_1, u_2, u_3) on a 5x5x5 grid, both at level 1e-6."""
    model = scaled(RNADE((3,), hidden=6, num_components=3, rngs=nnx.Rngs(3)), 5.0)
    n = 100_000
    x, log_p = jax.jit(lambda k: model.sample(k, n))(jax.random.key(1))
    np.testing.assert_allclose(np.asarray(log_p)[:500],
                               np.asarray(model.log_prob(x[:500])), atol=1e-4)
    lw, mu, ls = (np.asarray(v, np.float64) for v in jax.jit(model.conditionals)(x))
    w = np.exp(lw - logsumexp(lw, axis=-1, keepdims=True))
    u = np.sum(w * ndtr((np.asarray(x, np.float64)[..., None] - mu) / np.exp(ls)), -1)
    for i in range(3):
        assert stats.kstest(u[:, i], "uniform").pvalue > 1e-6, i
    cells = np.minimum((u * 5).astype(int), 4)
    counts = np.bincount(cells @ np.array([25, 5, 1]), minlength=125).astype(float)
    stat = chi2_statistic(counts, np.full(125, 1 / 125))
    assert stat < stats.chi2.isf(1e-6, 124), stat
    # power: x_2 drawn ignoring x_1 (from its marginal) gives ~10x the threshold (a
    # non-central chi-square that far out never falls below it)
    perm = np.random.default_rng(0).permutation(n)
    x_bad = np.asarray(x).copy()
    x_bad[:, 1] = x_bad[perm, 1]
    lw, mu, ls = (np.asarray(v, np.float64) for v in model.conditionals(jnp.asarray(x_bad)))
    w = np.exp(lw - logsumexp(lw, axis=-1, keepdims=True))
    u_bad = np.sum(w * ndtr((x_bad[..., None] - mu) / np.exp(ls)), -1)
    cells = np.minimum((u_bad * 5).astype(int), 4)
    counts = np.bincount(cells @ np.array([25, 5, 1]), minlength=125).astype(float)
    assert chi2_statistic(counts, np.full(125, 1 / 125)) > 5 * stats.chi2.isf(1e-6, 124)
