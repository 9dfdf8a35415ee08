"""The shared pieces of conditional generation: label encodings, label dropout, balanced
labels, the config check and the conditional metrics (genjax.conditioning,
genjax.eval.conditional)."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from genjax import conditioning, data
from genjax.eval import conditional
from genjax.eval.frechet import frechet_distance
from genjax.train import config as cfglib, experiment


def test_one_hot_gives_the_null_class_its_own_slot():
    oh = np.asarray(conditioning.one_hot(jnp.array([0, 3, 10]), 10))
    assert oh.shape == (3, 11)
    np.testing.assert_array_equal(oh.argmax(-1), [0, 3, 10])
    np.testing.assert_array_equal(oh.sum(-1), 1.0)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 1.0])
def test_label_dropout_rate_is_honoured(rate):
    n, k = 200_000, 10
    y = jnp.asarray(np.arange(n) % k, jnp.int32)
    out = np.asarray(jax.jit(conditioning.drop_labels, static_argnums=3)(
        jax.random.key(1), y, rate, k))
    dropped = out == conditioning.null_label(k)
    share = dropped.mean()
    assert abs(share - rate) <= 4 * np.sqrt(rate * (1 - rate) / n) + 1e-12
    np.testing.assert_array_equal(out[~dropped], np.asarray(y)[~dropped])  # the rest kept
    # a traced rate (e.g. a swept hyper-parameter) works the same
    traced = jax.jit(lambda r: conditioning.drop_labels(jax.random.key(1), y, r, k))(rate)
    np.testing.assert_array_equal(np.asarray(traced), out)


def test_balanced_labels():
    y = conditioning.balanced_labels(1000, 10)
    assert y.dtype == np.int32 and y.shape == (1000,)
    np.testing.assert_array_equal(np.bincount(y), [100] * 10)
    assert list(y[:3]) == [0, 0, 0] and y[-1] == 9
    np.testing.assert_array_equal(np.bincount(conditioning.balanced_labels(23, 10)),
                                  [3, 3, 3, 2, 2, 2, 2, 2, 2, 2])


def test_label_embedding_has_a_row_per_class_and_null():
    emb = conditioning.LabelEmbedding(4, 8, rngs=nnx.Rngs(0))
    out = np.asarray(emb(jnp.arange(5)))
    assert out.shape == (5, 8)
    assert np.linalg.matrix_rank(out) == 5          # five distinct, independent rows
    np.testing.assert_array_equal(np.asarray(emb(jnp.array([2, 2]))), out[[2, 2]])


def _config(name, on):
    c = ml_collections.ConfigDict(dict(data=dict(name=name),
                                       model=dict(conditional=on)))
    return c


def test_validate_conditional_needs_labels_and_a_bool():
    assert cfglib.validate_conditional(_config("two_moons", True), data.load("two_moons"))
    assert not cfglib.validate_conditional(_config("checkerboard", False),
                                           data.load("checkerboard"))
    with pytest.raises(cfglib.ConfigError, match=r"^--config.model.conditional=True .*"
                       "has no labels"):
        cfglib.validate_conditional(_config("checkerboard", True), data.load("checkerboard"))
    with pytest.raises(cfglib.ConfigError, match="True or False"):
        cfglib.validate_conditional(_config("mnist5k", 1), data.load("two_moons"))


def test_training_data_carries_the_labels():
    ds = data.load("digits")
    assert experiment.training_data(ds, False) is ds.train
    x, y = experiment.training_data(ds, True)
    assert x is ds.train and y.dtype == np.int32
    np.testing.assert_array_equal(y, ds.train_labels)


class _FakeClassifier:
    """Features: the flattened image; prediction: the brightest of 3 regions."""

    def features(self, x):
        return np.asarray(x, np.float64).reshape(len(x), -1)

    def predict(self, x):
        return np.asarray(x).reshape(len(x), 3, -1).mean(-1).argmax(-1)


def test_conditional_quality_against_a_hand_computation():
    rng = np.random.default_rng(0)

    def images(labels, noise):                      # [N, 3, 2, 1]: class y lights row y
        x = rng.uniform(0, noise, (len(labels), 3, 2, 1))
        x[np.arange(len(labels)), labels] += 1.0
        return x.astype(np.float32)

    real_labels = np.repeat(np.arange(3), 20)
    real = images(real_labels, 0.3)
    labels = np.repeat(np.arange(3), 10)
    wrong = labels.copy()
    wrong[:4] = 1                                   # 4 samples of class 0 drawn as a 1
    samples = images(wrong, 0.3)
    clf = _FakeClassifier()
    m = conditional.conditional_quality(clf, samples, labels, real, real_labels)
    assert m["cond_accuracy"] == pytest.approx(26 / 30)
    assert m["accuracy/0"] == pytest.approx(6 / 10)
    assert m["accuracy/1"] == m["accuracy/2"] == 1.0
    f, rf = clf.features(samples), clf.features(real)
    assert m["fd"] == pytest.approx(frechet_distance(rf[:30], f))
    per = [frechet_distance(rf[real_labels == y], f[labels == y]) for y in range(3)]
    assert m["fd/1"] == pytest.approx(per[1])
    assert m["fd_per_class"] == pytest.approx(np.mean(per))
    # the class whose samples went wrong is the farthest from its real images
    assert m["fd/0"] > max(m["fd/1"], m["fd/2"])
    with pytest.raises(ValueError, match="differ in length"):
        conditional.conditional_quality(clf, samples, labels[:5], real, real_labels)
