"""PixelCNN (issue 19): the autoregressive property by Jacobian, no blind spot for the
gated model (and the plain stack's blind spot, so the test has power), normalisation by
enumeration, samples and completions against the model's own conditionals, the
categorical likelihood against an independent computation, and the quick preset end to
end."""

from __future__ import annotations

import itertools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from configs import pixelcnn as pixelcnn_config
from experiments import pixelcnn as pixelcnn_exp
from genjax import data as gdata
from genjax.eval import exact_likelihood
from genjax.losses import autoregressive as ar
from genjax.models.pixelcnn import PixelCNN
from genjax.nn.masked_conv import raster_mask
from genjax.train import sweep_spec


def model(arch="gated", n=5, levels=2, layers=4, first=3, channels=8, seed=0):
    return PixelCNN((n, n, 1), arch=arch, channels=channels, layers=layers, kernel=3,
                    first_kernel=first, head=8, levels=levels, rngs=nnx.Rngs(seed))


def dependence(m, seed=1):
    """|d logits_i / d x_j| summed over the output classes, [D, D], at a random image."""
    d = m.dim
    x = jax.random.randint(jax.random.key(seed), (d,), 0, m.levels).astype(jnp.float32)

    def out(v):
        y = m.logits(v[None])[0]
        return y if m.levels == 2 else y.sum(-1)

    return np.abs(np.asarray(jax.jit(jax.jacrev(out))(x)))


def unseen_earlier_pixels(m):
    """The (i, j) pairs with j < i (raster order) on which output i does not depend."""
    J = dependence(m)
    i, j = np.tril_indices(m.dim, -1)
    return [(a, b) for a, b in zip(i, j) if J[a, b] == 0.0]


def test_raster_masks():
    np.testing.assert_array_equal(raster_mask(3, "A"), [[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_array_equal(raster_mask(3, "B"), [[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="odd"):
        raster_mask(4, "A")
    with pytest.raises(ValueError, match="mask_type"):
        raster_mask(3, "C")


@pytest.mark.parametrize("arch, levels", [("gated", 2), ("gated", 256), ("plain", 2),
                                          ("plain", 256)])
def test_no_output_depends_on_its_own_or_a_later_pixel(arch, levels):
    J = dependence(model(arch, levels=levels))
    assert J.shape == (25, 25)
    assert J[np.triu_indices(25)].max() == 0.0          # exact zeros, diagonal included
    assert J[np.tril_indices(25, -1)].max() > 0.0


def test_gated_output_depends_on_every_earlier_pixel_and_the_plain_stack_does_not():
    # 4 gated blocks after a first kernel of 3 reach 5 rows up and 5 columns either side:
    # the whole 5x5 image before each pixel
    assert unseen_earlier_pixels(model("gated")) == []
    # the same depth of masked convolutions leaves a blind spot above-right of pixels
    blind = unseen_earlier_pixels(model("plain"))
    assert blind
    rows_cols = [(divmod(i, 5), divmod(j, 5)) for i, j in blind]
    assert all(rj < ri and cj > ci for (ri, ci), (rj, cj) in rows_cols)
    # e.g. pixel (1, 0) never sees (0, 2): nothing left of it in its row can, and the
    # features above it only gather from their left; depth does not remove the wedge
    assert (5, 2) in blind
    assert unseen_earlier_pixels(model("plain", layers=8))


def _all_images(n, levels):
    return np.array(list(itertools.product(range(levels), repeat=n * n)),
                    np.float32).reshape(-1, n, n, 1)


@pytest.mark.parametrize("arch, n, levels", [("gated", 3, 2), ("plain", 3, 2),
                                             ("gated", 2, 3)])
def test_probabilities_sum_to_one_over_every_image(arch, n, levels):
    m = model(arch, n=n, levels=levels, layers=2, channels=4)
    m.out_bias[...] = jax.random.normal(jax.random.key(3), m.out_bias.shape)   # not uniform
    x = _all_images(n, levels)                                # 512 or 81 images
    log_p = np.asarray(jax.jit(m.log_prob)(x), np.float64)
    assert np.exp(log_p).sum() == pytest.approx(1.0, abs=1e-5)
    assert log_p.std() > 0.3                                  # far from uniform


def _index(x, levels):
    flat = np.asarray(x).reshape(len(x), -1).astype(np.int64)
    return flat @ (levels ** np.arange(flat.shape[1])[::-1])


@pytest.mark.parametrize("levels", [2, 3])
def test_samples_follow_the_models_own_distribution(levels):
    m = model("gated", n=2, levels=levels, layers=2, channels=4)
    m.out_bias[...] = jax.random.normal(jax.random.key(5), m.out_bias.shape)
    probs = np.exp(np.asarray(jax.jit(m.log_prob)(_all_images(2, levels)), np.float64))
    n = 20_000
    x, log_p = jax.jit(lambda k: m.sample(k, n))(jax.random.key(7))
    np.testing.assert_allclose(log_p, jax.jit(m.log_prob)(x), atol=1e-4)
    counts = np.bincount(_index(x, levels), minlength=levels ** 4)
    assert stats.chisquare(counts, n * probs / probs.sum()).pvalue > 1e-3


def test_completion_samples_the_exact_conditional_of_the_missing_rows():
    m = model("gated", n=3, levels=2, layers=3, channels=4)
    m.out_bias[...] = jax.random.normal(jax.random.key(2), m.out_bias.shape)
    every = _all_images(3, 2)
    log_p = np.asarray(jax.jit(m.log_prob)(every), np.float64)
    mask = pixelcnn_exp.given_rows((3, 3, 1), 1)              # the top row given
    top = np.array([1, 0, 1], np.float32)
    match = np.all(every[:, 0, :, 0] == top, axis=1)          # 64 completions of `top`
    cond = np.exp(log_p[match] - np.logaddexp.reduce(log_p[match]))
    # the exact conditional's log equals the sum of the missing pixels' conditionals
    np.testing.assert_allclose(m.conditional_log_prob(every[match], mask), np.log(cond),
                               atol=1e-4)
    n = 20_000
    given = np.broadcast_to(every[match][:1], (n, 3, 3, 1))
    x, log_q = jax.jit(lambda k: m.complete(k, given, mask))(jax.random.key(9))
    x = np.asarray(x)
    assert np.all(x[:, 0, :, 0] == top)                       # the given pixels are kept
    np.testing.assert_allclose(log_q, m.conditional_log_prob(x, mask), atol=1e-4)
    idx = _index(x[:, 1:], 2)                                 # the 6 sampled pixels
    want = cond[np.argsort(_index(every[match][:, 1:], 2))]
    counts = np.bincount(idx, minlength=64)
    assert stats.chisquare(counts, n * want).pvalue > 1e-3


def test_categorical_log_likelihood_against_an_independent_computation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, (4, 6)).astype(np.float32)
    logits = rng.normal(size=(4, 6, 5)).astype(np.float32)
    got = ar.categorical_autoregressive_log_likelihood(x, logits_fn=lambda v: logits)
    lse = np.log(np.exp(logits.astype(np.float64)).sum(-1))
    want = np.array([sum(logits[b, i, int(x[b, i])] - lse[b, i] for i in range(6))
                     for b in range(4)])
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_bits_per_dim_conventions():
    d = 64
    assert exact_likelihood.bits_per_dim("dynamic_binarize", -d * np.log(2), d) == 1.0
    assert exact_likelihood.bits_per_dim("none", -d * np.log(256), d, discrete=True) == 8.0
    assert exact_likelihood.bits_per_dim("dequantize", 0.0, d) == pytest.approx(8.0)
    assert exact_likelihood.bits_per_dim("none", -1.0, d) is None


def test_quick_preset_learns_and_writes_its_figures(tmp_path):
    config = pixelcnn_config.get_config("quick")
    workdir = str(tmp_path / "run")
    metrics = pixelcnn_exp.train_and_evaluate(config, workdir)
    # the untrained model (output biases at the pixel marginals) on the same test digits
    ds = gdata.load("digits", seed=0)
    b = pixelcnn_exp.build(config, ds.example_shape, ds.train)
    before = exact_likelihood.make_evaluate(config, ds, b.log_prob_fn)(b.state.params)
    assert metrics["test/log_likelihood"] > before["log_likelihood"] + 3.0
    # log p(bottom | top) = log p(x) - log p(top) >= log p(x), and it is a proper log
    assert metrics["test/log_likelihood"] < metrics["test/completion_log_likelihood"] < 0
    assert metrics["test/bits_per_dim"] == pytest.approx(
        -metrics["test/log_likelihood"] / (64 * np.log(2)))
    with open(os.path.join(workdir, "results.json")) as f:
        assert json.load(f)["metrics"]["test/log_likelihood"] == pytest.approx(
            metrics["test/log_likelihood"])
    for name in ("samples.png", "completions.png"):
        assert os.path.getsize(os.path.join(workdir, name)) > 0


@pytest.mark.slow
def test_eight_bit_digits_are_scored_in_bits_per_dim(tmp_path):
    config = pixelcnn_config.get_config("quick")
    with config.unlocked():
        config.data.preprocess = "none"
        config.model.levels = 256
        config.train.num_steps = 50
        config.train.checkpoint_every = 50
        config.eval.update(num_examples=50, train_examples=0, completion_rows=0)
    metrics = pixelcnn_exp.train_and_evaluate(config, str(tmp_path / "run"))
    # 8-bit values: a 256-way softmax is a discrete likelihood, < 8 bits and > 0
    assert 0.0 < metrics["test/bits_per_dim"] < 8.0
    assert metrics["test/bits_per_dim"] == pytest.approx(
        -metrics["test/log_likelihood"] / (64 * np.log(2)))


@pytest.mark.slow
def test_a_sweep_over_learning_rates_and_seeds_is_one_program_equal_to_single_runs(tmp_path):
    config = pixelcnn_config.get_config("quick")
    with config.unlocked():
        config.train.update(num_steps=50, checkpoint_every=50)
        config.eval.update(num_examples=50, train_examples=0, completion_rows=0)
        config.plots.num_samples = 4
    record = pixelcnn_exp.sweep(config, str(tmp_path / "sweep"),
                                ["optim.lr=1e-3,3e-3", "seed=0,1"])
    assert record["description"].startswith("4 settings in 1 compiled program")
    rows = record["settings"]
    for r in (rows[0], rows[-1]):
        single = pixelcnn_exp.train_and_evaluate(sweep_spec.apply(config, r["setting"]),
                                                 str(tmp_path / r["name"]))
        np.testing.assert_allclose(r["metrics"]["test/log_likelihood"],
                                   single["test/log_likelihood"], rtol=1e-4)
