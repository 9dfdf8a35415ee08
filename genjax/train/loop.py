"""The one training loop every family uses.

    state = train(state, step_fn, train_data, cfg=config.train, seed=config.seed,
                  workdir=workdir, eval_fn=...)

* ``step_fn(state, batch, key) -> (state, metrics)`` is pure (``make_train_step`` builds
  the usual one; families with several optimisers write their own).
* ``train_data`` is a pytree of arrays [N, ...] that lives on the device whole; each step
  gathers its batch inside the compiled program (``genjax.train.batches``).
* ``cfg.steps_per_dispatch`` steps run per dispatch in one ``lax.scan``; the host only
  logs, checks for non-finite metrics, evaluates and checkpoints between dispatches.
* Randomness depends on (seed, step) and data order on (seed, epoch) only, and chunk
  boundaries fall on multiples of steps_per_dispatch, so a run resumed from a checkpoint
  repeats the uninterrupted run bit for bit.
* Rerunning with the same workdir resumes from the latest checkpoint that can be read
  (a damaged newer one is reported and moved aside, `genjax.train.checkpoint`). The
  hyper-parameters in ``state.hparams`` are taken from the new config, not the checkpoint,
  so a run stopped by a non-finite loss can be resumed with a lower learning rate.
  (Experiments check the rest of the config against the checkpoint's in
  `experiment.prepare`, `genjax.train.resume`.)
* SIGTERM / SIGINT finish the current dispatch, save a checkpoint and stop with
  `Interrupted` (the cli prints 'interrupted: ...' and exits 130).
* ``train_data`` is checked on the host before anything compiles: NaN or inf in a float
  array raises `NonFiniteDataError` naming the array and the count.
* Several processes (`genjax.train.distributed`): every process calls `train` with the
  same state and data (host values, identical everywhere); the mesh spans all processes'
  devices, so each batch is split over them and the gradient all-reduce crosses
  processes. Only process 0 writes metrics; all save the checkpoints together (Orbax);
  a stop signal to any process stops all at the same dispatch. ``eval_fn`` and the
  caller get the state as ordinary arrays on this process's first device (every process
  holds the same values), so evaluation code needs no knowledge of the processes.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable

import jax
import numpy as np

from genjax import xla
from genjax.train import batches, sharding
from genjax.train.distributed import is_main_process
from genjax.train.checkpoint import Checkpointer
from genjax.train.resume import ensure_workdir
from genjax.train.writers import MetricWriter, log


class NonFiniteError(RuntimeError):
    """A training metric became NaN or infinite."""


class Interrupted(RuntimeError):
    """The run was stopped by a signal after saving a checkpoint."""


class NonFiniteDataError(ValueError):
    """The training data handed to `train` holds NaN or infinite values."""


def check_finite_data(train_data) -> None:
    """Raises NonFiniteDataError (one line: which array, how many NaN / inf, the first
    index) when a floating-point array of ``train_data`` holds non-finite values. Runs on
    the host; integer arrays (e.g. uint8 images, labels) cannot hold them and are skipped,
    as are arrays not addressable from this process."""
    leaves = jax.tree_util.tree_flatten_with_path(train_data)[0]
    for path, leaf in leaves:
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jax.numpy.issubdtype(dtype, jax.numpy.inexact):
            continue
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            continue
        x = np.asarray(leaf)
        if x.dtype.kind not in "fc":              # bfloat16 & co: count in float32
            x = x.astype(np.float32)
        bad = ~np.isfinite(x)
        if bad.any():
            nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
            name = "train_data" + jax.tree_util.keystr(path)
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise NonFiniteDataError(
                f"{name} ({x.dtype} {list(x.shape)}) holds {nan} NaN and {inf} infinite "
                f"values of {x.size} (the first at index {first}); the data must be finite: "
                "remove or impute those values before training")


def catch_stop_signals():
    """Routes SIGTERM / SIGINT into a flag the loop checks between dispatches. Returns
    (stop, restore): stop["signal"] is the signal number once one arrived (else None);
    restore() puts the previous handlers back. Outside the main thread nothing is caught."""
    stop, previous = {"signal": None}, {}

    def on_signal(signum, frame):
        stop["signal"] = signum

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            previous[sig] = signal.signal(sig, on_signal)
        except ValueError:           # not the main thread
            pass

    def restore():
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    return stop, restore


def make_chunk(step_fn: Callable, *, num_examples: int, batch_size: int, batch_sharding):
    """Returns chunk(state, data, seed_key, n) -> (state, metrics [n]) running n steps
    in one lax.scan; jitted with the state donated and n static. With a batch_sharding
    the metrics come out replicated over its mesh (every process can read them)."""

    def chunk(state, data, seed_key, n):
        step_root, data_key = jax.random.fold_in(seed_key, 0), jax.random.fold_in(seed_key, 1)
        steps_per_epoch = num_examples // batch_size
        perm0 = batches.epoch_permutation(data_key, state.step // steps_per_epoch,
                                          num_examples)

        def body(carry, _):
            state, perm = carry
            perm, idx = batches.next_permutation(data_key, state.step, perm,
                                                 num_examples=num_examples,
                                                 batch_size=batch_size)
            batch = batches.take(data, idx)
            if batch_sharding is not None:
                batch = jax.lax.with_sharding_constraint(batch, batch_sharding)
            state, metrics = step_fn(state, batch, jax.random.fold_in(step_root, state.step))
            return (state, perm), metrics

        (state, _), metrics = jax.lax.scan(body, (state, perm0), None, length=n)
        if batch_sharding is not None:
            metrics = jax.lax.with_sharding_constraint(
                metrics, sharding.replicated(batch_sharding.mesh))
        return state, metrics

    return xla.jit(chunk, static_argnums=3, donate_argnums=0)


def _first_non_finite(metrics: dict, start: int):
    for i in range(len(next(iter(metrics.values())))):
        for k, v in metrics.items():
            if not np.isfinite(v[i]):
                return start + i, k, float(v[i])
    return None


def train(state, step_fn: Callable, train_data, *, cfg, seed: int, workdir: str,
          eval_fn: Callable | None = None, mesh=None, writer: MetricWriter | None = None):
    """Trains ``state`` for cfg.num_steps steps (resuming in ``workdir``) and returns
    (state, summary). cfg fields: num_steps, batch_size, steps_per_dispatch,
    checkpoint_every, keep_checkpoints, eval_every (0: never during training).

    eval_fn(state) -> dict of scalars, logged under "eval/". summary holds the last
    dispatch's mean metrics, the steady-state steps/s and the compile time in seconds.
    """
    num_steps, per = int(cfg.num_steps), int(cfg.steps_per_dispatch)
    check_finite_data(train_data)
    ensure_workdir(workdir, create=is_main_process())
    multi = jax.process_count() > 1
    if multi:             # host values: device_put places them on every process's devices
        state, train_data = jax.device_get((state, train_data))
    mesh = sharding.data_mesh() if mesh is None else mesh
    num_examples = len(jax.tree_util.tree_leaves(train_data)[0])
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(cfg.keep_checkpoints))
    own_writer = writer is None
    writer = writer or MetricWriter(workdir, total_steps=num_steps)

    fresh_hparams = state.hparams
    # A private copy: the compiled chunk donates its input, and the caller's arrays must
    # survive (device_put to the sharding they already have would alias them).
    state = jax.tree_util.tree_map(lambda a: a.copy(), sharding.replicate(state, mesh))
    restored = ckpt.restore_latest(state)
    if restored is not None:
        state = sharding.replicate(restored._replace(hparams=fresh_hparams), mesh)
        log(f"resumed from {ckpt.directory} at step {int(state.step)}")
    data = sharding.replicate(train_data, mesh)
    seed_key = jax.random.key(seed)
    chunk = make_chunk(step_fn, num_examples=num_examples, batch_size=int(cfg.batch_size),
                       batch_sharding=sharding.batch_sharded(mesh))

    stop, restore_signals = catch_stop_signals()

    compiled: dict[int, Callable] = {}
    compile_time, summary = 0.0, {}
    step = int(state.step)
    steady_t, steady_steps = 0.0, 0
    writer.start(step)
    try:
        while step < num_steps:
            n = min(per, num_steps - step)
            if n not in compiled:
                t = time.perf_counter()
                compiled[n] = chunk.lower(state, data, seed_key, n).compile()
                compile_time += time.perf_counter() - t
                writer.start(step)
            t = time.perf_counter()
            state, metrics = compiled[n](state, data, seed_key)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t
            steady_t, steady_steps = steady_t + dt, steady_steps + n
            bad = _first_non_finite(metrics, step)
            if bad is not None:
                ckpt.wait()
                last = ckpt.latest_step()
                where = (f"the last good checkpoint (step {last}) is in {ckpt.directory}"
                         if last is not None else "no checkpoint had been saved yet")
                raise NonFiniteError(
                    f"training stopped: {bad[1]} = {bad[2]} at step {bad[0]}; {where}. "
                    f"Lower --config.optim.lr (or --config.optim.grad_clip where it is on) "
                    f"and rerun with the same --workdir to resume, or start a new --workdir "
                    f"with --config.optim.grad_clip set.")
            step += n
            summary = {k: float(np.mean(v)) for k, v in metrics.items()}
            writer.write(step, summary)
            writer.progress(step, summary)
            if multi:      # one process signalled: all stop, at this same dispatch
                stop["signal"] = _agreed_signal(stop["signal"])
            signalled = stop["signal"]
            saved = step % int(cfg.checkpoint_every) == 0 or step == num_steps \
                or stop["signal"]
            if saved:
                ckpt.save(step, state)
            if eval_fn is not None and cfg.eval_every and step % int(cfg.eval_every) == 0 \
                    and step < num_steps:
                ev = eval_fn(_local(state) if multi else state)
                writer.write(step, ev, prefix="eval")
                if is_main_process():
                    log("[eval] " + " ".join(f"{k} {v:.4f}" for k, v in ev.items()))
            if multi:      # one that came during eval_fn waits for the next dispatch
                late, stop["signal"] = stop["signal"], signalled
            if stop["signal"]:                   # (it may have come during eval_fn)
                if not saved:
                    ckpt.save(step, state)
                ckpt.wait()
                raise Interrupted(f"stopped by signal {stop['signal']} at step {step}; a "
                                  f"checkpoint is saved in {ckpt.directory}: rerun the same "
                                  f"command to resume")
            if multi:
                stop["signal"] = late
    finally:
        ckpt.close()
        restore_signals()
        if own_writer:
            writer.close()
    summary = dict(summary, compile_s=compile_time,
                   steps_per_s=steady_steps / steady_t if steady_t > 0 else float("nan"))
    return (_local(state) if multi else state), summary


def _local(tree):
    """A replicated tree spanning several processes as ordinary arrays on this process's
    first device (the same values in every process)."""
    return jax.device_put(jax.device_get(tree), jax.local_devices()[0])


def _agreed_signal(signum):
    """The stop signal any process received (None if none did), the same in every
    process: each decides to stop at the same dispatch, so none waits alone in a
    collective."""
    from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel

    got = multihost_utils.process_allgather(np.int32(signum or 0))
    return int(np.max(got)) or None
