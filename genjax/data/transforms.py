"""Pixel transforms from stored ``uint8`` 0..255 to what a model consumes.

All JAX transforms are pure, element-wise and jit-able, and work on any shape
(``[B, H, W, C]``, ``[H, W, C]``, ``[B, D]``, ...). Randomness comes only from the
``key`` argument: the same key gives the same draw, so a training step that uses
``jax.random.fold_in(key, step)`` repeats bit for bit when resumed.

``binarize_static`` is the one numpy transform: it is applied once at load time to
make a fixed binarisation (the "statically binarized" protocol), whereas
``binarize_dynamic`` draws a fresh binarisation per key (the "dynamically
binarized" protocol of e.g. the IWAE paper). Numbers from the two protocols are not
comparable; say which one a result used.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from genjax import random as grandom
from genjax.data.dataset import DatasetError

PREPROCESS_MODES: tuple[str, ...] = (
    "dynamic_binarize",
    "unit",
    "symmetric",
    "dequantize",
    "none",
)


def to_unit(x: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 ``x / 255`` in [0, 1], same shape.

    Clipped, because under jit XLA turns division by a constant into multiplication
    by its float32 reciprocal, which can land one ulp outside the range.
    """
    return jnp.clip(jnp.asarray(x, jnp.float32) / 255.0, 0.0, 1.0)


def to_symmetric(x: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 ``x / 127.5 - 1`` in [-1, 1], same shape.

    Clipped: jitted, 255 / 127.5 - 1 evaluates to 1.0000001 without it (see
    `to_unit`).
    """
    return jnp.clip(jnp.asarray(x, jnp.float32) / 127.5 - 1.0, -1.0, 1.0)


def binarize_dynamic(key: jax.Array, x: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 in {0, 1}: independent Bernoulli(x / 255) per element.

    Pixel 0 always gives 0 and pixel 255 always gives 1.
    """
    # Drawn on a flat [..., size] view: the same bits as drawing in x's shape (threefry
    # fills the flattened array), but XLA's CPU code is much slower with a trailing
    # channel axis of size 1 ([B, 28, 28, 1]).
    # The sqrt (exact on {0, 1}) is there for XLA's fusion heuristics: they will not copy
    # an "expensive" op into each consumer, so the bits are drawn once into memory. Left
    # alone, XLA fuses the hash into every consumer and a VAE step hashes three times.
    x = jnp.asarray(x)
    flat = to_unit(x.reshape(-1))
    return jnp.sqrt(grandom.bernoulli(key, flat).astype(jnp.float32)).reshape(x.shape)


def binarize_static(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """numpy uint8 0..255 -> uint8 in {0, 255}: one fixed Bernoulli(x / 255) draw.

    The draw is ``np.random.default_rng(seed).random(x.shape) < x / 255``, so the
    same ``seed`` and shape always give the same binary images. The output stays in
    the stored-image layout (0/255), ready for any transform above.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise DatasetError(f"binarize_static expects uint8 pixels 0..255, got "
                           f"{x.dtype}; pass the stored images, not transformed ones")
    u = np.random.default_rng(seed).random(x.shape)
    return np.where(u < x / 255.0, np.uint8(255), np.uint8(0))


def dequantize_uniform(key: jax.Array, x: jax.Array) -> jax.Array:
    """uint8 0..255 -> float32 ``(x + u) / 256`` with ``u ~ U[0, 1)``, in [0, 1).

    Exactly ``floor(256 * y) == x``: in float32, ``x + u`` rounds up to ``x + 1``
    when u is within half an ulp of 1 (u > 1 - 2^-17 for x >= 128), so the result
    is clamped to the largest float32 below ``(x + 1) / 256``. A density on y in
    [0,1)^D then gives the discrete log-likelihood of x as
    ``log p(y) - D log 256`` (units: nats; divide by D log 2 for bits/dim).
    """
    shape = jnp.shape(x)
    x = jnp.asarray(x, jnp.float32).reshape(-1)  # flat view: see binarize_dynamic
    u = grandom.uniform(key, x.shape, jnp.float32)
    upper = (x + 1.0) / 256.0  # exact in float32
    y = (x + u) / 256.0
    return jnp.minimum(y, jnp.nextafter(upper, jnp.float32(0.0))).reshape(shape)


def preprocess(key: jax.Array, x: jax.Array, mode: str) -> jax.Array:
    """Applies the transform named ``mode`` (one of `PREPROCESS_MODES`); float32 out.

    ``"dynamic_binarize"`` -> `binarize_dynamic`, ``"unit"`` -> `to_unit`,
    ``"symmetric"`` -> `to_symmetric`, ``"dequantize"`` -> `dequantize_uniform`,
    ``"none"`` -> ``x`` cast to float32 (points). ``key`` is unused by the
    deterministic modes. ``mode`` is a Python string: mark it static under jit
    (``jax.jit(preprocess, static_argnames="mode")``).
    """
    if mode == "dynamic_binarize":
        return binarize_dynamic(key, x)
    if mode == "unit":
        return to_unit(x)
    if mode == "symmetric":
        return to_symmetric(x)
    if mode == "dequantize":
        return dequantize_uniform(key, x)
    if mode == "none":
        return jnp.asarray(x, jnp.float32)
    raise DatasetError(
        f"Unknown preprocess mode {mode!r}; use one of {', '.join(PREPROCESS_MODES)}"
    )
