"""Class-conditional normalizing flows (issue 20): the label is an input of every
conditioner (`genjax.flows` take ``condition=``, `genjax.models.flow` takes ``y``). For a
fixed label a conditional flow is still a bijection whose log-determinant is its
Jacobian's; sum_y p(y) p(x | y) integrates to one; no conditioner ignores the label (the
check is shown to catch one that does); and the conditional toy preset learns p(x | y)."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import flow as flow_config
from experiments import flow as flow_experiment
from genjax import conditioning
from genjax.flows import autoregressive as ar
from genjax.flows import bijectors as bij
from genjax.flows import transformers
from genjax.models import flow as fm
from genjax.train import ConfigError, sweep_spec


def _perturbed(model, seed, scale=0.1):
    """Every trained parameter moved by N(0, scale^2) (drawn with numpy: no compilation):
    zero-initialised output layers (the identity at init, and label-blind there) become
    non-trivial maps."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, tree = jax.tree.flatten(params)
    rng = np.random.default_rng(seed)
    leaves = [jnp.asarray(np.asarray(p) + scale * rng.normal(size=p.shape), jnp.float32)
              for p in leaves]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves), rest)


def _vector_flow(name, transformer="affine", *, dim=3, num_classes=4, seed=0):
    model = fm.VectorFlow((dim,), name=name, num_layers=3, hidden=(16,),
                          transformer=transformer, max_log_scale=2.0, num_bins=5,
                          tail_bound=3.0, num_classes=num_classes, rngs=nnx.Rngs(seed))
    if name == "glow":                                  # actnorm's data initialisation
        model.initialize(1.5 * jax.random.normal(jax.random.key(seed + 1), (64, dim)) + 0.3,
                         jnp.arange(64) % num_classes if num_classes else None)
    return _perturbed(model, seed + 2)


def _image_flow(name, num_classes=3):
    model = fm.MultiScaleFlow((4, 4, 1), name=name, levels=2, steps=2, hidden=8,
                              max_log_scale=2.0, num_classes=num_classes, rngs=nnx.Rngs(0))
    if name == "glow":                      # actnorm; RealNVP has nothing to initialise
        model.initialize(jax.random.normal(jax.random.key(1), (32, 4, 4, 1)),
                         jnp.arange(32) % num_classes)
    return _perturbed(model, 2)


# -------------------------------------------------------------- bijectors (genjax.flows)

def _conditioners(dim, ctx, num_params, key):
    """Two small conditioners that use both x and the condition c [B, E] -> [B, D, P]: a
    dense one (for couplings) and an autoregressive one (theta[:, d] from x_<d only, in
    the natural order; c reaches every d)."""
    k1, k2, k3 = jax.random.split(key, 3)
    wx = 0.5 * jax.random.normal(k1, (dim, dim * num_params))
    wc = 0.5 * jax.random.normal(k2, (ctx, dim * num_params))
    a = 0.5 * jax.random.normal(k3, (dim, num_params))
    earlier = jnp.tril(jnp.ones((dim, dim)), -1)                        # [d, d'] d' < d

    def dense(params, x, c=None):
        h = x @ wx + (0.0 if c is None else c @ wc)
        return jnp.tanh(h).reshape(x.shape[0], dim, num_params)

    def autoregressive(params, x, c=None):
        h = (x @ earlier.T)[..., None] * a                               # [B, D, P]
        if c is not None:
            h = h + (c @ wc).reshape(x.shape[0], dim, num_params)
        return jnp.tanh(h)

    return dense, autoregressive


def test_coupling_and_maf_take_a_condition_and_stay_bijections():
    """coupling, MAF and a chain with actnorm / permute: for a fixed condition c,
    inverse(forward(x, c), c) = x and the log-determinant is the brute-force Jacobian's;
    c changes the map; condition=None calls the two-argument conditioner, unchanged."""
    d, e = 4, 3
    t = transformers.affine(max_log_scale=2.0)
    dense, autoregressive = _conditioners(d, e, t.num_params, jax.random.key(0))
    x = jax.random.normal(jax.random.key(1), (5, d))
    c = conditioning.one_hot(jnp.array([0, 1, 2, 1, 0]), e - 1)            # [5, 3]
    c_other = conditioning.one_hot(jnp.array([2, 0, 1, 0, 2]), e - 1)
    anorm = {"bias": jnp.array([0.1, -0.2, 0.3, 0.0]),
             "log_scale": jnp.array([0.2, -0.1, 0.0, 0.3])}
    flows = {
        "coupling": (bij.coupling(bij.channel_mask(d), dense, t), None),
        "maf": (ar.masked_autoregressive(autoregressive, t, d), None),
        "chain": (bij.chain([bij.actnorm(), bij.coupling(bij.channel_mask(d, parity=1),
                                                         dense, t),
                             bij.permute([3, 2, 1, 0])]), [anorm, None, None]),
    }
    for name, ((fwd, inv), params) in flows.items():
        @jax.jit
        def run(x, c, c_other, fwd=fwd, inv=inv, params=params):
            z, ld = fwd(params, x, condition=c)
            x_back, ld_inv = inv(params, z, condition=c)
            jac = jax.vmap(jax.jacfwd(
                lambda v, cc: fwd(params, v[None], condition=cc[None])[0][0]))(x, c)
            return (z, ld, x_back, ld_inv, jnp.linalg.slogdet(jac)[1],
                    fwd(params, x, condition=c_other)[0], fwd(params, x)[0],
                    fwd(params, x, condition=None)[0])
        z, ld, x_back, ld_inv, brute, z_other, z0, z_none = run(x, c, c_other)
        np.testing.assert_allclose(x_back, x, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(ld_inv, -ld, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(brute, ld, atol=1e-5, err_msg=name)
        assert float(jnp.abs(z_other - z).max()) > 1e-2, name               # c is used
        np.testing.assert_array_equal(z0, z_none)                          # None = absent
        assert float(jnp.abs(z0 - z).max()) > 1e-2, name


# ------------------------------------------------------------------- models: bijections

_SLOW = pytest.mark.slow
# The context enters the conditioners the same way whatever the transformer: every model
# with the affine one, and the spline on RealNVP (slow); the unconditional combinations
# are all in test_flow_models.py.
VECTOR_CASES = [pytest.param("realnvp", "affine")] + [
    pytest.param(n, t, marks=_SLOW) for n, t in (("glow", "affine"), ("maf", "affine"),
                                                 ("iaf", "affine"), ("realnvp", "spline"))]


def _check_bijection_given_labels(model, x, y, flat_dim):
    @jax.jit
    def run(x, y):
        z, ld = model.forward(x, y)
        x_back, ld_inv = model.inverse(z, y)
        jac = jax.vmap(jax.jacrev(lambda v, yy: model.forward(v[None], yy[None])[0][0]))(x, y)
        return z, ld, x_back, ld_inv, jac
    z, ld, x_back, ld_inv, jac = run(x, y)
    np.testing.assert_allclose(x_back, x, atol=2e-4)
    np.testing.assert_allclose(ld_inv, -ld, rtol=1e-4, atol=2e-4)
    jac = jac.reshape(x.shape[0], flat_dim, flat_dim)
    np.testing.assert_allclose(jnp.linalg.slogdet(jac)[1], ld, rtol=1e-4, atol=2e-4)
    assert float(jnp.abs(ld).max()) > 1e-2


@pytest.mark.parametrize("name, transformer", VECTOR_CASES)
def test_conditional_vector_flows_invert_and_count_their_jacobian(name, transformer):
    """For each example's label (four different ones in the batch, the null class too)."""
    model = _vector_flow(name, transformer)
    x = 2.0 * jax.random.normal(jax.random.key(5), (5, 3))
    _check_bijection_given_labels(model, x, jnp.array([0, 1, 2, 3, 4]), 3)


@pytest.mark.slow
def test_the_conditional_multiscale_realnvp_inverts_and_counts_its_jacobian():
    """The :cond_digits model's shape (conv conditioners with the label; Glow's extra
    layers ignore it and are checked unconditionally in test_flow_models.py)."""
    model = _image_flow("realnvp")
    x = jax.random.normal(jax.random.key(5), (3, 4, 4, 1))
    _check_bijection_given_labels(model, x, jnp.array([0, 1, 2]), 16)


# ---------------------------------------------------------------- the density sums to 1

def test_the_mixture_over_labels_integrates_to_one_on_a_grid():
    """A 2-D conditional RealNVP with K = 3: each p(x | y) and sum_y p(y) p(x | y) (the
    experiment's exact log p(x), `marginal_log_prob`) integrate to 1 by the midpoint rule
    on [-8, 8]^2 (200^2 cells; the base normal's mass outside is below 1e-6 here)."""
    k = 3
    model = _vector_flow("realnvp", dim=2, num_classes=k)
    prior = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    n, lim = 200, 8.0
    h = 2 * lim / n
    g = -lim + h * (np.arange(n) + 0.5)
    pts = jnp.asarray(np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), jnp.float32)
    per_class = jax.jit(lambda v: fm.class_log_probs(model.log_prob, v, k))(pts)   # [M, K]
    mass = np.asarray(jnp.exp(per_class).sum(0)) * h * h
    np.testing.assert_allclose(mass, 1.0, atol=2e-3)
    marginal = fm.marginal_log_prob(per_class, prior)
    assert float(jnp.exp(marginal).sum() * h * h) == pytest.approx(1.0, abs=2e-3)
    # the labels give different densities (else the mixture would be trivial)
    assert float(jnp.abs(per_class[:, 0] - per_class[:, 1]).max()) > 0.1


def test_marginal_and_posterior_metrics_match_a_direct_computation():
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(50, 4)) * 3
    labels = rng.integers(0, 4, 50)
    prior = np.log(np.array([0.1, 0.2, 0.3, 0.4]))
    m = fm.label_posterior_metrics(lp, labels, prior)
    direct = np.log(np.exp(lp + prior).sum(-1))
    assert m["log_likelihood"] == pytest.approx(direct.mean(), rel=1e-10)
    np.testing.assert_allclose(fm.marginal_log_prob(jnp.asarray(lp, jnp.float32),
                                                    jnp.asarray(prior, jnp.float32)),
                               direct, rtol=1e-5)
    assert m["log_likelihood_given_label"] == pytest.approx(lp[np.arange(50), labels].mean())
    assert m["bayes_accuracy"] == pytest.approx(np.mean((lp + prior).argmax(-1) == labels))
    np.testing.assert_allclose(np.exp(fm.label_log_prior([0, 1, 1, 3], 4)),
                               [0.25, 0.5, 0.0, 0.25])


# --------------------------------------------------------------- the label is not ignored

class _IgnoresContext(nnx.Module):
    """A conditioner that silently drops its label (the bug this file guards against)."""

    def __init__(self, net):
        self.net = net

    def __call__(self, x, context=None):
        return self.net(x, jnp.zeros_like(context))


def _layer_inputs(model, x, context):
    """[(layer, the input it sees)] along the forward pass (factor-outs included)."""
    if isinstance(model, fm.VectorFlow):
        levels, keeps, h = [model.layers], [None], x.reshape(x.shape[0], -1)
    else:
        levels, keeps, h = model.levels, [k for _, _, k in model.kept], x
    out = []
    for layers, keep in zip(levels, keeps):
        for layer in layers:
            out.append((layer, h))
            h = layer.forward(h, context=context)[0]
        if keep is not None:
            h = h[..., :keep]
    return out


def _layers_in_order(model):
    if isinstance(model, fm.VectorFlow):
        return list(model.layers)
    return [layer for level in model.levels for layer in level]


def _label_blind_layers(model, x):
    """Indices of the layers with a conditioner (coupling, MAF / IAF) whose output does not
    depend on the label: at the input the forward pass gives it, the layer's output is the
    same for every example's label and for a different label (one compiled program)."""
    k = model.num_classes
    y = jnp.arange(x.shape[0]) % k
    c, c_other = conditioning.one_hot(y, k), conditioning.one_hot((y + 1) % k, k)
    pairs = list(zip(_layers_in_order(model),
                     jax.jit(lambda v, cc: [h for _, h in _layer_inputs(model, v, cc)])(x, c)))
    which = [i for i, (layer, _) in enumerate(pairs)
             if isinstance(layer, (fm.Coupling, fm.Autoregressive))]

    @jax.jit
    def outputs(c):
        return [pairs[i][0].forward(pairs[i][1], context=c)[0] for i in which]

    return [i for i, a, b in zip(which, outputs(c), outputs(c_other))
            if float(jnp.abs(a - b).max()) == 0.0]


def _drop_the_label(layer):
    """Makes one layer's conditioner ignore its label: a coupling's network is wrapped by
    one that zeroes the context, a MAF layer's context weights are zeroed."""
    if isinstance(layer, fm.Coupling):
        layer.net = _IgnoresContext(layer.net)
    else:
        for lin in (layer.context_hidden, layer.context_out):
            lin.kernel[...] = jnp.zeros_like(lin.kernel[...])


@pytest.mark.parametrize("kind", ["realnvp", "maf", "multiscale"])
def test_no_conditioner_ignores_the_label_and_the_check_catches_one_that_does(kind):
    """Every coupling / MAF layer's output changes with the label; a conditioner that
    drops it is caught (the same check, with one conditioner made label-blind)."""
    if kind == "multiscale":
        model, x = _image_flow("realnvp"), jax.random.normal(jax.random.key(3), (3, 4, 4, 1))
    else:
        model, x = _vector_flow(kind), jax.random.normal(jax.random.key(3), (4, 3))
    assert _label_blind_layers(model, x) == []
    layers = _layers_in_order(model)
    broken_at = max(i for i, layer in enumerate(layers)
                    if isinstance(layer, (fm.Coupling, fm.Autoregressive)))
    _drop_the_label(layers[broken_at])
    assert _label_blind_layers(model, x) == [broken_at]


def test_log_prob_and_samples_change_with_the_label():
    model = _vector_flow("realnvp")
    x = jax.random.normal(jax.random.key(3), (6, 3))
    lp = jax.jit(lambda v: fm.class_log_probs(model.log_prob, v, 4))(x)          # [6, 4]
    assert float(jnp.abs(lp - lp[:, :1]).min(0)[1:].min()) > 0        # no two labels equal
    s = jax.jit(lambda y: model.sample(jax.random.key(0), 6, y=y))
    a, b = s(jnp.zeros(6, jnp.int32)), s(jnp.ones(6, jnp.int32))
    assert float(jnp.abs(a - b).min()) > 1e-3                        # same noise, new label


def test_unconditional_flows_have_no_context_and_refuse_labels():
    """num_classes=0 builds the unconditional flow (no context parameters, bit for bit the
    old maps: its tests in test_flow_models.py are unchanged); labels are refused there
    and required in a conditional flow."""
    plain, cond = _vector_flow("maf", num_classes=0), _vector_flow("maf")
    paths = [str(p) for p, _ in nnx.to_flat_state(nnx.state(plain, nnx.Param))]
    assert not [p for p in paths if "context" in p]
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match="unconditional"):
        plain.log_prob(x, jnp.zeros(2, jnp.int32))
    with pytest.raises(ValueError, match="pass the labels"):
        cond.log_prob(x)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        cond.log_prob(x, jnp.zeros(3, jnp.int32))


def test_neighbour_labels_finds_the_class_regions():
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.normal(-3, 1, (200, 2)), rng.normal(3, 1, (200, 2))])
    labels = np.repeat([0, 1], 200)
    pts = np.array([[-3.0, -3.0], [3.0, 2.5], [-2.0, -4.0], [4.0, 3.0]])
    np.testing.assert_array_equal(flow_experiment.neighbour_labels(pts, ref, labels),
                                  [0, 1, 0, 1])


# ---------------------------------------------------------------- config and end to end

def _config(preset, **changes):
    return sweep_spec.apply(flow_config.get_config(preset), changes)


@pytest.mark.parametrize("changes, field, words", [
    ({"data.name": "checkerboard", "data.preprocess": "none", "model.conditional": True},
     "model.conditional", "no labels"),
    ({"model.conditional": True, "eval.cond_samples": 5}, "eval.cond_samples",
     "at least 20"),
    ({"model.conditional": None}, "model.conditional", "True or False"),
    ({"eval.cond_samples": -1}, "eval.cond_samples", "0 = skip"),
])
def test_conditional_settings_are_one_line_errors(tmp_path, changes, field, words):
    with pytest.raises(ConfigError, match=rf"^--config\.{field}=") as err:
        flow_experiment.train_and_evaluate(_config("quick", **changes), str(tmp_path))
    assert words in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
def test_the_quick_conditional_toy_learns_p_x_given_y(tmp_path):
    """:cond_quick (300 steps on two_moons, 2 labels): held-out points are likelier under
    their own label than the other for almost all of them, samples drawn for label k land
    in k's region, and log p(x | y) - log p(x) is close to -log p(y) = log 2 (the moons
    barely overlap). Measured: 1.0, 1.0, 0.69."""
    metrics = flow_experiment.train_and_evaluate(flow_config.get_config("cond_quick"),
                                                 str(tmp_path))
    assert metrics["test/bayes_accuracy"] > 0.95, metrics
    assert metrics["test/region_accuracy"] > 0.9, metrics
    assert metrics["test/log_likelihood_given_label"] - metrics["test/log_likelihood"] \
        == pytest.approx(np.log(2), abs=0.1)
    assert os.path.exists(tmp_path / "cond_samples.png")
    with open(tmp_path / "results.json") as f:
        assert json.load(f)["metrics"]["test/bayes_accuracy"] == metrics["test/bayes_accuracy"]


@pytest.mark.slow
def test_a_quick_conditional_maf_on_the_digits_follows_the_label(tmp_path):
    """500 steps of a conditional MAF on the 8x8 digits: the shared classifier (200 steps,
    trained here) calls most of 100 samples by the label they were drawn for (chance:
    0.1; measured 0.7), and the flow as a Bayes classifier beats chance on the test
    digits (measured 0.93)."""
    config = _config("quick", **{
        "model.conditional": True, "model.name": "maf", "model.hidden": (64, 64),
        "model.layers": 3, "train.num_steps": 500, "train.checkpoint_every": 500,
        "eval.classifier_dir": str(tmp_path / "classifier")})
    metrics = flow_experiment.train_and_evaluate(config, str(tmp_path / "run"))
    assert metrics["test/bayes_accuracy"] > 0.6, metrics
    assert metrics["test/cond_accuracy"] > 0.4, metrics
    assert os.path.exists(tmp_path / "run" / "class_rows.png")
