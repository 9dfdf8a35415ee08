"""Log-likelihood estimates over a whole dataset, in nats per example."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from genjax import xla
from genjax.losses.vae import iw_log_weights


def iw_log_likelihood(x, key, *, encode: Callable, decode: Callable, num_samples: int,
                      chunk_size: int | None = None, likelihood: str = "bernoulli"):
    """Importance-weighted estimate log (1/K) sum_k p(x, z_k) / q(z_k | x), z_k ~ q(z|x).

    x: [B, *E]. Returns [B] in nats. The K = num_samples weights are drawn ``chunk_size``
    at a time in a lax.scan and combined with a running logsumexp, so memory grows with
    chunk_size, not K. K must be a multiple of chunk_size. A lower bound on log p(x) in
    expectation that tightens as K grows (Burda et al., 2016).
    """
    chunk = num_samples if chunk_size is None else min(chunk_size, num_samples)
    if num_samples % chunk:
        raise ValueError(f"num_samples={num_samples} must be a multiple of chunk_size={chunk}")

    def body(acc, k):
        lw = iw_log_weights(x, k, encode=encode, decode=decode, num_samples=chunk,
                            likelihood=likelihood)                          # [chunk, B]
        return jnp.logaddexp(acc, logsumexp(lw, axis=0)), None

    init = jnp.full((x.shape[0],), -jnp.inf, jnp.float32)
    keys = jax.random.split(key, num_samples // chunk)
    total, _ = jax.lax.scan(body, init, keys)
    return total - jnp.log(num_samples)


def map_dataset(fn: Callable, data: np.ndarray, key, *, batch_size: int,
                params=None) -> dict:
    """Per-example metrics over a dataset.

    fn(batch [b, ...], key) -> dict of [b] arrays, or fn(params, batch, key) when
    ``params`` is given; it is jitted and called on fixed-size batches (the last one
    padded, its padding dropped). Batch i gets the key fold_in(key, i). Returns
    {name: float64 [N]}.

    Pass the parameters as ``params`` with the same ``fn`` object, rather than a new
    closure over them: then evaluating other parameters (each evaluation during training,
    each setting of a sweep) reuses the compiled program instead of compiling again.
    """
    n = len(data)
    pad = (-n) % batch_size
    padded = np.concatenate([data, np.zeros((pad,) + data.shape[1:], data.dtype)]) if pad else data
    jfn = xla.jit(fn)
    args = () if params is None else (params,)
    parts: dict = {}
    for i in range(len(padded) // batch_size):
        out = jax.device_get(jfn(*args, padded[i * batch_size:(i + 1) * batch_size],
                                 jax.random.fold_in(key, i)))
        keep = min(batch_size, n - i * batch_size)
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v, np.float64)[:keep])
    return {k: np.concatenate(v) for k, v in parts.items()}


def map_dataset_stacked(fn: Callable, data: np.ndarray, keys, *, batch_size: int,
                        params) -> dict:
    """`map_dataset` for S parameter sets at once: ``params`` has a leading settings axis
    [S, ...] and ``keys`` holds S keys; setting s computes what ``map_dataset(fn, data,
    keys[s], batch_size=batch_size, params=params[s])`` computes (the same batches and
    per-batch keys), with fn(params, batch, key) vmapped over the settings in one
    compiled program. Returns {name: float64 [S, N]}."""
    n = len(data)
    pad = (-n) % batch_size
    padded = np.concatenate([data, np.zeros((pad,) + data.shape[1:], data.dtype)]) if pad else data
    jfn = xla.jit(jax.vmap(lambda p, x, k, i: fn(p, x, jax.random.fold_in(k, i)),
                           in_axes=(0, None, 0, None)))
    parts: dict = {}
    for i in range(len(padded) // batch_size):
        out = jax.device_get(jfn(params, padded[i * batch_size:(i + 1) * batch_size], keys,
                                 i))
        keep = min(batch_size, n - i * batch_size)
        for k, v in out.items():
            parts.setdefault(k, []).append(np.asarray(v, np.float64)[:, :keep])
    return {k: np.concatenate(v, axis=1) for k, v in parts.items()}


def evaluate_dataset_stacked(fn: Callable, data: np.ndarray, keys, *, batch_size: int,
                             params) -> list:
    """Per setting, the means of `map_dataset_stacked`'s metrics: a list of S dicts
    {name: mean over the N examples}, as `evaluate_dataset` gives for each setting."""
    out = map_dataset_stacked(fn, data, keys, batch_size=batch_size, params=params)
    num = len(next(iter(out.values())))
    return [{k: float(np.mean(v[s])) for k, v in out.items()} for s in range(num)]


def evaluate_dataset(fn: Callable, data: np.ndarray, key, *, batch_size: int,
                     params=None) -> dict:
    """Means over a dataset of per-example metrics (see `map_dataset`):
    {name: mean over the N examples}."""
    return {k: float(np.mean(v)) for k, v in
            map_dataset(fn, data, key, batch_size=batch_size, params=params).items()}
