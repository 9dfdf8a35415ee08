"""Timing a compiled sampler the way the experiments report it: compile (and run) once,
then time one more call; compile time is not counted."""

from __future__ import annotations

import time
from typing import Callable

import jax
import numpy as np

from genjax import xla


def timed_samples(sample: Callable, key, num: int) -> tuple[np.ndarray, float]:
    """sample(key) -> [num, ...] samples, jitted here (`genjax.xla.jit`). Returns (the
    samples of the timed call as numpy, samples per second of that call)."""
    fn = xla.jit(sample)
    jax.block_until_ready(fn(key))                       # compile, warm up
    t = time.perf_counter()
    samples = np.asarray(jax.block_until_ready(fn(key)))
    return samples, num / (time.perf_counter() - t)
