"""Your own data: ``npz:PATH`` (numpy arrays) and ``folder:PATH`` (PNG/JPEG images).

    python -m experiments.vae --config=configs/vae.py:quick --config.data.name=npz:my.npz
    python -m experiments.vae --config=configs/vae.py:quick --config.data.name=folder:faces/

Both become the same `Dataset` as the embedded sets and go through the same `validate`;
every problem is a one-line `DatasetError` naming the dataset and how to fix it.

``npz:PATH`` — an archive written by ``np.savez(PATH, x=..., y=..., ...)`` holding:

* ``x`` (required): ``uint8 [N, H, W, C]`` images (C = 1 grey or 3 RGB, pixels 0..255),
  ``uint8 [N, H, W]`` grey images (given their channel axis: ``[N, H, W, 1]``), or
  float ``[N, D]`` features (points, cast to float32; they must be finite). Float images
  are refused: store pixels as uint8 0..255 (``np.rint(x * 255).astype(np.uint8)`` for
  values in [0, 1]), so every image set meets the same transforms. Binary images are
  stored 0/255.
* ``y`` (optional): integer class labels ``[N]`` in 0..K-1; ``num_classes`` is
  ``max(y) + 1`` over both splits.
* ``x_test`` / ``y_test`` (optional): a test split, used as given (same layout as ``x``;
  ``y_test`` exactly when ``y``). Nothing else may be in the archive (a misspelt
  ``ytest`` is an error, not silently ignored).

``folder:PATH`` — a folder of ``.png`` / ``.jpg`` / ``.jpeg`` images (hidden files and
files with other suffixes are ignored), laid out as either

* ``PATH/<class>/*.png``: one sub-folder per class; labels are the sub-folders in
  sorted name order (0, 1, ...); an empty class folder is an error;
* ``PATH/*.png``: no sub-folders, no labels;
* ``PATH/train/...`` and ``PATH/test/...`` (the only two sub-folders), each laid out as
  above with the same class folders: the split is taken as given (each split shuffled
  with ``np.random.default_rng(seed)``, so evaluating "the first n test images" does
  not pick one class).

All images must have one size (the first that differs is named; resize them first).
Grey images (PIL modes 1, L, LA) give C = 1 when every image is grey; otherwise every
image is converted to RGB (C = 3; grey ones repeated over the channels, palette images
expanded). Alpha channels are dropped. 16-bit and float images are refused.

The split, when none is given (no ``x_test``; no ``train``/``test`` folders): the
mnist5k recipe with the run's seed (``load(..., seed=config.seed)``): ``rng =
np.random.default_rng(seed)``; for each class c = 0, 1, ... in order (all examples are
one class when there are no labels), ``rng.permutation`` of its row indices puts the
last ``round(TEST_FRACTION * n_c)`` (20%) in test and the rest in train; then train and
test are each shuffled with the same ``rng`` (train first). Same file and seed, same
split; another seed, another split (so compare numbers at one seed, or give a test set).

The data is read on every `load` (not cached); the returned arrays are read-only.
`cache_name` names a user dataset for on-disk caches (the sample-quality classifier)
by its path *and* its contents, so a changed file never reuses a stale cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import zipfile

import numpy as np

from genjax.data.dataset import USER_PREFIXES as PREFIXES
from genjax.data.dataset import Dataset, DatasetError, freeze, validate

TEST_FRACTION = 0.2
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg")
NPZ_KEYS: tuple[str, ...] = ("x", "y", "x_test", "y_test")
SAVE_HINT = "save with np.savez(PATH, x=x, y=y) (y, x_test, y_test optional)"


def is_user_name(name) -> bool:
    """Whether ``name`` is ``npz:PATH`` or ``folder:PATH``."""
    return isinstance(name, str) and name.startswith(PREFIXES)


def parse(name: str) -> tuple[str, str]:
    """``"npz:a/b.npz"`` -> ``("npz", "a/b.npz")`` (``~`` expanded)."""
    kind, _, path = name.partition(":")
    if kind + ":" not in PREFIXES:
        raise DatasetError(f"Dataset {name!r}: user data is named "
                           f"{' or '.join(p + 'PATH' for p in PREFIXES)}")
    if not path.strip():
        raise DatasetError(f"Dataset {name!r}: no path after {kind + ':'!r}; e.g. "
                           f"--config.data.name={kind}:/data/" + ("mine.npz" if kind == "npz"
                                                                  else "images"))
    return kind, os.path.expanduser(path)


def _err(name: str, problem: str) -> DatasetError:
    return DatasetError(f"Dataset {name!r}: {problem}")


def load_user(name: str, *, seed: int = 0) -> Dataset:
    """Loads and validates ``npz:PATH`` or ``folder:PATH`` (see the module docstring)."""
    kind, path = parse(name)
    if kind == "npz":
        train, test, y_train, y_test, ds_kind = _load_npz(name, path, seed)
    else:
        train, test, y_train, y_test, ds_kind = _load_folder(name, path, seed)
    num_classes = None
    if y_train is not None:
        num_classes = int(max(y_train.max(initial=-1), y_test.max(initial=-1))) + 1
    return freeze(validate(Dataset(
        name=name, train=np.ascontiguousarray(train), test=np.ascontiguousarray(test),
        train_labels=y_train, test_labels=y_test, kind=ds_kind, num_classes=num_classes)))


def _seeded_split(name: str, labels, n: int, seed: int):
    """(train rows, test rows) of the documented seeded split."""
    from genjax.data.embedded import _stratified_split  # pylint: disable=import-outside-toplevel

    strata = np.zeros(n, np.int64) if labels is None else labels
    train, test = _stratified_split(strata, seed=seed, test_fraction=TEST_FRACTION)
    if len(train) == 0 or len(test) == 0:
        raise _err(name, f"{n} examples are too few for the seeded "
                   f"{1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} split (no test example); "
                   "give a test split (x_test, or train/ and test/ folders)")
    return train, test


# ---------------------------------------------------------------------------------
# npz:PATH


def _examples(name: str, key: str, a: np.ndarray):
    """Checks one ``x`` array; returns (array in the Dataset layout, kind)."""
    shape, dt = tuple(a.shape), a.dtype
    if dt == np.uint8:
        if a.ndim == 3:
            return a[..., None], "image"                      # grey [N, H, W] -> [N, H, W, 1]
        if a.ndim == 4:
            if shape[-1] == 4:
                raise _err(name, f"array {key!r} {shape} has 4 channels; drop the alpha "
                           f"channel ({key}[..., :3])")
            if shape[-1] not in (1, 3):
                raise _err(name, f"array {key!r} {shape} has {shape[-1]} channels; images "
                           "need 1 (grey) or 3 (RGB) as the last axis [N, H, W, C]")
            return a, "image"
        raise _err(name, f"array {key!r} is uint8 of shape {shape}: uint8 means images "
                   "[N, H, W] or [N, H, W, C]; store features [N, D] as float32")
    if np.issubdtype(dt, np.floating):
        if a.ndim == 2:
            return a.astype(np.float32), "points"
        if a.ndim in (3, 4):
            raise _err(name, f"array {key!r} holds float images ({dt} {shape}); store "
                       "pixels as uint8 0..255, e.g. np.rint(x * 255).astype(np.uint8) for "
                       "values in [0, 1] (float arrays are features [N, D])")
        raise _err(name, f"array {key!r} has shape {shape}; float features must be [N, D]"
                   + (f" (reshape with {key}[:, None])" if a.ndim == 1 else ""))
    if dt == np.bool_:
        raise _err(name, f"array {key!r} is bool; store binary images as uint8 0/255 "
                   f"({key}.astype(np.uint8) * 255) or features as float32")
    if np.issubdtype(dt, np.integer):
        raise _err(name, f"array {key!r} has dtype {dt}; store images as uint8 0..255 "
                   f"({key}.astype(np.uint8) if the values are 0..255) or features as "
                   "float32")
    raise _err(name, f"array {key!r} has dtype {dt}; expected uint8 images or float "
               "features")


def _labels(name: str, key: str, y, n: int, x_key: str):
    if y is None:
        return None
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.integer):
        raise _err(name, f"labels {key!r} have dtype {y.dtype}; labels are integer class "
                   f"indices 0..K-1: np.asarray({key}, np.int32)")
    if y.shape != (n,):
        raise _err(name, f"labels {key!r} have shape {tuple(y.shape)} but {x_key!r} has "
                   f"{n} examples; give one label per example, shape ({n},)")
    if n and int(y.min()) < 0:
        raise _err(name, f"labels {key!r} include {int(y.min())}; labels are class "
                   "indices 0..K-1")
    if n and int(y.max()) >= 2**31:
        raise _err(name, f"labels {key!r} include {int(y.max())}; labels are class "
                   "indices 0..K-1")
    return y.astype(np.int32)


def _read_npz(name: str, path: str) -> dict:
    if not os.path.exists(path):
        raise _err(name, f"no such file {os.path.abspath(path)}")
    if os.path.isdir(path):
        raise _err(name, f"{path} is a folder; use folder:{path} for a folder of images, "
                   "npz:FILE for an .npz archive")
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _err(name, f"cannot read {path} as an .npz archive ({type(e).__name__}: "
                   f"{_first_line(e)}); {SAVE_HINT}") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _err(name, f"{path} holds a single array (.npy), not an .npz archive; "
                   f"{SAVE_HINT}")
    with archive:
        keys = list(archive.files)
        if "x" not in keys:
            raise _err(name, f"{path} has no array 'x' (it has: {', '.join(keys) or 'none'})"
                       f"; {SAVE_HINT}")
        extra = [k for k in keys if k not in NPZ_KEYS]
        if extra:
            raise _err(name, f"{path} has unexpected arrays {', '.join(extra)}; allowed: "
                       f"{', '.join(NPZ_KEYS)}")
        arrays = {}
        for k in keys:
            try:
                arrays[k] = archive[k]
            except (ValueError, OSError, zipfile.BadZipFile) as e:
                raise _err(name, f"cannot read array {k!r} of {path} ({_first_line(e)}); "
                           "store plain numeric arrays (no objects or pickles)") from e
    return arrays


def _load_npz(name: str, path: str, seed: int):
    arrays = _read_npz(name, path)
    x, kind = _examples(name, "x", arrays["x"])
    y = _labels(name, "y", arrays.get("y"), len(x), "x")
    if "x_test" not in arrays:
        if "y_test" in arrays:
            raise _err(name, "has 'y_test' but no 'x_test'; give both, or neither for the "
                       "seeded split")
        train, test = _seeded_split(name, y, len(x), seed)
        return (x[train], x[test], None if y is None else y[train],
                None if y is None else y[test], kind)
    x_test, test_kind = _examples(name, "x_test", arrays["x_test"])
    if test_kind != kind:
        raise _err(name, f"'x' holds {kind} {tuple(arrays['x'].shape)} but 'x_test' "
                   f"{test_kind} {tuple(arrays['x_test'].shape)}; they must match")
    if (y is None) != ("y_test" not in arrays):
        raise _err(name, "labels for one split only: give 'y' and 'y_test' together, or "
                   "neither")
    y_test = _labels(name, "y_test", arrays.get("y_test"), len(x_test), "x_test")
    return x, x_test, y, y_test, kind


# ---------------------------------------------------------------------------------
# folder:PATH


def _listdir(folder: str) -> tuple[list[str], list[str]]:
    """(sub-folders, image files) of ``folder``, sorted, hidden entries skipped."""
    dirs, images = [], []
    for entry in sorted(os.listdir(folder)):
        if entry.startswith("."):
            continue
        full = os.path.join(folder, entry)
        if os.path.isdir(full):
            dirs.append(entry)
        elif entry.lower().endswith(IMAGE_SUFFIXES):
            images.append(full)
    return dirs, images


def _scan(name: str, folder: str):
    """(image paths, labels int32 or None, class names or None) of one folder tree."""
    dirs, images = _listdir(folder)
    if dirs and images:
        raise _err(name, f"{folder} holds both images ({os.path.basename(images[0])}, ...) "
                   f"and sub-folders ({dirs[0]}, ...); put every image in its class's "
                   "sub-folder, or use no sub-folders (unlabelled)")
    if images:
        return images, None, None
    if not dirs:
        raise _err(name, f"{folder} has no images ({'/'.join(IMAGE_SUFFIXES)}) and no "
                   "class sub-folders")
    files, labels = [], []
    for label, cls in enumerate(dirs):
        _, found = _listdir(os.path.join(folder, cls))
        if not found:
            raise _err(name, f"class folder {os.path.join(folder, cls)} has no "
                       f"{'/'.join(IMAGE_SUFFIXES)} images; remove it or add images")
        files += found
        labels += [label] * len(found)
    return files, np.asarray(labels, np.int32), tuple(dirs)


def _read_images(name: str, files: list[str]) -> np.ndarray:
    """uint8 [N, H, W, C] from image files of one size (C = 1 when all are grey, else 3)."""
    from PIL import Image  # pylint: disable=import-outside-toplevel

    pixels, first = [], None
    for path in files:
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode.startswith(("I", "F")):
                    raise _err(name, f"image {path} has {im.mode} pixels (16-bit or float); "
                               "save 8-bit images")
                a = np.asarray(im.convert("L" if im.mode in ("1", "L", "LA") else "RGB"))
        except DatasetError:
            raise
        except Exception as e:  # pylint: disable=broad-except  # PIL raises many kinds
            raise _err(name, f"cannot read image {path} ({type(e).__name__}: "
                       f"{_first_line(e)}); fix or remove the file") from e
        if first is None:
            first = (path, a.shape[:2])
        elif a.shape[:2] != first[1]:
            (h, w), (h0, w0) = a.shape[:2], first[1]
            raise _err(name, f"image {path} is {h}x{w} (HxW) but {first[0]} is {h0}x{w0}; "
                       "every image must have the same size: resize them first")
        pixels.append(a)
    if any(a.ndim == 3 for a in pixels):                 # some colour: all RGB
        pixels = [a if a.ndim == 3 else np.repeat(a[..., None], 3, -1) for a in pixels]
        return np.stack(pixels)
    return np.stack(pixels)[..., None]


def _load_folder(name: str, root: str, seed: int):
    if not os.path.exists(root):
        raise _err(name, f"no such folder {os.path.abspath(root)}")
    if not os.path.isdir(root):
        hint = f"; use npz:{root} for an .npz archive" if root.endswith(".npz") else ""
        raise _err(name, f"{root} is a file, not a folder of images{hint}")
    dirs, images = _listdir(root)
    if sorted(dirs) == ["test", "train"] and not images:
        splits = {s: _scan(name, os.path.join(root, s)) for s in ("train", "test")}
        (f_tr, y_tr, c_tr), (f_te, y_te, c_te) = splits["train"], splits["test"]
        if c_tr != c_te:
            raise _err(name, f"train/ has classes {list(c_tr or [])} but test/ has "
                       f"{list(c_te or [])}; give both the same class sub-folders (or "
                       "neither)")
        x = _read_images(name, f_tr + f_te)
        n = len(f_tr)
        rng = np.random.default_rng(seed)
        train, test = rng.permutation(n), n + rng.permutation(len(f_te))
        if y_tr is None:
            return x[train], x[test], None, None, "image"
        y = np.concatenate([y_tr, y_te])
        return x[train], x[test], y[train], y[test], "image"
    files, labels, _ = _scan(name, root)
    x = _read_images(name, files)
    train, test = _seeded_split(name, labels, len(files), seed)
    if labels is None:
        return x[train], x[test], None, None, "image"
    return x[train], x[test], labels[train], labels[test], "image"


# ---------------------------------------------------------------------------------
# Cache names.


def fingerprint(name: str) -> str:
    """12 hex digits identifying a user dataset: sha256 of its absolute path and its data
    (an npz file's bytes; for a folder, each file's relative path, size and mtime)."""
    _, path = parse(name)
    h = hashlib.sha256(os.path.abspath(path).encode())
    if os.path.isfile(path):
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    elif os.path.isdir(path):
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for fname in sorted(filenames):
                full = os.path.join(dirpath, fname)
                st = os.stat(full)
                rel = os.path.relpath(full, path)
                h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def cache_name(name: str) -> str:
    """A file-name-safe name for a user dataset's caches: ``<npz|folder>-<stem>-<hash>``,
    e.g. ``npz-mine-3f2a9c0d1e4b`` for ``npz:/data/mine.npz`` (`fingerprint`)."""
    kind, path = parse(name)
    stem = os.path.basename(os.path.normpath(path))
    if kind == "npz" and stem.lower().endswith(".npz"):
        stem = stem[:-4]
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._")[:40] or "data"
    return f"{kind}-{stem}-{fingerprint(name)}"


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
