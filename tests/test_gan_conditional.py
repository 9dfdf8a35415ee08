"""The class-conditional GAN (issue 20): G(z, y) and the projection discriminator
D(x, y) = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018), for the MLP players
(8-Gaussians, label = mode) and the DCGAN (digits).

* the label is not ignored: G's and D's outputs change with y, and a deliberately
  label-ignoring variant fails the same check; the gradient of D with respect to its
  label embedding is exactly phi(x) summed over the examples of each class (zero for the
  classes absent from the batch), G's gradient with respect to its label input is
  non-zero;
* the projection's form: with a zero embedding D is the unconditional discriminator of
  the same initialisation, bit for bit; D(x, y) - D(x, y') = <embed(y) - embed(y'), phi(x)>;
* the conditional mode accuracy against closed forms (a perfect sampler scores
  1 - exp(-9/2) at 3 std in 2-D, a label-ignoring one 1/8 of that);
* end to end: the conditional 8-Gaussians preset, shortened, puts label k's samples at
  mode k; (slow) the conditional DCGAN quick preset writes its numbers and figures and
  follows the label above chance.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import gan as gan_config
from experiments import gan as gan_experiment
from genjax import data as gdata
from genjax.eval import gan_analysis, gan_toy
from genjax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.models.gan import MLPDiscriminator, MLPGenerator
from genjax.nn.projection import projection_logits
from genjax.train import ConfigError

SHAPE = (8, 8, 1)           # the smallest DCGAN images (sides divisible by 4)


def players(arch, num_classes, seed=0):
    """(G module, D module) of a tiny architecture."""
    rngs = nnx.Rngs(seed)
    if arch == "mlp":
        return (MLPGenerator(3, 2, hidden=(16, 16), num_classes=num_classes, rngs=rngs),
                MLPDiscriminator(2, hidden=(16, 16), num_classes=num_classes, rngs=rngs))
    # "dcgan": conditional batch norm in G; "dcgan_concat": no batch norm, the label
    # embedding concatenated to z
    return (DCGANGenerator(6, SHAPE, channels=4, num_classes=num_classes,
                           norm=arch == "dcgan", rngs=rngs),
            DCGANDiscriminator(SHAPE, channels=4, num_classes=num_classes, rngs=rngs))


def discriminator(arch, num_classes, seed=0):
    """A tiny D alone (its initialisation depends on nothing drawn before it)."""
    if arch == "mlp":
        return MLPDiscriminator(2, hidden=(16, 16), num_classes=num_classes,
                                rngs=nnx.Rngs(seed))
    return DCGANDiscriminator(SHAPE, channels=4, num_classes=num_classes,
                              rngs=nnx.Rngs(seed))


def label_effect(f):
    """max |f(y) - f(y')| / max |f(y)| over a batch with y' = (y + 1) mod K: how much the
    output moves, relative to its scale, when every label changes (0 when f ignores its
    label)."""
    y = jnp.arange(6) % 4
    out = f(y)
    return float(jnp.max(jnp.abs(out - f((y + 1) % 4))) / jnp.max(jnp.abs(out)))


@pytest.mark.parametrize("arch", ["mlp", "dcgan", "dcgan_concat"])
def test_the_generator_and_the_discriminator_follow_the_label(arch):
    g, d = players(arch, num_classes=4)
    g_def, g_p = nnx.split(g)
    d_def, d_p = nnx.split(d)
    gen = jax.jit(lambda p, z, y: nnx.merge(g_def, p)(z, y))
    disc = jax.jit(lambda p, x, y: nnx.merge(d_def, p)(x, y))
    z = jax.random.normal(jax.random.key(0), (6, g.latent_dim))
    x = gen(g_p, z, jnp.arange(6) % 4)
    assert label_effect(lambda y: gen(g_p, z, y)) > 1e-3
    assert label_effect(lambda y: disc(d_p, x, y)) > 1e-3
    # the same check catches a label silently dropped (here: always class 0)
    assert label_effect(lambda y: gen(g_p, z, jnp.zeros_like(y))) == 0.0
    assert label_effect(lambda y: disc(d_p, x, jnp.zeros_like(y))) == 0.0
    # the label reaches G through a non-zero derivative: d G / d (its label input), per
    # class: the first layer's weights on the one-hot inputs (MLP), the conditional batch
    # norms' gain and bias tables (DCGAN), the concatenated embedding's table
    def out(p):
        return jnp.sum(nnx.merge(g_def, p)(z, jnp.arange(6) % 4) ** 2)

    grads = jax.jit(jax.grad(out))(g_p)
    if arch == "mlp":
        tables = [grads["net"]["layers"][0]["kernel"][...][g.latent_dim:]]   # [K + 1, H]
    elif arch == "dcgan":
        tables = [grads[f"affine{i}"]["embed"]["table"][...] for i in (0, 1)]
    else:
        tables = [grads["embed"]["table"][...]]
    for t in tables:
        norms = np.linalg.norm(np.asarray(t), axis=-1)
        assert np.all(norms[:4] > 1e-3 * norms.max()), norms  # every class in the batch
        assert norms[4] == 0.0, norms                         # the null class is not


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_unconditional_players_refuse_labels_and_conditional_ones_need_them(arch):
    g, d = players(arch, num_classes=0)
    z, y = jnp.zeros((2, g.latent_dim)), jnp.zeros(2, jnp.int32)
    x = jnp.zeros((2,) + ((2,) if arch == "mlp" else SHAPE))      # (checks run first)
    for f, args in ((g, (z, y)), (d, (x, y))):
        with pytest.raises(ValueError, match="would ignore the labels"):
            f(*args)
    g, d = players(arch, num_classes=3)
    for f, arg in ((g, z), (d, x)):
        with pytest.raises(ValueError, match="pass the labels"):
            f(arg)


@pytest.mark.parametrize("arch", ["mlp", "dcgan"])
def test_the_projection_discriminator_has_the_projection_form(arch):
    """(1) embed = 0: D(x, y) is the unconditional D of the same seed, exactly (the
    conditional D draws its embedding after the unconditional layers); (2) D(x, y) -
    D(x, y') = <embed(y) - embed(y'), phi(x)>; (3) d/d embed of sum_i D(x_i, y_i) is, row
    k, the sum of phi(x_i) over the examples with y_i = k (0 for the other rows)."""
    d_cond, d_zero = discriminator(arch, 5, seed=3), discriminator(arch, 5, seed=3)
    d_unc = discriminator(arch, 0, seed=3)
    d_zero.projection.embed.table[...] = jnp.zeros_like(d_zero.projection.embed.table[...])
    c_def, c_p = nnx.split(d_cond)
    zero = nnx.split(d_zero)[1]
    u_def, u_p = nnx.split(d_unc)
    x = jax.random.normal(jax.random.key(1), (7,) + ((2,) if arch == "mlp" else SHAPE))
    y = jnp.array([0, 1, 2, 3, 4, 0, 2])

    @jax.jit
    def parts(p, x, y):
        m = nnx.merge(c_def, p)
        return m(x, y), m.features(x), m.projection.embed.table[...]

    unconditional = jax.jit(lambda p, x: nnx.merge(u_def, p)(x))(u_p, x)
    np.testing.assert_array_equal(parts(zero, x, y)[0], unconditional)

    logits, phi, table = parts(c_p, x, y)
    y2 = (y + 2) % 5
    logits2 = parts(c_p, x, y2)[0]
    expected = jnp.sum((table[y] - table[y2]) * phi, -1)              # [N]
    np.testing.assert_allclose(logits - logits2, expected, rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(expected))) > 1e-3                   # a real difference

    grads = jax.jit(jax.grad(lambda p: jnp.sum(nnx.merge(c_def, p)(x, y))))(c_p)
    g_table = np.asarray(grads["projection"]["embed"]["table"][...])  # [K + 1, F]
    want = np.stack([np.asarray(phi)[np.asarray(y) == k].sum(0) for k in range(6)])
    np.testing.assert_allclose(g_table, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.linalg.norm(g_table[:5], axis=-1) > 1e-3)


def test_projection_logits_checks_its_shapes():
    with pytest.raises(ValueError, match="projection_logits"):
        projection_logits(jnp.zeros(3), jnp.zeros((3, 4)), jnp.zeros((3, 5)))
    out = projection_logits(jnp.ones(2), jnp.array([[1.0, 2.0], [3.0, 4.0]]),
                            jnp.array([[1.0, 0.0], [0.0, -1.0]]))
    np.testing.assert_allclose(out, [2.0, -3.0])


def test_conditional_mode_accuracy_against_closed_forms():
    """Data points with their own labels: within 3 std of their mode with probability
    1 - exp(-9/2) (the chi distribution with 2 degrees of freedom); with labels drawn
    independently of the points (a generator that ignores its label), 1/8 of that."""
    ds = gdata.load("eight_gaussians")
    x, y = ds.train, ds.train_labels
    m = gan_analysis.eight_gaussians_conditional(x, y)
    p = 1.0 - np.exp(-4.5)
    se = np.sqrt(p * (1 - p) / len(x))
    assert abs(m["cond_mode_accuracy"] - p) < 4 * se, m["cond_mode_accuracy"]
    for k in range(8):
        assert abs(m[f"cond_mode_accuracy/{k}"] - p) < 0.01
    shuffled = np.random.default_rng(0).permutation(y)
    ignoring = gan_analysis.eight_gaussians_conditional(x, shuffled)["cond_mode_accuracy"]
    assert abs(ignoring - p / 8) < 0.01, ignoring
    # exact cases: on the centre, off by one mode, non-finite
    c = gdata.eight_gaussians_centres()
    m = gan_toy.conditional_mode_accuracy(
        np.concatenate([c, c, np.full((1, 2), np.nan)]),
        np.concatenate([np.arange(8), (np.arange(8) + 1) % 8, [0]]), c, std=0.02)
    assert m["cond_mode_accuracy"] == pytest.approx(8 / 17)
    with pytest.raises(ValueError, match="mode indices"):
        gan_toy.conditional_mode_accuracy(c, np.full(8, 8), c, std=0.02)


def test_balanced_labels_in_a_mixed_order():
    labels = gan_analysis.mixed_labels(jax.random.key(0), 1000, 10)
    assert np.bincount(labels).tolist() == [100] * 10
    # every chunk of 500 (one generator batch) mixes the classes
    assert all(len(np.unique(labels[i:i + 500])) == 10 for i in (0, 500))


def test_a_conditional_gan_needs_labels(tmp_path):
    config = gan_config.get_config("conditional_eight_gaussians")
    config.data.name = "checkerboard"                  # a toy without labels
    with pytest.raises(ConfigError, match=r"^--config\.model\.conditional=True .*no labels"):
        gan_experiment.train_and_evaluate(config, str(tmp_path / "w"))
    assert not os.path.exists(tmp_path / "w" / "checkpoints")
    config = gan_config.get_config("conditional_eight_gaussians")
    with pytest.raises(ValueError, match="num_classes"):     # build needs the data's K
        gan_experiment.build(config, (2,))


def test_presets():
    for name in ("conditional", "conditional_eight_gaussians", "conditional_quick"):
        c = gan_config.get_config(name)
        assert c.model.conditional is True
        with pytest.raises(AttributeError):
            c.model.conditionl = True
    assert gan_config.get_config("conditional_eight_gaussians").model.arch == "mlp"
    assert gan_config.get_config(None).model.conditional is False


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    config = gan_config.get_config("conditional_eight_gaussians")
    config.train.update(num_steps=1000, steps_per_dispatch=500, checkpoint_every=1000,
                        eval_every=0)
    config.eval.toy_samples = 2000
    config.plots.toy_points = 500
    workdir = str(tmp_path_factory.mktemp("gan_cond_toy"))
    return workdir, config, gan_experiment.train_and_evaluate(config, workdir)


def test_the_conditional_toy_puts_label_k_at_mode_k(toy_run):
    """After a short run, most samples drawn for label k lie within 3 std of mode k (a
    generator that ignored its label would score at most 1/8 of its high-quality share);
    every label is followed."""
    workdir, config, m = toy_run
    assert m["test/cond_mode_accuracy"] > 0.8, m
    assert min(m[f"test/cond_mode_accuracy/{k}"] for k in range(8)) > 0.5, m
    assert m["test/modes_covered"] == 8
    assert m["test/cond_mode_accuracy"] <= m["test/high_quality_fraction"] + 1e-12
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["metrics"]["test/cond_mode_accuracy"] == pytest.approx(
            m["test/cond_mode_accuracy"])
    img = np.asarray(Image.open(os.path.join(workdir, "samples.png")))
    assert img.ndim == 3 and img.std() > 5


@pytest.mark.slow
def test_the_conditional_dcgan_quick_preset(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gan_cond_quick")
    config = gan_config.get_config("conditional_quick")
    config.eval.classifier_dir = str(tmp / "classifier")
    config.train.eval_every = 0                       # the final evaluation only
    workdir = str(tmp / "run")
    m = gan_experiment.train_and_evaluate(config, workdir)
    for prefix in ("", "ema_"):
        for k in ("cond_accuracy", "fd", "fd_per_class", "accuracy/0", "fd/9"):
            assert np.isfinite(m[f"test/{prefix}{k}"]), k
    assert m["test/fd_samples"] == config.eval.fd_samples
    for name in ("samples.png", "interpolation.png", "class_styles.png"):
        img = np.asarray(Image.open(os.path.join(workdir, name)))
        assert img.ndim == 3 and img.std() > 5, name
    # one row of 10 per class: 10 rows of 28 px + 2 px padding, scale 2
    h, w, _ = np.asarray(Image.open(os.path.join(workdir, "samples.png"))).shape
    assert (h, w) == (2 * (10 * 30 + 2), 2 * (10 * 30 + 2))
    # the samples follow their labels: a generator that ignores y scores 1/10 in
    # expectation (whatever its class frequencies, the labels are balanced); 0.73 after
    # these 600 steps (with the 200-step classifier)
    assert m["test/cond_accuracy"] > 0.3, m["test/cond_accuracy"]
