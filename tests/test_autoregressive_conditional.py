"""Class-conditional NADE / MADE and completion with the exact autoregressive models
(issue 20).

Brute force on small D: every p(x | y) sums to one over the 2^D binary vectors and so
does sum_y p(y) p(x | y); the completion's conditional of the missing pixels given the
top ones sums to one over the 2^m completions and equals the joint's exact conditional
(and, for a mask that is not a prefix of the order, is normalised but not the exact
conditional); the completion sampler and the conditional sampler draw from those
distributions (chi-square, with the power of the test against plausible wrong samplers
asserted); the label is not ignored anywhere (log-likelihood, gradients, sampler,
training loss), and each check is shown to fail on a model whose label input is
dropped. The slow test runs configs/nade.py:cquick end to end."""

import itertools
import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats
from scipy.special import logsumexp

from configs import nade as nade_config
from experiments import nade as nade_experiment
from genjax import data as gdata
from genjax.eval import completion
from genjax.losses import autoregressive as ar
from genjax.models.made import MADE
from genjax.models.nade import NADE
from genjax.nn.masked_mlp import MaskedMLP, as_conditioner
from genjax.train import ConfigError

K = 3                                          # classes of the small models (3 = null)
D_ENUM = 10


def all_binary(d):
    """All 2^d binary vectors [2^d, d], first coordinate major."""
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def index_of(xb):
    return (np.asarray(xb, np.int64) * (2 ** np.arange(xb.shape[1])[::-1])).sum(-1)


def scaled(model, factor=2.0, seed=42):
    """Every nnx.Param times ``factor`` plus random vector entries (strong dependencies,
    and labels that matter); the label kernels that start at zero get random values."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    rng = np.random.default_rng(seed)

    def scale(v):
        v = np.asarray(v)
        extra = 0.5 * rng.normal(size=v.shape) if v.ndim == 1 or not v.any() else 0.0
        return jnp.asarray(factor * v + extra, v.dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map(scale, params), rest)


def make(name, d, *, classes=K, ordering="natural", seed=0):
    rngs = nnx.Rngs(seed)
    if name == "nade":
        return scaled(NADE((d,), hidden=6, num_classes=classes, rngs=rngs))
    return scaled(MADE((d,), hidden=(16, 16), ordering=ordering, num_classes=classes,
                       rngs=rngs))


def drop_label(model):
    """The same model with its label input zeroed (the bug to catch: a label silently
    dropped gives a model whose every p(x | y) is the same)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    for name in ("U", "label_kernel", "label_out"):
        if name in params:
            params[name] = jax.tree_util.tree_map(jnp.zeros_like, params[name])
    return nnx.merge(graphdef, params, rest)


# ---------------------------------------------------------------- the conditional NADE loss

def test_conditional_nade_likelihood_equals_naive_and_its_gradient_equals_autodiff():
    rng = np.random.default_rng(0)
    b, d, h, c = 6, 7, 5, 4
    x = jnp.asarray(rng.integers(0, 2, (b, d)), jnp.float32)
    ctx = jnp.asarray(np.eye(c)[rng.integers(0, c, b)], jnp.float32)      # one-hot
    p = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in
         dict(W=(h, d), c=(h,), U=(h, c), V=(d, h), b=(d,)).items()}
    fast = jax.jit(lambda p, x, ctx, g: ar.conditional_nade_log_likelihood(
        x, ctx, **p, groups=g), static_argnums=3)
    naive = jax.jit(lambda p, x, ctx: ar.conditional_nade_log_likelihood_naive(x, ctx, **p))
    np.testing.assert_allclose(fast(p, x, ctx, 3), naive(p, x, ctx), rtol=1e-5)
    # the label moves the likelihood; with U = 0 it is the unconditional NADE's
    assert np.abs(np.asarray(fast(p, x, ctx[::-1], 3) - fast(p, x, ctx, 3))).max() > 0.1
    no_u = dict(p, U=jnp.zeros_like(p["U"]))
    np.testing.assert_allclose(
        fast(no_u, x, ctx, 3),
        ar.nade_log_likelihood(x, **{k: v for k, v in p.items() if k != "U"}), rtol=1e-6)
    # the hand-written backward pass (per-example dL/da_0, the batch in 3 groups as on 3
    # devices) equals autodiff of the naive form for every parameter, the context and x
    weights = jnp.asarray(rng.normal(size=b), jnp.float32)
    loss = lambda f: lambda p, x, ctx: jnp.sum(weights * f(p, x, ctx))  # noqa: E731
    want = jax.jit(jax.grad(loss(naive), argnums=(0, 1, 2)))(p, x, ctx)
    got = jax.jit(jax.grad(loss(lambda p, x, ctx: fast(p, x, ctx, 3)),
                           argnums=(0, 1, 2)))(p, x, ctx)
    jax.tree_util.tree_map(lambda a, w: np.testing.assert_allclose(a, w, rtol=2e-4,
                                                                   atol=2e-5), got, want)
    assert np.abs(np.asarray(want[0]["U"])).max() > 1e-2


# ------------------------------------------------------------------------ normalisation

@pytest.mark.parametrize("name", ["nade", "made"])
def test_every_label_normalises_and_the_label_mixture_sums_to_one(name):
    with jax.enable_x64(True):
        model = make(name, D_ENUM)
        x = jnp.asarray(all_binary(D_ENUM))
        table = np.asarray(jax.jit(lambda x: completion.class_log_likelihoods(
            lambda v, y: model.log_prob(v, y=y), x, K + 1))(x))         # [2^D, K + 1]
        table, null = table[:, :K], table[:, K]                          # K: the null class
    for k in range(K):
        assert abs(math.exp(logsumexp(table[:, k])) - 1.0) < 1e-12, k
    assert abs(math.exp(logsumexp(null)) - 1.0) < 1e-12
    log_prior = np.log(np.array([0.5, 0.3, 0.2]))
    marginal = logsumexp(table + log_prior, axis=1)                         # log p(x)
    assert abs(math.exp(logsumexp(marginal)) - 1.0) < 1e-12
    # the classes are different distributions (the label matters), far from uniform
    assert np.abs(table[:, 0] - table[:, 1]).max() > 1.0
    # label_metrics: the exact log p(x), log p(x | y) and the Bayes posterior
    labels = np.arange(len(table)) % K
    m = completion.label_metrics(table, labels, log_prior)
    assert m["log_likelihood"] == pytest.approx(marginal.mean(), abs=1e-9)
    assert m["cond_log_likelihood"] == pytest.approx(
        table[np.arange(len(table)), labels].mean(), abs=1e-9)
    post = table + log_prior - marginal[:, None]
    assert m["label_accuracy"] == pytest.approx(np.mean(post.argmax(1) == labels))
    assert m["label_log_posterior"] == pytest.approx(
        post[np.arange(len(table)), labels].mean(), abs=1e-9)


# ---------------------------------------------------------------- the label is not ignored

@pytest.mark.parametrize("name", ["nade", "made"])
def test_the_label_is_not_ignored_and_a_dropped_label_is_caught(name):
    model, d = make(name, 8), 8
    x = jnp.asarray(np.random.default_rng(1).integers(0, 2, (16, d)), jnp.float32)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # one compiled program: (log p(x | y) summed, the logits) for any parameters and y
    fn = jax.jit(jax.value_and_grad(lambda p, y: (
        jnp.sum(nnx.merge(graphdef, p, rest).log_prob(x, y=y)),
        nnx.merge(graphdef, p, rest).logits(x, y=y)), has_aux=True))

    def spread(p):            # max |log p(x | 0) - log p(x | 1)|: 0 if the label is ignored
        return abs(float(fn(p, jnp.zeros(16, jnp.int32))[0][0]
                         - fn(p, jnp.ones(16, jnp.int32))[0][0]))

    assert spread(params) > 0.5
    assert spread(nnx.split(drop_label(model), nnx.Param, ...)[1]) == 0.0  # has teeth
    # every conditional depends on the label, the first pixel's too (its logit is a
    # constant of x): the logits under two labels differ at every position
    logits0, logits1 = (fn(params, jnp.full(16, k, jnp.int32))[0][1] for k in (0, 1))
    assert np.all(np.abs(np.asarray(logits0 - logits1)).max(0) > 1e-3)
    # the gradient of log p(x | y) reaches the label's own column (row) only
    label_param = "U" if name == "nade" else "label_kernel"
    g = fn(params, jnp.full((16,), 2, jnp.int32))[1]
    gu = np.asarray(g[label_param][...])
    per_class = np.abs(gu).sum(0 if name == "nade" else 1)                 # [K + 1]
    assert per_class[2] > 1e-3 and np.all(np.delete(per_class, 2) == 0.0), per_class
    # the sampler uses the label: its own log p is log p(x | y) of the y it was given
    y = jnp.arange(16, dtype=jnp.int32) % K
    xs, log_q = jax.jit(lambda k: model.sample(k, 16, y=y))(jax.random.key(3))
    per_example = jax.jit(lambda x, y: model.log_prob(x, y=y))
    np.testing.assert_allclose(log_q, per_example(xs, y), atol=1e-4)
    assert np.abs(np.asarray(log_q - per_example(xs, (y + 1) % K))).max() > 0.1
    with pytest.raises(ValueError, match="conditional"):
        model.log_prob(x)                                   # no silent default label


def test_training_loss_uses_the_label():
    """The experiment's loss on (image, label) batches: shuffling the labels changes it,
    and its gradient reaches the label parameters (NADE and MADE)."""
    ds = gdata.load("digits")
    x = ds.train[:32]
    y = np.asarray(ds.train_labels[:32], np.int32)
    for name in ("nade", "made"):
        config = nade_config.get_config("cquick")
        config.model.name = name
        config.model.hidden = (16,)
        b = nade_experiment.build(config, ds.example_shape, ds.train,
                                  train_labels=ds.train_labels, num_classes=10)
        loss = jax.jit(jax.value_and_grad(
            lambda p, batch: b.loss_fn(p, batch, jax.random.key(0), None)[0]))
        (l_true, g), (l_wrong, _) = (loss(b.state.params, (x, y)),
                                     loss(b.state.params, (x, (y + 5) % 10)))
        assert abs(float(l_true) - float(l_wrong)) > 0.05, name
        label_param = "U" if name == "nade" else "label_kernel"
        assert np.abs(np.asarray(g[label_param][...])).max() > 1e-4, name


def test_masked_mlp_condition_reaches_every_output_and_keeps_the_order():
    d, c = 6, 4
    model = MaskedMLP(d, (32, 32), 2, ordering="random", mask_seed=3, condition_dim=c,
                      zero_init=False, rngs=nnx.Rngs(0))
    conditioner, params, order = as_conditioner(model)
    assert not np.any(params["condition_out"][...])                # zero at the start
    # the direct condition -> output kernel starts at zero (as trained: random), so the
    # first dimension's theta, which sees no x, also gets to depend on c
    params["condition_out"][...] = jax.random.normal(jax.random.key(2), (c, d * 2))
    x = jax.random.normal(jax.random.key(1), (d,))
    cond = jnp.eye(c)[1]
    jx = np.asarray(jax.jit(jax.jacfwd(lambda v: conditioner(params, v[None], cond[None])[0]))(x))
    jc = np.asarray(jax.jit(jax.jacfwd(lambda v: conditioner(params, x[None], v[None])[0]))(cond))
    rank = np.empty(d, int)
    rank[order] = np.arange(d)
    for i in range(d):                                       # theta[i] sees only x before i
        assert np.all(jx[i][:, rank >= rank[i]] == 0.0)
    assert np.all(np.abs(jc).sum(-1) > 0)                   # every theta depends on c
    # unconditional (condition_dim 0): the parameters it always had, and the conditional
    # module's x-path parameters are drawn identically (the label's come after them)
    plain = MaskedMLP(d, (32, 32), 2, ordering="random", mask_seed=3, zero_init=False,
                      rngs=nnx.Rngs(0))
    flat_plain = dict(nnx.to_flat_state(nnx.state(plain, nnx.Param)))
    flat_cond = dict(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    assert set(flat_cond) - set(flat_plain) == {("condition_kernel",), ("condition_out",)}
    for path, v in flat_plain.items():
        np.testing.assert_array_equal(v[...], flat_cond[path][...])
    with pytest.raises(ValueError, match="condition"):
        plain(x[None], cond[None])


# ------------------------------------------------------------------------- completion

def _first_in_order(model, m):
    """The given mask [D] of the first m dimensions of the model's order (a prefix)."""
    order = np.asarray(model.orders[...][0]) if hasattr(model, "orders") else np.arange(
        model.dim)
    mask = np.zeros(model.dim, bool)
    mask[order[:m]] = True
    return mask


CASES = [("nade", "natural", None), ("made", "natural", None), ("made", "random", None),
         ("nade", "natural", 2), ("made", "natural", 1)]


@pytest.mark.parametrize("name, ordering, label", CASES)
def test_completion_is_the_exact_conditional_and_sums_to_one(name, ordering, label):
    """D = 10, the first 5 dimensions of the order given, m = 5 missing: over the 32
    completions the conditional sums to one and equals p(x) / sum p(x') from the joint
    (for a conditional model p(x | y) with the label)."""
    d, m = D_ENUM, 5
    with jax.enable_x64(True):
        model = make(name, d, classes=0 if label is None else K, ordering=ordering)
        kw = {} if label is None else {"y": label}
        every = all_binary(d)
        joint = np.asarray(model.log_prob(jnp.asarray(every), **kw))
        given = _first_in_order(model, m)
        top = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
        match = np.all(every[:, given] == top, axis=1)                      # 32 rows
        cond = np.asarray(model.conditional_log_prob(jnp.asarray(every[match]), given, **kw))
        exact = joint[match] - logsumexp(joint[match])
        assert abs(math.exp(logsumexp(cond)) - 1.0) < 1e-12
        np.testing.assert_allclose(cond, exact, atol=1e-10)
        assert cond.max() - cond.min() > 1.0                                # not uniform
        # a mask that is not a prefix of the order: still normalised over the missing
        # pixels, but not the exact conditional (the later given pixels are ignored)
        other = ~given
        match = np.all(every[:, other] == top, axis=1)
        cond = np.asarray(model.conditional_log_prob(jnp.asarray(every[match]), other, **kw))
        exact = joint[match] - logsumexp(joint[match])
        assert abs(math.exp(logsumexp(cond)) - 1.0) < 1e-12
        assert np.abs(cond - exact).max() > 0.05


def test_label_free_completion_of_a_conditional_model_is_exact():
    """completion_from_classes: log p(bottom | top) with the label summed out equals the
    joint's conditional from brute force, sum_y p(y) p(x | y) over the 2^D vectors."""
    d, m = D_ENUM, 5
    log_prior = np.log(np.array([0.2, 0.5, 0.3]))
    with jax.enable_x64(True):
        model = make("nade", d)
        every = jnp.asarray(all_binary(d))
        given = np.arange(d) < m
        pix = np.stack([np.asarray(model.pixel_log_probs(every, y=k)) for k in range(K)], 1)
    full, top = pix.sum(-1), np.where(given, pix, 0.0).sum(-1)                # [2^D, K]
    labels = np.zeros(len(full), int)
    got = completion.completion_from_classes(full[:1], top[:1], labels[:1], log_prior)
    marginal = logsumexp(full + log_prior, axis=1)
    rows = np.all(np.asarray(every)[:, :m] == np.asarray(every)[0, :m], axis=1)
    want = marginal[0] - logsumexp(marginal[rows])
    assert got["completion_log_likelihood"] == pytest.approx(want, abs=1e-9)
    assert got["completion_log_likelihood_given_label"] == pytest.approx(
        full[0, 0] - top[0, 0], abs=1e-9)


N_SAMPLES = 100_000


def chi2(counts, probs):
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


@pytest.mark.parametrize("name, ordering, label", CASES[:2] + CASES[3:])
def test_completion_sampler_draws_the_exact_conditional(name, ordering, label):
    """100,000 completions of one top half (5 of 10 pixels given): chi-square of the 32
    outcomes against the exact conditional at level 1e-6 (threshold ~ 80). Power: a
    sampler that ignored the given pixels (the missing pixels' marginal) or the label
    would score > 5x the threshold in expectation."""
    d, m = D_ENUM, 5
    model = make(name, d, classes=0 if label is None else K, ordering=ordering)
    kw = {} if label is None else {"y": label}
    every = all_binary(d)
    given = np.arange(d) < m
    top = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    match = np.all(every[:, :m] == top, axis=1)

    def conditional(**kw):
        lp = np.asarray(model.log_prob(jnp.asarray(every, jnp.float32), **kw), np.float64)
        return np.exp(lp[match] - logsumexp(lp[match])), lp

    p, joint = conditional(**kw)
    x0 = np.broadcast_to(every[match][:1].astype(np.float32), (N_SAMPLES, d))
    x, log_q = jax.jit(lambda k: model.complete(k, x0, given, **kw))(jax.random.key(7))
    x = np.asarray(x)
    assert np.all(x[:, :m] == top)                                     # given pixels kept
    np.testing.assert_allclose(np.asarray(log_q)[:1000], np.asarray(
        model.conditional_log_prob(jnp.asarray(x[:1000]), given, **kw)), atol=1e-4)
    counts = np.bincount(index_of(x[:, m:]), minlength=2 ** m).astype(np.float64)
    threshold = stats.chi2.isf(1e-6, 2 ** m - 1)
    assert chi2(counts, p) < threshold
    # power against the wrong samplers
    bottom = index_of(every[:, m:])
    marginal = np.bincount(bottom, weights=np.exp(joint - logsumexp(joint)),
                           minlength=2 ** m)
    wrong = [marginal]
    if label is not None:
        wrong.append(conditional(y=(label + 1) % K)[0])
    # (a non-central chi-square of mean M has a standard deviation of about
    # sqrt(2 M): at 5x the threshold it never falls below it)
    for q in wrong:
        assert N_SAMPLES * np.sum((q - p) ** 2 / p) + 2 ** m - 1 > 5 * threshold


def test_conditional_sampler_draws_p_x_given_y():
    """100,000 draws of a D = 5 conditional NADE (its own scan, no pixel given) for one
    label: chi-square against p(x | y) at level 1e-6; the other label's distribution
    would fail it by > 20x. (MADE's conditional draws go through the shared
    `ancestral.sample_bernoulli`, tested with a label by the completion sampler test.)"""
    d = 5
    model = make("nade", d)
    every = jnp.asarray(all_binary(d), jnp.float32)
    lp = [np.asarray(model.log_prob(every, y=k), np.float64) for k in (1, 2)]
    p, q = (np.exp(v - logsumexp(v)) for v in lp)
    x, _ = jax.jit(lambda k: model.sample(k, N_SAMPLES, y=1))(jax.random.key(11))
    counts = np.bincount(index_of(np.asarray(x)), minlength=2 ** d).astype(np.float64)
    threshold = stats.chi2.isf(1e-6, 2 ** d - 1)
    assert chi2(counts, p) < threshold
    assert N_SAMPLES * np.sum((q - p) ** 2 / p) + 2 ** d - 1 > 20 * threshold


# ----------------------------------------------------------------------------- configs

@pytest.mark.parametrize("overrides, field", [
    ({"model.name": "fvbn"}, "model.conditional"),
    ({"model.name": "rnade", "data.preprocess": "dequantize", "eval.completion_rows": 0},
     "model.conditional"),
    ({"model.name": "made", "model.ordering": "random"}, "eval.completion_rows"),
    ({"eval.completion_rows": 28}, "eval.completion_rows"),
    ({"eval.cond_samples": 1001}, "eval.cond_samples"),
    ({"eval.cond_samples": 1}, "eval.cond_samples"),
])
def test_conditional_and_completion_settings_are_checked_first(tmp_path, overrides, field):
    config = nade_config.get_config("cquick")
    for k, v in overrides.items():
        section, name = k.split(".")
        config[section][name] = v
    with pytest.raises(ConfigError, match=rf"^--config\.{field}=.*expected"):
        nade_experiment.train_and_evaluate(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "checkpoints")


# --------------------------------------------------------------------------- end to end

@pytest.mark.slow
def test_quick_conditional_preset_follows_the_label(tmp_path):
    """configs/nade.py:cquick (a 32-unit conditional NADE, 300 steps on mnist5k): its
    class-conditional samples are called their label by the shared classifier (a short
    300-step one) far above chance (0.1), and the model is its own Bayes classifier far
    above chance; log p(x) <= the best log p(x | y) bound, and the figures exist."""
    config = nade_config.get_config("cquick")
    config.eval.update(classifier_dir=str(tmp_path / "classifier"), cond_samples=100)
    workdir = str(tmp_path / "run")
    metrics = nade_experiment.train_and_evaluate(config, workdir)
    assert metrics["test/cond_accuracy"] > 0.3, metrics["test/cond_accuracy"]
    assert metrics["test/label_accuracy"] > 0.4, metrics["test/label_accuracy"]
    assert metrics["test/classifier_accuracy"] > 0.8
    # log p(x) = log sum_y p(y) p(x|y) >= log p(y_true) + log p(x | y_true), and the label
    # helps: log p(x | y) > log p(x) on average once the model uses it
    assert metrics["test/cond_log_likelihood"] > metrics["test/log_likelihood"]
    assert (metrics["test/log_likelihood"]
            >= metrics["test/cond_log_likelihood"] + math.log(0.08))
    assert (metrics["test/log_likelihood"] < metrics["test/completion_log_likelihood"] < 0)
    assert metrics["test/cond_samples"] == 100
    for name in ("class_rows.png", "completions.png", "samples.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["metrics"]["test/cond_accuracy"] == pytest.approx(
            metrics["test/cond_accuracy"])
