"""Your own data: npz:PATH and folder:PATH (genjax.data.user), their one-line errors, the
classifier cache name, and the experiments accepting them (or refusing a kind or shape
that does not fit, in one line)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from genjax import data
from genjax.data import DatasetError, user
from genjax.eval import sample_quality

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _npz(tmp_path, fname="d.npz", **arrays) -> str:
    path = tmp_path / fname
    np.savez(path, **arrays)
    return str(path)


def _expected_split(labels, seed, fraction=0.2):
    """The documented recipe, written out again: per class in order, a permutation from
    default_rng(seed) puts its last round(fraction * n_c) rows in test; then each split
    is shuffled (train first) with the same generator."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(labels.max() + 1):
        rows = rng.permutation(np.flatnonzero(labels == c))
        k = round(fraction * len(rows))
        train += list(rows[:len(rows) - k])
        test += list(rows[len(rows) - k:])
    train, test = np.array(train, int), np.array(test, int)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


def _grey_images(n, h=8, w=8, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w), dtype=np.uint8)


# ---------------------------------------------------------------------------------
# npz:PATH


def test_npz_grey_images_get_a_channel_axis_and_the_documented_seeded_split(tmp_path):
    x = _grey_images(53)
    y = np.repeat(np.arange(3), [20, 20, 13]).astype(np.int64)   # int64 accepted
    name = "npz:" + _npz(tmp_path, x=x, y=y)
    ds = data.load(name, seed=5)
    assert ds.name == name and ds.kind == "image" and ds.num_classes == 3
    assert ds.example_shape == (8, 8, 1) and ds.train.dtype == np.uint8
    assert ds.train_labels.dtype == np.int32
    train, test = _expected_split(y, 5)
    assert len(test) == 4 + 4 + 3                              # round(0.2 * n_c) per class
    np.testing.assert_array_equal(ds.train[..., 0], x[train])
    np.testing.assert_array_equal(ds.test[..., 0], x[test])
    np.testing.assert_array_equal(ds.train_labels, y[train])
    np.testing.assert_array_equal(ds.test_labels, y[test])
    # same seed: same split; another seed: another split of the same rows
    again, other = data.load(name, seed=5), data.load(name, seed=6)
    np.testing.assert_array_equal(again.test, ds.test)
    assert not np.array_equal(other.test, ds.test)
    assert sorted(map(bytes, np.concatenate([other.train, other.test]))) == sorted(
        map(bytes, x[..., None]))
    with pytest.raises(ValueError):                            # read-only like the others
        ds.train[0, 0, 0, 0] = 1


def test_npz_given_test_split_is_used_as_given(tmp_path):
    rng = np.random.default_rng(1)
    x, xt = (rng.integers(0, 256, (n, 4, 4, 3), dtype=np.uint8) for n in (10, 6))
    y, yt = rng.integers(0, 4, 10), np.array([4, 0, 1, 1, 2, 3])
    ds = data.load("npz:" + _npz(tmp_path, x=x, y=y, x_test=xt, y_test=yt), seed=9)
    np.testing.assert_array_equal(ds.train, x)
    np.testing.assert_array_equal(ds.test, xt)
    np.testing.assert_array_equal(ds.test_labels, yt)
    assert ds.example_shape == (4, 4, 3) and ds.num_classes == 5   # max over both + 1


def test_npz_float_features_are_points_split_80_20_without_labels(tmp_path):
    x = np.random.default_rng(2).normal(size=(41, 3))                 # float64
    ds = data.load("npz:" + _npz(tmp_path, x=x), seed=0)
    assert ds.kind == "points" and ds.train.dtype == np.float32
    assert ds.train_labels is None and ds.num_classes is None
    train, test = _expected_split(np.zeros(41, int), 0)
    assert len(test) == round(0.2 * 41) == 8
    np.testing.assert_array_equal(ds.test, x[test].astype(np.float32))
    np.testing.assert_array_equal(ds.train, x[train].astype(np.float32))


def _bad_npz_cases():
    img = _grey_images(10)
    return [
        (dict(images=img), ["no array 'x'", "images", "np.savez"]),
        (dict(x=img, ytest=np.zeros(10, int)), ["unexpected arrays ytest"]),
        (dict(x=img.astype(np.float32) / 255), ["float images", "uint8"]),
        (dict(x=np.zeros((10, 2, 2, 2, 1), np.float32)), ["[N, D]"]),
        (dict(x=np.zeros(10, np.float32)), ["[N, D]", "x[:, None]"]),
        (dict(x=img.reshape(10, -1)), ["uint8", "float32"]),
        (dict(x=img.astype(np.int64)), ["int64", "uint8"]),
        (dict(x=img > 128), ["bool", "0/255"]),
        (dict(x=np.zeros((10, 4, 4, 4), np.uint8)), ["alpha"]),
        (dict(x=img, y=np.zeros(10)), ["'y'", "float64", "integer"]),
        (dict(x=img, y=np.zeros(9, int)), ["'y'", "(9,)", "10 examples"]),
        (dict(x=img, y=-np.ones(10, int)), ["'y'", "-1"]),
        (dict(x=img, y_test=np.zeros(3, int)), ["'y_test'", "no 'x_test'"]),
        (dict(x=img, y=np.zeros(10, int), x_test=img), ["one split"]),
        (dict(x=img, x_test=np.zeros((3, 2), np.float32)), ["'x_test'", "must match"]),
        (dict(x=img, x_test=img[:, :4]), ["shape", "must match"]),          # validate()
        (dict(x=np.full((10, 3), np.nan)), ["NaN"]),                          # validate()
        (dict(x=(img > 128).astype(np.uint8)), ["0/255"]),                    # validate()
        (dict(x=img[:2]), ["too few", "x_test"]),
    ]


@pytest.mark.parametrize("arrays, words", _bad_npz_cases())
def test_npz_problems_are_one_line_errors(tmp_path, arrays, words):
    name = "npz:" + _npz(tmp_path, **arrays)
    with pytest.raises(DatasetError) as err:
        data.load(name)
    msg = str(err.value)
    assert "\n" not in msg and name in msg
    for w in words:
        assert w in msg, msg


def test_npz_unreadable_files_are_one_line_errors(tmp_path):
    np.save(tmp_path / "a.npy", _grey_images(3))
    (tmp_path / "junk.npz").write_bytes(b"not a zip archive")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object))
    cases = {f"npz:{tmp_path}/missing.npz": ["no such file"],
             f"npz:{tmp_path}": ["is a folder", "folder:"],
             f"npz:{tmp_path}/a.npy": ["single array", "np.savez"],
             f"npz:{tmp_path}/junk.npz": ["cannot read", "np.savez"],
             f"npz:{tmp_path}/obj.npz": ["'x'", "no objects"],
             "npz:": ["no path"]}
    for name, words in cases.items():
        with pytest.raises(DatasetError) as err:
            data.load(name)
        msg = str(err.value)
        assert "\n" not in msg and all(w in msg for w in words), msg


def test_unknown_name_points_to_user_data():
    with pytest.raises(DatasetError) as err:
        data.load("/data/mine.npz")
    assert "npz:PATH" in str(err.value) and "folder:PATH" in str(err.value)


# ---------------------------------------------------------------------------------
# folder:PATH


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folder_of_class_subfolders(tmp_path):
    x = _grey_images(15, 6, 5)
    classes = ("cat", "ant", "bee")                      # labels follow sorted names
    for i in range(15):
        _save(tmp_path / classes[i % 3] / f"{i:02d}.png", x[i])
    (tmp_path / "bee" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    name = f"folder:{tmp_path}"
    ds = data.load(name, seed=3)
    assert ds.kind == "image" and ds.example_shape == (6, 5, 1) and ds.num_classes == 3
    assert len(ds.train) == 12 and len(ds.test) == 3     # round(0.2 * 5) per class
    label_of = {"ant": 0, "bee": 1, "cat": 2}
    # file order: classes sorted, files sorted inside; then the seeded split
    order = [i for c in sorted(classes) for i in range(15) if classes[i % 3] == c]
    y = np.array([label_of[classes[i % 3]] for i in order])
    train, test = _expected_split(y, 3)
    np.testing.assert_array_equal(ds.train[..., 0], x[order][train])   # PNG is lossless
    np.testing.assert_array_equal(ds.test_labels, y[test])
    assert np.bincount(ds.test_labels).tolist() == [1, 1, 1]


def test_folder_mixing_grey_and_rgb_gives_rgb_and_reads_jpeg(tmp_path):
    grey = _grey_images(5, 8, 8)
    rgb = np.random.default_rng(1).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    for i in range(5):
        _save(tmp_path / f"g{i}.png", grey[i])
        _save(tmp_path / f"c{i}.png", rgb[i])
    Image.fromarray(rgb[0]).save(tmp_path / "j.jpg", quality=95)
    ds = data.load(f"folder:{tmp_path}")
    assert ds.example_shape == (8, 8, 3) and ds.train_labels is None
    every = np.concatenate([ds.train, ds.test])
    assert len(every) == 11
    for g in grey:                                       # grey repeated on 3 channels
        assert any(np.array_equal(e, np.repeat(g[..., None], 3, -1)) for e in every)
    for c in rgb:
        assert any(np.array_equal(e, c) for e in every)


def test_folder_train_test_subfolders_are_the_split(tmp_path):
    x = _grey_images(9, 4, 4)
    for i in range(6):
        _save(tmp_path / "train" / ("a" if i < 3 else "b") / f"{i}.png", x[i])
    for i in range(6, 9):
        _save(tmp_path / "test" / ("a" if i < 8 else "b") / f"{i}.png", x[i])
    ds = data.load(f"folder:{tmp_path}", seed=0)
    assert len(ds.train) == 6 and len(ds.test) == 3 and ds.num_classes == 2
    assert sorted(map(bytes, ds.test[..., 0])) == sorted(map(bytes, x[6:]))
    for img, label in zip(ds.test[..., 0], ds.test_labels):
        i = next(k for k in range(6, 9) if np.array_equal(x[k], img))
        assert label == (0 if i < 8 else 1)


def test_folder_problems_are_one_line_errors(tmp_path):
    img = _grey_images(4, 6, 6)
    cases = {}
    d = tmp_path / "empty_class"
    _save(d / "a" / "0.png", img[0]); _save(d / "a" / "1.png", img[1])   # noqa: E702
    (d / "b").mkdir()
    (d / "b" / "readme.txt").write_text("x")
    cases[d] = ["class folder", str(d / "b"), "no"]
    d = tmp_path / "sizes"
    _save(d / "0.png", img[0]); _save(d / "1.png", img[1, :5])           # noqa: E702
    cases[d] = [str(d / "1.png"), "5x6", "6x6", "same size"]
    d = tmp_path / "broken"
    _save(d / "0.png", img[0])
    (d / "1.png").write_bytes(b"\x89PNG truncated")
    cases[d] = ["cannot read image", str(d / "1.png")]
    d = tmp_path / "mixed"
    _save(d / "0.png", img[0]); _save(d / "c" / "1.png", img[1])         # noqa: E702
    cases[d] = ["both images", "sub-folders"]
    d = tmp_path / "nothing"
    d.mkdir()
    cases[d] = ["no images"]
    d = tmp_path / "deep"
    _save(d / "0.png", img[0]); _save(d / "1.png", img[1])               # noqa: E702
    Image.fromarray(img[2].astype(np.uint16) * 257).save(d / "2.png")
    cases[d] = ["16-bit", str(d / "2.png")]
    d = tmp_path / "classes_differ"
    _save(d / "train" / "a" / "0.png", img[0])
    _save(d / "test" / "b" / "1.png", img[1])
    cases[d] = ["train/", "test/", "same class"]
    cases[tmp_path / "missing"] = ["no such folder"]
    np.savez(tmp_path / "f.npz", x=img)
    cases[tmp_path / "f.npz"] = ["not a folder", "npz:"]
    for folder, words in cases.items():
        name = f"folder:{folder}"
        with pytest.raises(DatasetError) as err:
            data.load(name)
        msg = str(err.value)
        assert "\n" not in msg and name in msg, msg
        for w in words:
            assert w in msg, msg


# ---------------------------------------------------------------------------------
# The classifier's cache folder.


def test_classifier_workdir_is_safe_and_tracks_the_data(tmp_path):
    assert sample_quality.default_workdir("mnist5k", 300) == os.path.join(
        "runs", "classifier", "mnist5k_300")
    x = _grey_images(20)
    path = _npz(tmp_path, "my data:v1.npz", x=x)
    name = f"npz:{path}"
    wd = sample_quality.default_workdir(name, 300)
    head, leaf = os.path.split(wd)
    assert head == os.path.join("runs", "classifier")
    assert leaf.startswith("npz-my_data_v1-") and leaf.endswith("_300")
    assert ":" not in leaf and os.sep not in leaf
    assert sample_quality.default_workdir(name, 300) == wd              # stable
    np.savez(path, x=255 - x)                                           # the file changes
    assert sample_quality.default_workdir(name, 300) != wd
    changed = sample_quality.default_workdir(name, 300)
    (tmp_path / "b").mkdir()
    same_bytes = tmp_path / "b" / "my data:v1.npz"
    same_bytes.write_bytes(open(path, "rb").read())                     # another path
    assert sample_quality.default_workdir(f"npz:{same_bytes}", 300) != changed
    _save(tmp_path / "imgs" / "a" / "0.png", x[0])
    folder = f"folder:{tmp_path / 'imgs'}"
    before = user.cache_name(folder)
    assert before.startswith("folder-imgs-")
    _save(tmp_path / "imgs" / "a" / "1.png", x[1])                      # a new image
    assert user.cache_name(folder) != before


def test_require_image_sides():
    ds = data.load("digits")
    data.require_image_sides(ds, 4, "the DCGAN")                        # 8x8: fine
    with pytest.raises(DatasetError) as err:
        data.require_image_sides(ds, 16, "the U-Net with 5 levels")
    msg = str(err.value)
    assert "\n" not in msg and "'digits'" in msg and "(8, 8, 1)" in msg and "16" in msg


# ---------------------------------------------------------------------------------
# The experiments on user data.

FAIR_COIN_NATS = 64 * np.log(2)       # 8x8 binary pixels as independent fair coins
EIGHT_GAUSSIANS_NATS = -(np.log(8) + np.log(2 * np.pi * np.e * data.EIGHT_GAUSSIANS_STD ** 2))


@pytest.fixture(scope="module")
def user_sets(tmp_path_factory):
    """name -> data.name of small user datasets written once for this module."""
    d = tmp_path_factory.mktemp("user_sets")
    digits = data.load("digits")
    x, y = digits.train[:1200, ..., 0], digits.train_labels[:1200]
    np.savez(d / "digits.npz", x=x, y=y)                                 # grey [N, 8, 8]
    np.savez(d / "points.npz", x=data.load("eight_gaussians").train[:2000].astype(np.float64))
    rng = np.random.default_rng(0)
    np.savez(d / "odd.npz", x=rng.integers(0, 256, (200, 10, 10), dtype=np.uint8))
    np.savez(d / "rgb.npz", x=rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8))
    for i in range(300):
        _save(d / "folder" / f"digit_{y[i]}" / f"{i:03d}.png", x[i])
    return {k: f"npz:{d / (k + '.npz')}" for k in ("digits", "points", "odd", "rgb")} | {
        "folder": f"folder:{d / 'folder'}"}


def _config(exp, preset, **fields):
    import importlib  # pylint: disable=import-outside-toplevel

    config = importlib.import_module(f"configs.{exp}").get_config(preset)
    for dotted, value in fields.items():
        section, field = dotted.split("__")
        config[section][field] = value
    return config


def _run(exp, config, workdir):
    import importlib  # pylint: disable=import-outside-toplevel

    return importlib.import_module(f"experiments.{exp}").train_and_evaluate(config,
                                                                            str(workdir))


SHORT = dict(train__num_steps=20, train__steps_per_dispatch=10, train__checkpoint_every=20)


def test_vae_quick_on_npz_images(user_sets, tmp_path):
    config = _config("vae", "quick", data__name=user_sets["digits"], **SHORT)
    metrics = _run("vae", config, tmp_path)
    # 20 steps already beat independent fair coins by far on binarised 8x8 digits
    assert -FAIR_COIN_NATS < metrics["test/elbo"] <= metrics["test/iw_log_likelihood"] + 0.5
    with open(tmp_path / "results.json") as f:
        assert user_sets["digits"] in f.read()
    assert os.path.exists(tmp_path / "samples.png")


def test_gmm_on_npz_points(user_sets, tmp_path):
    config = _config("gmm", "quick", data__name=user_sets["points"])
    metrics = _run("gmm", config, tmp_path)
    # the eight_gaussians points, saved as float64 and read back: EM recovers the density
    assert metrics["train/log_likelihood"] == pytest.approx(EIGHT_GAUSSIANS_NATS, abs=0.1)
    assert metrics["test/log_likelihood"] == pytest.approx(EIGHT_GAUSSIANS_NATS, abs=0.2)
    assert os.path.exists(tmp_path / "density.png")


def test_gan_mlp_on_npz_points(user_sets, tmp_path):
    config = _config("gan", "eight_gaussians", data__name=user_sets["points"], **SHORT)
    _run("gan", config, tmp_path)
    img = np.asarray(Image.open(tmp_path / "samples.png"))
    assert img.ndim == 3 and img.std() > 10
    assert os.path.exists(tmp_path / "results.json")


def test_mixture_of_bernoullis_on_an_image_folder(user_sets, tmp_path):
    config = _config("gmm", "digits", data__name=user_sets["folder"], train__batch_size=64,
                     model__num_components=5, fit__restarts=2)
    metrics = _run("gmm", config, tmp_path)
    assert 10 < metrics["test/nll"] < FAIR_COIN_NATS - 10
    means = np.asarray(Image.open(tmp_path / "means.png"))
    assert means.shape[0] > 8 and means.std() > 10


@pytest.mark.parametrize("exp, preset, which, fields, words", [
    ("vae", "quick", "points", {}, ["holds points", "image"]),
    ("nade", "quick", "points", {}, ["holds points", "image"]),
    ("ddpm", "quick", "points", {}, ["holds points", "image"]),
    ("gan", "quick", "points", {}, ["model.arch", "mlp"]),
    ("gan", "eight_gaussians", "digits", {}, ["model.arch", "dcgan"]),
    ("gan", "quick", "odd", {"eval__fd_samples": 0}, ["(10, 10, 1)", "DCGAN", "4"]),
    ("vae", "conv", "odd", {"train__batch_size": 16}, ["(10, 10, 1)", "conv", "4"]),
    ("ddpm", "quick", "odd", {"model__channel_mults": (1, 2, 2),
                              "model__attention_resolutions": ()},
     ["(10, 10, 1)", "U-Net with 3 levels", "4"]),
])
def test_data_that_does_not_fit_the_model_is_a_one_line_error(user_sets, tmp_path, exp,
                                                              preset, which, fields, words):
    from genjax.train import ConfigError  # pylint: disable=import-outside-toplevel

    config = _config(exp, preset, data__name=user_sets[which], **fields)
    with pytest.raises((ConfigError, DatasetError)) as err:
        _run(exp, config, tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and user_sets[which] in msg, msg
    for w in words:
        assert w in msg, msg


def test_cli_prints_the_shape_error_on_one_line(user_sets, tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "experiments.gan", "--config=configs/gan.py:quick",
         f"--config.data.name={user_sets['odd']}", "--config.eval.fd_samples=0",
         f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300,
        check=False)
    assert out.returncode == 1, out.stderr[-2000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("error: dataset") and user_sets["odd"] in last
    assert "Traceback" not in out.stderr


@pytest.mark.slow
@pytest.mark.parametrize("exp, preset, which, fields", [
    ("vae", "conv", "digits", {"train__batch_size": 64, "eval__fd_samples": 0,
                               "eval__iw_samples": 50, "eval__iw_chunk": 50,
                               "eval__num_examples": 100}),
    ("nade", "quick", "digits", {}),
    ("nade", "rnade", "points", {}),
    ("gan", "quick", "rgb", {"eval__fd_samples": 0}),
    ("gan", "quick", "folder", {"eval__fd_samples": 50}),   # FD: a classifier on it
    ("ddpm", "quick", "digits", {"model__attention_resolutions": (4,)}),
])
def test_every_experiment_runs_on_user_data(user_sets, tmp_path, monkeypatch, exp, preset,
                                            which, fields):
    monkeypatch.chdir(tmp_path)                     # the FD classifier caches in ./runs
    config = _config(exp, preset, data__name=user_sets[which], **SHORT, **fields)
    metrics = _run(exp, config, tmp_path / "run")
    assert all(np.isfinite(v) for v in metrics.values()), metrics
    assert os.path.exists(tmp_path / "run" / "results.json")
