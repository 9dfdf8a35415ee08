"""Datasets for genjax: embedded (offline), TFDS (prepared) and your own (npz or an
image folder), plus pixel transforms.

    from genjax import data
    ds = data.load("mnist5k")                  # Dataset, uint8 [N, 28, 28, 1]
    x = data.preprocess(key, ds.train[:128], "dynamic_binarize")  # float32 {0, 1}
    mine = data.load("npz:/data/mine.npz", seed=0)   # or "folder:/data/images"

See `dataset` (the `Dataset` layout and `load`), `embedded` (fixed splits and toy
densities), `tfds_source` (TFDS without TensorFlow), `user` (npz:PATH and folder:PATH)
and `transforms`. Click data for recommenders (users x items, sparse) is its own module:
``from genjax.data import clicks`` (`clicks.load_clicks`, `clicks.split_clicks`,
`clicks.SparseRows`).
"""

from genjax.data.dataset import (
    EMBEDDED,
    TFDS,
    USER_PREFIXES,
    Dataset,
    DatasetError,
    known_names,
    load,
    require_image_sides,
    validate,
)
from genjax.data.embedded import (
    EIGHT_GAUSSIANS_RADIUS,
    EIGHT_GAUSSIANS_STD,
    digits_split_indices,
    eight_gaussians_centres,
    mnist5k_split_indices,
)
from genjax.data.transforms import (
    PREPROCESS_MODES,
    binarize_dynamic,
    binarize_static,
    dequantize_uniform,
    preprocess,
    to_symmetric,
    to_unit,
)

__all__ = [
    "EMBEDDED",
    "TFDS",
    "USER_PREFIXES",
    "Dataset",
    "DatasetError",
    "known_names",
    "load",
    "require_image_sides",
    "validate",
    "EIGHT_GAUSSIANS_RADIUS",
    "EIGHT_GAUSSIANS_STD",
    "digits_split_indices",
    "eight_gaussians_centres",
    "mnist5k_split_indices",
    "PREPROCESS_MODES",
    "binarize_dynamic",
    "binarize_static",
    "dequantize_uniform",
    "preprocess",
    "to_symmetric",
    "to_unit",
]
