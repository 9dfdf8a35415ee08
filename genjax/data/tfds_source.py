"""TFDS image datasets read into memory through ``tfds.data_source`` and grain.

No TensorFlow: ``tfds.data_source`` reads ArrayRecord files with the
``array_record`` package and decodes PNGs with PIL, and grain batches the reads.
Nothing is ever downloaded (``download=False``); the dataset must already be
*prepared* in ``data_dir`` **in the ArrayRecord format**. Preparing needs
TensorFlow, and ``tfds build`` writes TFRecord by default, which has no random
access, so build with ``--file_format=array_record``.

Splits (``Dataset.train`` / ``Dataset.test``):

* ``mnist``, ``fashion_mnist``: TFDS train (60,000) / test (10,000), 28x28x1.
* ``cifar10``: TFDS train (50,000) / test (10,000), 32x32x3.
* ``binarized_mnist`` (Larochelle & Murray's fixed binarisation): TFDS train
  (50,000) / test (10,000); the 10,000-image validation split is not included
  (papers that train on train+validation differ here). Pixels are stored 0/1 in
  TFDS and returned as 0/255, like every genjax image. No labels.

Each split is read once, in batches, into one ``uint8 [N, H, W, C]`` array; the
result is not cached across `load_tfds` calls (the caller keeps the `Dataset`).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from genjax.data.dataset import EMBEDDED, Dataset, DatasetError, freeze, validate

READ_BATCH_SIZE = 1024
READ_THREADS = 16


@dataclasses.dataclass(frozen=True)
class _Spec:
    splits: tuple[str, str]  # TFDS (train, test) split names
    label_key: str | None
    num_classes: int | None
    binary: bool  # stored 0/1 in TFDS -> multiply by 255


_SPECS = {
    "mnist": _Spec(("train", "test"), "label", 10, False),
    "fashion_mnist": _Spec(("train", "test"), "label", 10, False),
    "binarized_mnist": _Spec(("train", "test"), None, None, True),
    "cifar10": _Spec(("train", "test"), "label", 10, False),
}


def _import_tfds():
    try:
        import tensorflow_datasets as tfds  # pylint: disable=import-outside-toplevel
    except ImportError as e:
        raise DatasetError(
            "TFDS datasets need tensorflow-datasets: pip install tensorflow-datasets "
            f"array_record grain, or pass an embedded dataset: {', '.join(EMBEDDED)}"
        ) from e
    return tfds


def _resolved_data_dir(tfds, data_dir: str | None) -> str:
    if data_dir is not None:
        return os.fspath(data_dir)
    return tfds.core.constants.get_default_data_dir()


def _diagnose(tfds, name: str, data_dir: str | None, cause: Exception) -> DatasetError:
    """Explains why ``tfds.data_source`` failed, in one line.

    tfds 4.9.10 reports a dataset that is absent as "Random access data source for
    file format FileFormat.TFRECORD is not supported", the same message as a dataset
    prepared as TFRecord, so the builder is asked which case this is.
    """
    where = _resolved_data_dir(tfds, data_dir)
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        prepared = builder.is_prepared()
        file_format = str(builder.info.file_format.value) if prepared else None
        version_dir = os.fspath(builder.data_path)
    except Exception:  # pylint: disable=broad-except
        prepared, file_format, version_dir = False, None, where
    if not prepared:
        return DatasetError(
            f"TFDS dataset {name!r} is not prepared in {where}. With the network: "
            f"pip install 'genjax-baselines[tfds-prepare]' && tfds build {name} "
            f"--file_format=array_record --data_dir={where} (preparing needs "
            f"TensorFlow), or pass an embedded dataset: {', '.join(EMBEDDED)}"
        )
    if file_format not in ("array_record", "parquet"):
        return DatasetError(
            f"TFDS dataset {name!r} in {where} is prepared as {file_format}, which "
            f"has no random access; convert it with: tfds convert_format "
            f"--dataset_version_dir={version_dir} --out_file_format=array_record "
            f"(needs TensorFlow), or rebuild with tfds build {name} "
            f"--file_format=array_record --data_dir={where}"
        )
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    return DatasetError(
        f"TFDS dataset {name!r} in {where} could not be read "
        f"({type(cause).__name__}: {first_line}); re-prepare it with tfds build "
        f"{name} --file_format=array_record --data_dir={where}"
    )


def _supports_getitems(source) -> bool:
    """Whether ``source.__getitems__`` works.

    Under ``tfds.testing.mock_data`` (tfds 4.9.10) it does not: the mock sets
    ``__getitems__`` as a plain attribute of a MagicMock, which is then called
    without ``self`` and raises TypeError; ``__getitem__`` works there.
    """
    try:
        source.__getitems__([0])
    except TypeError:
        return False
    return True


class _ReadBatch:
    """grain map: batch start index -> (images uint8 [b, H, W, C], labels int64 [b]).

    Reads ``batch_size`` records with one ``__getitems__`` call: array_record then
    fetches them in parallel, which measured ~2x faster than grain reading record
    by record (``MapDataset.source(src).batch(...)``).
    """

    def __init__(self, source, label_key: str | None, batch_size: int):
        self.source, self.label_key, self.batch_size = source, label_key, batch_size
        self.batched = _supports_getitems(source)

    def __call__(self, start: int):
        keys = list(range(start, min(start + self.batch_size, len(self.source))))
        if self.batched:
            examples = self.source.__getitems__(keys)
        else:
            examples = [self.source[k] for k in keys]
        images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
        if self.label_key is None:
            return images, np.zeros((len(examples),), np.int64)
        return images, np.array([ex[self.label_key] for ex in examples], np.int64)


def read_split(source, *, label_key: str | None, batch_size: int = READ_BATCH_SIZE,
               num_threads: int | None = None):
    """Reads a whole random-access source into memory, in order.

    Batches are decoded by grain on ``num_threads`` threads (default: the CPU
    count, at most 16). Decoding is mostly Python (TFDS's proto parsing, PIL's PNG
    reader), so threads help little: we measured ~0.15-0.2 ms per 28x28 image on a
    2-core CPU without OpenCV, i.e. ~10-15 s for MNIST's 70,000 images. grain's
    multiprocessing (``mp_prefetch``) is not used: it reads absl flags, which fail
    as unparsed outside an absl ``app.run``.

    Args:
      source: a ``tfds.data_source`` split (``len`` and ``__getitems__`` giving
        dicts with ``"image"`` ``uint8 [H, W, C]`` and, optionally, ``label_key``).
      label_key: feature holding the integer class, or ``None``.

    Returns:
      ``(images uint8 [N, H, W, C], labels int32 [N] or None)``.
    """
    import grain  # pylint: disable=import-outside-toplevel

    n = len(source)
    if n == 0:
        return np.zeros((0, 1, 1, 1), np.uint8), None
    if num_threads is None:
        num_threads = max(1, min(READ_THREADS, os.cpu_count() or 1))
    batches = (
        grain.MapDataset.range(0, n, batch_size)
        .map(_ReadBatch(source, label_key, batch_size))
        .to_iter_dataset(grain.ReadOptions(num_threads=num_threads,
                                           prefetch_buffer_size=2 * num_threads))
    )
    images, labels = zip(*batches)
    images = np.concatenate(images)
    labels = np.concatenate(labels).astype(np.int32)
    return images, (None if label_key is None else labels)


def load_tfds(name: str, *, data_dir: str | None = None) -> Dataset:
    """Loads the prepared TFDS dataset ``name`` (see module docstring for splits)."""
    if name not in _SPECS:
        raise DatasetError(f"Unknown TFDS dataset {name!r}; known: {', '.join(_SPECS)}")
    spec = _SPECS[name]
    tfds = _import_tfds()
    try:
        sources = tfds.data_source(name, split=list(spec.splits), data_dir=data_dir,
                                   download=False)
    except Exception as e:  # pylint: disable=broad-except
        raise _diagnose(tfds, name, data_dir, e) from e

    arrays = []
    for split, source in zip(spec.splits, sources):
        images, labels = read_split(source, label_key=spec.label_key)
        if spec.binary:
            if images.size and images.max() > 1:
                raise DatasetError(
                    f"Dataset {name!r} split {split!r}: expected 0/1 pixels, found "
                    f"values up to {int(images.max())}; re-prepare the dataset"
                )
            images = images * np.uint8(255)
        arrays.append((images, labels))
    (train, train_labels), (test, test_labels) = arrays
    return freeze(validate(Dataset(
        name=name,
        train=train,
        test=test,
        train_labels=train_labels,
        test_labels=test_labels,
        kind="image",
        num_classes=spec.num_classes,
    )))
