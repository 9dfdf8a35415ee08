"""The in-memory `Dataset`, its validation, and `load(name)`, the one entry point.

Every dataset genjax trains on fits in host memory, so a `Dataset` is two numpy
arrays (train and test) plus optional integer labels:

* ``kind="image"``: ``uint8 [N, H, W, C]`` with pixel values in 0..255. Binary data
  (binarized MNIST) is stored as 0/255, so every image dataset goes through the same
  transforms (`genjax.data.transforms`).
* ``kind="points"``: ``float32 [N, D]`` (D = 2 for the toy densities), finite.

Labels are ``int32 [N]`` in ``0..num_classes-1``, or ``None`` for both splits.

`load` validates what it returns (`validate`), so a model never compiles against a
malformed dataset; every problem raises `DatasetError` with one line saying what is
wrong and how to fix it. The arrays of a loaded dataset are read-only: embedded
datasets are cached in-process and shared between callers, and a read-only array
turns an accidental in-place shuffle into an error instead of a silent change for
every later caller (copy with ``np.array(ds.train)`` to get a writeable one).

User data (``npz:PATH``, ``folder:PATH``) is loaded by `genjax.data.user` into the
same layout and checked by the same `validate`.

The loaders are imported inside `load`, so ``import genjax.data`` neither imports
tensorflow_datasets nor reads any data.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Names only: the loaders live in `embedded.py` and `tfds_source.py`
# (tests check that these tuples match them).
EMBEDDED: tuple[str, ...] = (
    "mnist5k",
    "digits",
    "two_moons",
    "eight_gaussians",
    "checkerboard",
    "two_spirals",
)
TFDS: tuple[str, ...] = ("mnist", "fashion_mnist", "binarized_mnist", "cifar10")

KINDS: tuple[str, ...] = ("image", "points")
# Prefixes of user data, ``npz:PATH`` and ``folder:PATH`` (`genjax.data.user`).
USER_PREFIXES: tuple[str, ...] = ("npz:", "folder:")


class DatasetError(ValueError):
    """A dataset cannot be loaded or is malformed; the message says how to fix it."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A dataset held in host memory.

    ``eq=False``: equality and hashing are by identity (a field-wise ``==`` would
    compare arrays and raise), so a `Dataset` can be a dict or cache key.

    Attributes:
      name: registry name, e.g. ``"mnist5k"``.
      train: images ``uint8 [N, H, W, C]`` in 0..255, or points ``float32 [N, D]``.
      test: same layout as ``train`` (its own N).
      train_labels: ``int32 [N]`` or ``None``.
      test_labels: ``int32 [N_test]`` or ``None`` (``None`` exactly when train's is).
      kind: ``"image"`` or ``"points"``.
      num_classes: number of label values, or ``None`` when there are no labels.
    """

    name: str
    train: np.ndarray
    test: np.ndarray
    train_labels: np.ndarray | None
    test_labels: np.ndarray | None
    kind: str
    num_classes: int | None

    @property
    def example_shape(self) -> tuple[int, ...]:
        """Shape of one example: ``(H, W, C)`` for images, ``(D,)`` for points."""
        return tuple(self.train.shape[1:])


def _fail(ds_name: str, where: str, problem: str) -> DatasetError:
    return DatasetError(f"Dataset {ds_name!r} {where}: {problem}")


def _check_split(name: str, split: str, x, kind: str) -> None:
    where = f"split {split!r}"
    if not isinstance(x, np.ndarray):
        raise _fail(name, where, f"expected a numpy array, got {type(x).__name__}; "
                    "convert with np.asarray")
    if kind == "image":
        if x.ndim != 4:
            raise _fail(name, where, f"expected 4 dims [N, H, W, C] for images, got "
                        f"shape {x.shape}; add a channel axis with x[..., None]")
        if x.dtype != np.uint8:
            raise _fail(name, where, f"expected dtype uint8 (0..255) for images, got "
                        f"{x.dtype}; store pixels as uint8 0..255")
        if min(x.shape[1:]) < 1:
            raise _fail(name, where, f"empty image dimensions in shape {x.shape}")
    else:
        if x.ndim != 2:
            raise _fail(name, where, f"expected 2 dims [N, D] for points, got shape "
                        f"{x.shape}; reshape to [N, D]")
        if x.dtype != np.float32:
            raise _fail(name, where, f"expected dtype float32 for points, got "
                        f"{x.dtype}; cast with .astype(np.float32)")
        if x.shape[1] < 1:
            raise _fail(name, where, f"points have no coordinates (shape {x.shape})")
        if not np.isfinite(x).all():
            bad = int(np.size(x) - np.count_nonzero(np.isfinite(x)))
            raise _fail(name, where, f"contains {bad} NaN/inf values; drop or fix "
                        "those rows")
    if x.shape[0] < 1:
        raise _fail(name, where, "has no examples (N = 0)")


def _check_labels(name: str, split: str, y, n: int, num_classes: int) -> None:
    where = f"split {split!r} labels"
    if not isinstance(y, np.ndarray):
        raise _fail(name, where, f"expected a numpy array, got {type(y).__name__}")
    if y.dtype != np.int32 or y.shape != (n,):
        raise _fail(name, where, f"expected int32 [{n}], got {y.dtype} {y.shape}; "
                    "use np.asarray(labels, np.int32)")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise _fail(name, where, f"values span {int(y.min())}..{int(y.max())}, "
                    f"outside 0..{num_classes - 1} (num_classes={num_classes})")


def validate(ds: Dataset) -> Dataset:
    """Checks layout, dtype, range and finiteness of both splits; returns ``ds``.

    Raises `DatasetError` naming the dataset, the split and the problem: wrong kind,
    wrong number of dims or dtype, train/test example shapes that differ, an empty
    split, NaN/inf points, images whose maximum pixel is <= 1 (0/1 data stored
    without the x255, which would make every transform see a black image), labels
    missing from one split only, of the wrong dtype/length, or outside
    ``0..num_classes-1``.
    """
    name = ds.name
    if not isinstance(name, str) or not name:
        raise DatasetError(f"Dataset name must be a non-empty string, got {name!r}")
    if ds.kind not in KINDS:
        raise _fail(name, "kind", f"unknown kind {ds.kind!r}; use one of {KINDS}")
    _check_split(name, "train", ds.train, ds.kind)
    _check_split(name, "test", ds.test, ds.kind)
    if ds.train.shape[1:] != ds.test.shape[1:]:
        raise _fail(name, "splits", f"train examples have shape {ds.train.shape[1:]} "
                    f"but test examples {ds.test.shape[1:]}; they must match")
    if ds.kind == "image" and int(ds.train.max()) <= 1:
        raise _fail(name, "split 'train'", "every pixel is 0 or 1; binary images "
                    "must be stored as 0/255 uint8 (multiply by 255)")
    if (ds.train_labels is None) != (ds.test_labels is None):
        raise _fail(name, "labels", "present for one split only; give both or neither")
    if ds.train_labels is None:
        if ds.num_classes is not None:
            raise _fail(name, "labels", f"num_classes={ds.num_classes} but there are "
                        "no labels; set num_classes=None")
        return ds
    if not isinstance(ds.num_classes, int) or ds.num_classes < 1:
        raise _fail(name, "labels", f"num_classes must be a positive int when labels "
                    f"are given, got {ds.num_classes!r}")
    _check_labels(name, "train", ds.train_labels, ds.train.shape[0], ds.num_classes)
    _check_labels(name, "test", ds.test_labels, ds.test.shape[0], ds.num_classes)
    return ds


def require_image_sides(ds: Dataset, multiple: int, model: str, fix: str = "") -> None:
    """Raises a one-line `DatasetError` unless ``ds`` holds images whose height and width
    are multiples of ``multiple`` (what ``model``, e.g. "the DCGAN", needs); ``fix`` is
    appended as the remedy (default: resize or pad the images)."""
    if ds.kind != "image":
        raise DatasetError(f"dataset {ds.name!r} holds {ds.kind} of shape "
                           f"{ds.example_shape}, but {model} needs images")
    h, w = ds.example_shape[:2]
    if h % multiple or w % multiple:
        raise DatasetError(
            f"dataset {ds.name!r} has images of shape {ds.example_shape} (H, W, C), but "
            f"{model} needs H and W divisible by {multiple}; "
            + (fix or f"resize or pad the images to a multiple of {multiple}"))


def known_names() -> tuple[str, ...]:
    """All names `load` accepts: the embedded ones, then the TFDS ones."""
    return EMBEDDED + TFDS


def load(name: str, *, data_dir: str | None = None, seed: int = 0) -> Dataset:
    """Loads and validates the dataset called ``name``.

    Args:
      name: one of `EMBEDDED` (shipped with pip packages, work offline), `TFDS`
        (read from a prepared TFDS directory, never downloaded), or your own data:
        ``npz:PATH`` (an ``np.savez`` archive) or ``folder:PATH`` (PNG/JPEG images, a
        sub-folder per class); see `genjax.data.user` for their layout.
      data_dir: TFDS data directory; ``None`` means TFDS's default
        (``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``). Ignored for other data.
      seed: sample seed of the 2-D toy densities (same seed, identical points), and
        the seed of the 80/20 split of user data that brings no test split.
        The embedded and TFDS image datasets' splits are fixed and do not depend on it.

    Returns:
      A validated `Dataset` with read-only arrays.

    Raises:
      DatasetError: unknown name (the message lists the known ones), TFDS data not
        prepared, a missing or unreadable user file, or malformed data.
    """
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"seed must be a non-negative int, got {seed!r}")
    if name in EMBEDDED:
        from genjax.data import embedded  # pylint: disable=import-outside-toplevel

        return embedded.load_embedded(name, seed=int(seed))
    if name in TFDS:
        from genjax.data import tfds_source  # pylint: disable=import-outside-toplevel

        return tfds_source.load_tfds(name, data_dir=data_dir)
    if isinstance(name, str) and name.startswith(USER_PREFIXES):
        from genjax.data import user  # pylint: disable=import-outside-toplevel

        return user.load_user(name, seed=int(seed))
    raise DatasetError(
        f"Unknown dataset {name!r}; known datasets: embedded "
        f"{', '.join(EMBEDDED)}; TFDS {', '.join(TFDS)}; your own: npz:PATH (np.savez "
        "archive with x [, y, x_test, y_test]) or folder:PATH (PNG/JPEG images, a "
        "sub-folder per class)"
    )


def freeze(ds: Dataset) -> Dataset:
    """Marks every array of ``ds`` read-only (in place) and returns ``ds``."""
    for arr in (ds.train, ds.test, ds.train_labels, ds.test_labels):
        if arr is not None:
            arr.flags.writeable = False
    return ds
