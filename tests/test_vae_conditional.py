"""The conditional VAE (Sohn et al., 2015; issue 20): q(z | x, y) and p(x | z, y).

The label is never silently dropped (the decoder, the encoder, the ELBO, the training loss
and the test evaluation all change with y, and the check fails on a label-ignoring
variant); with zero label weights the model is exactly the unconditional VAE; p(x | y) is
a distribution for each y (brute force over every binary image of a tiny D) that the
conditional ELBO bounds from below and the importance-weighted estimate reaches; the
quick preset learns to draw the digit it is asked for."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image

from configs import vae as vae_config
from experiments import vae as vae_experiment
from genjax import conditioning, losses
from genjax import data as gdata
from genjax import eval as geval
from genjax.eval import vae_analysis
from genjax.models.vae import VAE, given
from genjax.train import experiment, sweep_spec
from genjax.viz import figures

K = 3                                          # classes of the tiny models (null = 3)


def _tiny(arch="mlp", num_classes=K, seed=0, shape=None, latent_dim=3):
    shape = shape or ((8, 8, 1) if arch == "conv" else (4, 4, 1))
    hidden = (16,) if arch == "conv" else (8,)
    return VAE(shape, latent_dim=latent_dim, hidden=hidden, arch=arch,
               num_classes=num_classes, rngs=nnx.Rngs(seed))


def _binary(key, n, shape):
    return jax.random.bernoulli(key, 0.5, (n,) + shape).astype(jnp.float32)


def assert_every_label_matters(outs, what):
    """outs [L, ...]: the output for each label 0..L-1 (the null class included). Every
    pair of labels must give outputs that differ by more than float noise; a model that
    drops its label fails this."""
    outs = np.asarray(outs)
    for a in range(len(outs)):
        for b in range(a):
            gap = np.abs(outs[a] - outs[b]).max()
            assert gap > 1e-3, f"{what}: labels {a} and {b} give the same output ({gap})"


# -- the label is used --------------------------------------------------------------------

def test_changing_the_label_changes_decoder_encoder_and_elbo():
    vae = _tiny()
    graphdef, params = nnx.split(vae)
    z = jax.random.normal(jax.random.key(1), (5, vae.latent_dim))
    x = _binary(jax.random.key(2), 5, vae.example_shape)

    @jax.jit
    def per_label(params, drop):
        """decode(z, y), the mean of q(z | x, y) and the ELBO for y = 0..K (all rows);
        drop=True feeds label 0 whatever y is (the bug several anchors had)."""
        m = nnx.merge(graphdef, params)

        def one(c):
            y = jnp.where(drop, 0, jnp.full((5,), c, jnp.int32))
            f = given(m, y)
            return (f.decode(z), f.encode(x)[0], losses.elbo_terms(
                x, jax.random.key(3), encode=f.encode, decode=f.decode)["elbo"])
        return jax.vmap(one)(jnp.arange(K + 1))

    for name, outs in zip(("decoder", "encoder", "elbo"), per_label(params, False)):
        assert_every_label_matters(outs, name)
    # the check has teeth: the label-dropping variant fails it, for each output
    for name, outs in zip(("decoder", "encoder", "elbo"), per_label(params, True)):
        with pytest.raises(AssertionError, match="give the same output"):
            assert_every_label_matters(outs, name)


def test_the_outputs_have_a_nonzero_jacobian_in_the_label():
    """d decode / d one_hot(y) and d encode / d one_hot(y) are nonzero for every label slot
    (the float label encoding is an input like z)."""
    vae = _tiny()
    z = jax.random.normal(jax.random.key(1), (2, vae.latent_dim))
    x = _binary(jax.random.key(2), 2, vae.example_shape)
    h = conditioning.one_hot(jnp.array([0, 2]), K)                       # [2, K + 1]

    @jax.jit
    def jacobians(h):
        return (jax.jacrev(lambda h: vae.decode(z, h))(h),               # [2, *E, 2, K+1]
                jax.jacrev(lambda h: vae.encode(x, h)[0])(h))            # [2, Z, 2, K+1]
    for j in jacobians(h):
        per_slot = np.abs(np.asarray(j)).reshape(-1, K + 1).max(0)
        assert (per_slot > 1e-4).all(), per_slot


def test_the_training_loss_reads_the_label():
    """The experiment's own loss on (uint8, label) batches changes with the labels (a
    loss_fn that dropped them would not)."""
    c = sweep_spec.apply(vae_config.get_config("quick"), {
        "data.name": "digits", "model.conditional": True, "model.hidden": (16,),
        "model.latent_dim": 3})
    ds = gdata.load("digits")
    _, state, _, _, loss_fn = vae_experiment.build(c, ds.example_shape, ds.num_classes)
    x = jnp.asarray(ds.train[:16])
    y = jnp.asarray(ds.train_labels[:16], jnp.int32)
    loss = jax.jit(loss_fn)
    l_true, _ = loss(state.params, (x, y), jax.random.key(0), state.hparams)
    l_other, _ = loss(state.params, (x, (y + 1) % 10), jax.random.key(0), state.hparams)
    assert abs(float(l_true) - float(l_other)) > 1e-3


def test_labels_are_bound_sample_major_and_checked():
    vae = _tiny()
    z = jax.random.normal(jax.random.key(1), (6, vae.latent_dim))     # S = 3 draws, B = 2
    y = jnp.array([0, 2], jnp.int32)
    tiled = np.asarray(jax.jit(vae.decode)(z, y))
    full = np.asarray(jax.jit(vae.decode)(z, jnp.array([0, 2, 0, 2, 0, 2], jnp.int32)))
    np.testing.assert_array_equal(tiled, full)                # row s * B + b gets y[b]
    with pytest.raises(ValueError, match="conditional"):
        vae.decode(z)
    with pytest.raises(ValueError, match="4 labels for 6 rows"):
        vae.decode(z, jnp.zeros((4,), jnp.int32))
    with pytest.raises(ValueError, match="unconditional"):
        _tiny(num_classes=0).decode(z, y)
    plain = _tiny(num_classes=0)
    f = given(plain)
    assert f.encode == plain.encode and f.decode == plain.decode


# -- mathematics ----------------------------------------------------------------------

def _copy_into(cond, plain):
    """cond's parameters set to plain's, with the label's weights zero."""
    p_c = nnx.state(cond, nnx.Param)
    p_u = nnx.state(plain, nnx.Param)
    flat_c = dict(nnx.to_flat_state(p_c))
    flat_u = dict(nnx.to_flat_state(p_u))
    for path, var in flat_c.items():
        v = var[...]
        if path in flat_u and flat_u[path][...].shape == v.shape:
            new = flat_u[path][...]
        elif path in flat_u:           # a first layer with the label's rows appended
            u = flat_u[path][...]
            new = jnp.zeros_like(v).at[:u.shape[0]].set(u)
        else:                          # the conv encoder's label projection
            new = jnp.zeros_like(v)
        var[...] = new
    nnx.update(cond, p_c)


@pytest.mark.parametrize("arch", ["mlp", "conv"])
def test_zero_label_weights_give_the_unconditional_vae(arch):
    """The conditional VAE is the unconditional one plus the label's weights: with those
    zero (the rest copied) its ELBO terms and IW estimate equal the unconditional model's
    for every label, with the same keys; with its own (nonzero) label weights they change
    with the label."""
    cond, plain = _tiny(arch, seed=0), _tiny(arch, num_classes=0, seed=1)
    graphdef, own = nnx.split(nnx.clone(cond))
    _copy_into(cond, plain)
    zeroed = nnx.state(cond)
    x = _binary(jax.random.key(2), 4, cond.example_shape)

    def terms(encode, decode):
        t = losses.elbo_terms(x, jax.random.key(5), encode=encode, decode=decode)
        if arch == "mlp":             # (the IW scan's compilation is slow for the conv net)
            t["iw"] = geval.iw_log_likelihood(x, jax.random.key(6), encode=encode,
                                              decode=decode, num_samples=8, chunk_size=4)
        return t

    @jax.jit
    def cond_terms(params, y):
        return terms(*given(nnx.merge(graphdef, params), y)[:2])

    ref = jax.jit(lambda: terms(plain.encode, plain.decode))()
    ys = (jnp.array([0, 1, 2, 3]), jnp.array([2, 2, 0, 1]))
    for y in ys:
        got = cond_terms(zeroed, y)
        for k in ref:
            np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-4, err_msg=k)
    a, b = (np.asarray(cond_terms(own, y)["elbo"]) for y in ys)
    assert np.abs(a - b)[:3].min() > 1e-3                       # rows whose label differs


def _log_marginal_by_quadrature(vae, x, y, n=4001, lim=9.0):
    """log p(x | y) = log int N(z; 0, 1) p(x | z, y) dz for a 1-D latent, on a grid."""
    zs = jnp.linspace(-lim, lim, n)[:, None]                          # [n, 1]
    dz = zs[1, 0] - zs[0, 0]

    def one(xi, yi):
        logits = vae.decode(zs, jnp.full((n,), yi, jnp.int32))        # [n, *E]
        log_px = losses.log_likelihood(jnp.broadcast_to(xi, logits.shape), logits)
        log_pz = -0.5 * zs[:, 0] ** 2 - 0.5 * jnp.log(2 * jnp.pi)
        return jax.scipy.special.logsumexp(log_px + log_pz) + jnp.log(dz)
    return jax.vmap(one)(x, y)


def test_p_x_given_y_is_a_distribution_bounded_by_the_elbo_and_reached_by_iw():
    """A 1-D latent and D = 4 binary pixels: log p(x | y) by quadrature over z sums to one
    over all 16 images for every label, differs between labels, and the conditional ELBO
    (averaged over draws) lies below it while the K = 2,000 IW estimate lands on it."""
    vae = _tiny(shape=(2, 2, 1), latent_dim=1, seed=3)
    grid = jnp.asarray(np.array([[(i >> b) & 1 for b in range(4)] for i in range(16)],
                                np.float32).reshape(16, 2, 2, 1))
    table = np.asarray(jax.jit(jax.vmap(                  # log p(x | y): [K + 1, 16]
        lambda c: _log_marginal_by_quadrature(vae, grid, jnp.full((16,), c))))(
            jnp.arange(K + 1)))
    # a distribution over the 16 images for every label, the null class included
    np.testing.assert_allclose(jax.scipy.special.logsumexp(table, 1), 0.0, atol=5e-4)
    idx, y = np.array([3, 9, 12, 3, 9, 12]), np.array([0, 1, 2, 2, 0, 1])
    x, exact = grid[idx], table[y, idx]
    assert np.abs(exact[:3] - exact[3:]).min() > 1e-3     # same image, other label

    @jax.jit
    def bounds(key):
        f = given(vae, jnp.asarray(y))
        k1, k2 = jax.random.split(key)
        elbo = jax.vmap(lambda k: losses.elbo_terms(x, k, encode=f.encode,
                                                    decode=f.decode)["elbo"])(
            jax.random.split(k1, 400)).mean(0)
        iw = geval.iw_log_likelihood(x, k2, encode=f.encode, decode=f.decode,
                                     num_samples=2000, chunk_size=500)
        return elbo, iw

    elbo, iw = map(np.asarray, bounds(jax.random.key(0)))
    assert (elbo < exact).all(), (elbo, exact)
    np.testing.assert_allclose(iw, exact, atol=0.02)
    # without the label: log (1/K) sum_y p(x | y) and the Bayes classifier argmax_y
    per_label = table[:K, idx]                                            # [K, 6]
    got = vae_analysis.label_marginal(x, per_label.argmax(0), jax.random.key(1),
                                      encode=vae.encode, decode=vae.decode,
                                      classes=range(K), num_samples=2000, batch_size=6)
    want = float(np.mean(jax.scipy.special.logsumexp(per_label, 0) - np.log(K)))
    assert got["marginal_iw_log_likelihood"] == pytest.approx(want, abs=0.02)
    assert got["generative_accuracy"] == 1.0


# -- figures' layout ------------------------------------------------------------------

def test_analogies_keep_z_along_a_row_and_the_label_down_a_column(tmp_path):
    def decode_mean(z, y):            # pixel (0, 0) shows the label, (0, 1) the code
        img = np.zeros((len(z), 4, 4, 1), np.float32)
        img[:, 0, 0, 0] = np.asarray(y) / 10
        img[:, 0, 1, 0] = np.asarray(z)[:, 0]
        return img
    z = np.array([[0.1, 0], [0.2, 0], [0.3, 0]], np.float32)
    out = figures.analogies_figure(str(tmp_path / "a.png"), z, decode_mean=decode_mean,
                                   classes=[0, 4, 7], sources=np.ones((3, 4, 4, 1)))
    assert out.shape == (3, 3, 4, 4, 1)
    np.testing.assert_allclose(out[:, :, 0, 0, 0], [[0, .4, .7]] * 3)
    np.testing.assert_allclose(out[:, :, 0, 1, 0], [[.1] * 3, [.2] * 3, [.3] * 3])
    h, w, _ = np.asarray(Image.open(tmp_path / "a.png")).shape
    assert (h, w) == (2 * (3 * 6 + 2), 2 * (4 * 6 + 2))     # the sources' column too


def test_same_class_pairs_pair_distinct_examples_of_one_class():
    y = np.array([0, 1, 0, 1, 2, 0, 0, 2])
    x = np.arange(8, dtype=np.float32)[:, None]
    x0, x1, lab = vae_analysis.same_class_pairs(x, y, 3)
    np.testing.assert_array_equal(lab, [0, 1, 2])
    np.testing.assert_array_equal(y[x0[:, 0].astype(int)], lab)
    np.testing.assert_array_equal(y[x1[:, 0].astype(int)], lab)
    assert (x0 != x1).all()
    np.testing.assert_array_equal(vae_analysis.balanced_class_labels(6, [3, 5]),
                                  [3, 3, 3, 5, 5, 5])


def test_the_conditional_latent_map_writes_its_figures(tmp_path):
    """latent_scatter.png, latent_manifold_by_class.png and the kNN accuracy of the codes
    of q(z | x, y): here codes that ignore the class (style only), so kNN is at chance,
    as the label given to both networks lets a trained conditional VAE's codes be."""
    rng = np.random.default_rng(0)
    x = rng.random((200, 4, 4, 1)).astype(np.float32)
    y = np.arange(200) % 4

    def encode_mean(x, y):
        return x.reshape(len(x), -1)[:, :2]

    def decode_mean(z, y):
        return np.broadcast_to((np.asarray(y) / 4)[:, None, None, None], (len(z), 4, 4, 1))
    out = vae_analysis.conditional_latent_map(
        str(tmp_path), encode_mean=encode_mean, decode_mean=decode_mean, x_train=x[:150],
        y_train=y[:150], x_test=x[150:], y_test=y[150:], classes=range(4), grid=3)
    assert out["latent/knn5_accuracy"] < 0.5
    for name in ("latent_scatter.png", "latent_manifold_by_class.png"):
        assert np.asarray(Image.open(tmp_path / name)).std() > 5, name


# -- end to end -----------------------------------------------------------------------

CLASSIFIER_STEPS = 200


@pytest.fixture(scope="module")
def cvae_quick(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cvae")
    # a 4-D latent: with the default 20-D one the model first keeps the class in z and
    # hands it to y only slowly (conditional accuracy 0.30 after 600 steps, 0.86 after the
    # cvae preset's 10,000); with 4 dimensions it follows y after a few hundred steps
    c = sweep_spec.apply(vae_config.get_config("quick"), {
        "model.conditional": True, "model.latent_dim": 4, "train.num_steps": 400,
        "train.checkpoint_every": 400,
        "eval.fd_samples": 1000, "eval.classifier_steps": CLASSIFIER_STEPS,
        "eval.classifier_dir": str(tmp / "classifier")})
    workdir = str(tmp / "run")
    metrics, vae = vae_experiment.fit(c, workdir)
    return workdir, c, metrics, vae


@pytest.mark.slow
def test_the_quick_conditional_vae_draws_the_digit_it_is_asked_for(cvae_quick):
    workdir, c, m, _ = cvae_quick
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["metrics"] == pytest.approx(m)
    assert m["test/conditional"] == 1.0 and m["test/fd_samples"] == 1000
    assert m["test/iw_log_likelihood"] >= m["test/elbo"] > -200
    # chance is 0.1; the classifier (200 steps) is right on ~0.93 of real test digits
    assert m["test/cond_accuracy"] > 0.5, m["test/cond_accuracy"]
    assert sum(m[f"test/accuracy/{y}"] > 0.1 for y in range(10)) >= 8
    # the label decides the class of a test digit's code decoded with another label, and
    # argmax_y p(x | y) (the model as a classifier, never trained as one) is mostly right
    assert m["test/analogy_accuracy"] > 0.3 and m["test/generative_accuracy"] > 0.5
    # log p(x) >= log p(x | y_true) + log(1/10), here up to the estimates' noise (other
    # draws, 20 per class against 50)
    assert m["test/marginal_iw_log_likelihood"] > m["test/iw_log_likelihood"] - np.log(10) - 2
    assert np.isfinite(m["test/fd"]) and np.isfinite(m["test/fd_per_class"])
    rows = np.asarray(Image.open(os.path.join(workdir, "class_rows.png")))
    assert rows.shape[:2] == (2 * (10 * 30 + 2), 2 * (10 * 30 + 2))
    p = c.plots
    a = np.asarray(Image.open(os.path.join(workdir, "analogies.png")))
    assert a.shape[:2] == (2 * ((p.analogy_digits + p.analogy_prior) * 30 + 2),
                           2 * (11 * 30 + 2))
    assert not os.path.exists(os.path.join(workdir, "samples.png"))


@pytest.mark.slow
def test_the_test_likelihood_is_conditional_on_the_true_label(cvae_quick, tmp_path):
    """The reported test ELBO / IW numbers are log p(x | y) with each image's own label:
    the same evaluation with every label moved to the next class is many nats lower (an
    evaluation that dropped the label would give the same numbers)."""
    _, c, m, vae = cvae_quick
    ds = experiment.prepare(c, str(tmp_path))
    graphdef, params = nnx.split(vae)
    ev, _ = vae_experiment.make_evaluate(c, ds, graphdef)
    true = ev(params)
    for k in ("elbo", "iw_log_likelihood", "kl", "log_px"):
        assert true[k] == pytest.approx(m[f"test/{k}"], rel=1e-6), k
    wrong, _ = vae_experiment.make_evaluate(
        c, dataclasses.replace(ds, test_labels=(ds.test_labels + 1) % 10), graphdef)
    other = wrong(params)
    assert other["iw_log_likelihood"] < true["iw_log_likelihood"] - 5, (other, true)
    assert other["elbo"] < true["elbo"] - 5


@pytest.mark.slow
def test_a_conditional_sweep_equals_its_single_run(tmp_path):
    tiny = {"data.name": "digits", "model.conditional": True, "model.hidden": (16,),
            "model.latent_dim": 3, "train.num_steps": 50, "train.steps_per_dispatch": 25,
            "train.checkpoint_every": 50, "train.batch_size": 32, "eval.iw_samples": 10,
            "eval.iw_chunk": 10, "eval.fd_samples": 0, "plots.interp_steps": 3}
    config = sweep_spec.apply(vae_config.get_config("quick"), tiny)
    record = vae_experiment.sweep(config, str(tmp_path / "sweep"), ["seed=0,1"])
    rows = record["settings"]
    assert len(rows) == 2 and len(record["programs"]) == 1
    single = vae_experiment.train_and_evaluate(sweep_spec.apply(config, {"seed": 1}),
                                               str(tmp_path / "single"))
    assert rows[1]["metrics"]["test/conditional"] == 1.0
    for k in ("test/elbo", "test/iw_log_likelihood"):
        np.testing.assert_allclose(rows[1]["metrics"][k], single[k], rtol=1e-5, err_msg=k)
    assert abs(rows[0]["metrics"]["test/elbo"] - rows[1]["metrics"]["test/elbo"]) > 0.01
