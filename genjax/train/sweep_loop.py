"""The training loop for a sweep: S settings of one experiment in one compiled program.

    states, summary = train_sweep(states, step_fn, train_data, cfg=config.train,
                                  seeds=jnp.array([0, 1, 2]), workdir=workdir)

* ``states`` is a TrainState whose every leaf has a leading settings axis [S, ...]: the
  hyper-parameters in ``states.hparams`` differ per setting, and so may the parameters
  (e.g. different init seeds). ``seeds`` [S] int gives each setting its data order and
  step keys exactly as `genjax.train.loop.train` derives them from its ``seed``, so each
  setting computes what ``train(state_i, ..., seed=seeds[i])`` computes (the same pieces:
  ``batches.epoch_permutation``, the epoch's slice, ``fold_in(step_root, state.step)``),
  up to float32 rounding where a vmapped matmul reassociates differently.
* One jitted ``lax.scan`` per dispatch, ``jax.vmap(step_fn)`` inside its body, the
  stacked state donated.
* A diverging setting does not stop the others. Inside the scan, a setting whose step
  gives a non-finite metric (as `train` checks its metrics: the loss, the gradient norm,
  ...) is frozen at that step: the update is dropped (a per-leaf ``jnp.where``, skipped
  by one ``lax.cond`` while every setting is finite), so its state stays the one the
  single run holds when it stops with `NonFiniteError`, and it stays frozen (the
  ``alive`` mask [S] is carried through the scan and across dispatches). The host
  reports it as diverged at that step with the first non-finite metric's name.
  Only when every setting has diverged does the sweep stop, with `NonFiniteError`.
* Checkpoints (`genjax.train.checkpoint.Checkpointer`, workdir/checkpoints, every
  cfg.checkpoint_every steps and at the end) hold the stacked state, the sweep step, the
  alive mask and the divergence record, so rerunning in the same workdir resumes bit for
  bit. As in `train`, the hyper-parameters are taken from the new ``states``; a diverged
  setting stays frozen on resume (start a new workdir to retry it).
* workdir/metrics.jsonl gets one row per live setting per dispatch:
  ``{"step", "setting", "train/<metric>": mean over the dispatch}``, and one
  ``{"step", "setting", "diverged": metric, "value"}`` row when a setting diverges; the
  console gets one line per dispatch (live count, best and worst loss).
* SIGTERM / SIGINT finish the dispatch, save a checkpoint and raise `Interrupted`.
* Devices: on several devices the settings axis is split over a ("settings", "data")
  mesh and, when there are fewer settings than devices, each batch too (see
  `train_sweep` and `genjax.train.sharding.sweep_mesh_shape`); on one device nothing
  changes. workdir/tensorboard/<setting name>/ holds each setting's TensorBoard
  scalars. Only process 0 writes files and prints.

Not yet: eval_every.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from genjax import xla
from genjax.train import batches, sharding
from genjax.train.checkpoint import Checkpointer
from genjax.train.distributed import is_main_process
from genjax.train.loop import (Interrupted, NonFiniteError, catch_stop_signals,
                               check_finite_data)
from genjax.train.resume import ensure_workdir
from genjax.train.writers import _duration, _fmt, log


def _all_finite(tree) -> jax.Array:
    """[] bool: every inexact leaf of ``tree`` is finite (integer leaves are skipped)."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.bool_(True)


def make_sweep_chunk(step_fn: Callable, *, num_examples: int, batch_size: int,
                     mesh=None):
    """Returns chunk(states, alive, data, seed_keys, n) -> (states, alive, metrics [n, S],
    finite [n, S]) running n steps of every setting in one lax.scan; jitted with the
    states and the alive mask donated and n static.

    With a ("settings", "data") ``mesh`` the vmap names its axis "settings"
    (``spmd_axis_name``), each setting's batch is constrained to split over "data", the
    returned states keep their settings sharding, and the alive mask, metrics and
    finite flags come back replicated (so every process can read them). Without one
    the program is the single-device one.

    Per setting this is `genjax.train.loop.make_chunk`'s body: the batch of step t is the
    slice t mod E of epoch t // E's ``batches.epoch_permutation(fold_in(seed_key, 1), .)``
    and the step key is ``fold_in(fold_in(seed_key, 0), t)``. ``finite[i, s]`` says
    whether step i of setting s gave finite metrics; a setting
    with ``alive`` False keeps its state unchanged.
    """
    steps_per_epoch = num_examples // batch_size

    def one_step(state, perm, step_root, data):
        idx = jax.lax.dynamic_slice_in_dim(
            perm, (state.step % steps_per_epoch) * batch_size, batch_size)
        batch = batches.take(data, idx)
        if mesh is not None:
            batch = jax.lax.with_sharding_constraint(batch, sharding.batch_sharded(mesh))
        new, metrics = step_fn(state, batch, jax.random.fold_in(step_root, state.step))
        return new, metrics, _all_finite(metrics)

    def freeze(keep, new, old):
        """Settings where ``keep`` [S] is False keep ``old``. Skipped (one cond) while
        every setting keeps its update: the per-leaf select reads and writes the whole
        stacked state, parameters and optimiser moments, which on a CPU costs about as
        much as a third of a small model's step."""
        def select(a, b):
            return jnp.where(keep.reshape(keep.shape + (1,) * (a.ndim - 1)), a, b)

        return jax.lax.cond(jnp.all(keep), lambda: new,
                            lambda: jax.tree_util.tree_map(select, new, old))

    def chunk(states, alive, data, seed_keys, n):
        step_roots = jax.vmap(lambda k: jax.random.fold_in(k, 0))(seed_keys)
        data_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(seed_keys)
        epoch_perms = jax.vmap(batches.epoch_permutation, in_axes=(0, 0, None))

        def permutations(steps, perms):
            # batches.next_permutation per setting, with one cond for all of them: a
            # vmapped cond would compute the permutation (a sort of N) at every step.
            starts = steps % steps_per_epoch == 0                          # [S]
            return jax.lax.cond(
                jnp.any(starts),
                lambda: jnp.where(starts[:, None],
                                  epoch_perms(data_keys, steps // steps_per_epoch,
                                              num_examples), perms),
                lambda: perms)

        perms0 = epoch_perms(data_keys, states.step // steps_per_epoch, num_examples)

        def body(carry, _):
            states, perms, alive = carry
            perms = permutations(states.step, perms)                       # [S, N]
            new, metrics, finite = jax.vmap(
                one_step, in_axes=(0, 0, 0, None),
                spmd_axis_name=None if mesh is None else "settings")(
                    states, perms, step_roots, data)
            keep = alive & finite
            return (freeze(keep, new, states), perms, keep), (metrics, finite)

        (states, _, alive), (metrics, finite) = jax.lax.scan(
            body, (states, perms0, alive), None, length=n)
        if mesh is not None:
            states = jax.lax.with_sharding_constraint(
                states, sharding.settings_sharded(mesh))
            alive, metrics, finite = jax.lax.with_sharding_constraint(
                (alive, metrics, finite), sharding.replicated(mesh))
        return states, alive, metrics, finite

    return xla.jit(chunk, static_argnums=4, donate_argnums=(0, 1))


class SweepWriter:
    """One metrics.jsonl row per live setting per dispatch, TensorBoard scalars in one
    run folder per setting (``<workdir>/tensorboard/<name>/``, so TensorBoard's run
    selector tells the settings apart) and a console line per dispatch. ``names``: one
    folder name per setting (e.g. `genjax.train.sweep_spec.setting_names`; a "/" in a
    name becomes "_"); default the setting's index. Opened in append mode, so a resumed
    sweep continues the same files. Only process 0 (`is_main_process`) writes files or
    prints; on the other processes every method does nothing."""

    def __init__(self, workdir: str, *, total_steps: int, console: bool = True,
                 tensorboard: bool = True, names=None):
        self.total_steps = total_steps
        self.main = is_main_process()
        self.console = console and self.main
        self.names = None if names is None else [str(n) for n in names]
        self._jsonl, self._tb_dir, self._tb = None, None, {}
        if self.main:
            os.makedirs(workdir, exist_ok=True)
            self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
            if tensorboard:
                self._tb_dir = os.path.join(workdir, "tensorboard")
        self._t0, self._s0 = None, None

    def folder(self, setting: int) -> str:
        """The TensorBoard run folder's name for ``setting``."""
        name = self.names[setting] if self.names is not None else str(setting)
        name = name.replace(os.sep, "_").strip()
        return name if name not in ("", ".", "..") else str(setting)

    def _scalars(self, setting: int, step: int, scalars: dict) -> None:
        if self._tb_dir is None:
            return
        tb = self._tb.get(setting)
        if tb is None:
            from tensorboardX import SummaryWriter
            tb = self._tb[setting] = SummaryWriter(
                logdir=os.path.join(self._tb_dir, self.folder(setting)))
        for k, v in scalars.items():
            tb.add_scalar(k, v, int(step))
        tb.flush()

    def start(self, step: int) -> None:
        self._t0, self._s0 = time.perf_counter(), step

    def _row(self, row: dict) -> None:
        if self._jsonl is None:
            return
        self._jsonl.write(json.dumps(row) + "\n")
        self._jsonl.flush()

    def write(self, step: int, per_setting: list, prefix: str = "train") -> None:
        """per_setting[s]: that setting's {metric: value} over the dispatch, or None."""
        for s, metrics in enumerate(per_setting):
            if metrics is not None:
                scalars = {f"{prefix}/{k}": float(v) for k, v in metrics.items()}
                self._row({"step": int(step), "setting": s, **scalars})
                self._scalars(s, step, scalars)

    def diverged(self, setting: int, step: int, metric: str, value: float) -> None:
        self._row({"step": int(step), "setting": setting, "diverged": metric,
                   "value": repr(float(value))})

    def progress(self, step: int, per_setting: list, *, key: str = "loss") -> float:
        """Prints 'step s/T | r steps/s | ETA | a/S alive | key best .. worst ..'."""
        elapsed = time.perf_counter() - self._t0 if self._t0 else float("nan")
        rate = (step - self._s0) / elapsed if elapsed and elapsed > 0 else float("nan")
        eta = (self.total_steps - step) / rate if rate and rate > 0 else float("nan")
        live = {s: m[key] for s, m in enumerate(per_setting) if m is not None and key in m}
        alive = sum(m is not None for m in per_setting)
        if self.console:
            line = (f"[sweep] step {step}/{self.total_steps} | {rate:.1f} steps/s | "
                    f"ETA {_duration(eta)} | {alive}/{len(per_setting)} alive")
            if live:
                best, worst = min(live, key=live.get), max(live, key=live.get)
                line += (f" | {key} best {_fmt(live[best])} (setting {best}) "
                         f"worst {_fmt(live[worst])} (setting {worst})")
            log(line)
        return rate

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        for tb in self._tb.values():
            tb.close()
        self._tb = {}


def _num_settings(states, seeds) -> int:
    """Validates the stacked state against ``seeds`` on the host; returns S."""
    seeds = np.asarray(seeds)
    if seeds.ndim != 1 or not np.issubdtype(seeds.dtype, np.integer):
        raise ValueError(f"seeds must be a 1-D integer array [S], one per setting; got "
                         f"{seeds.dtype} {list(seeds.shape)}")
    n = len(seeds)
    for path, leaf in jax.tree_util.tree_flatten_with_path(states)[0]:
        shape = np.shape(leaf)
        if not shape or shape[0] != n:
            raise ValueError(f"states{jax.tree_util.keystr(path)} has shape {list(shape)}; "
                             f"every leaf of a sweep's state needs the leading settings axis "
                             f"[{n}, ...] (one per seed): stack the settings' states with "
                             "jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)")
    steps = sharding.to_host(states.step)
    if np.any(steps != steps[0]):
        raise ValueError(f"the settings start at different steps {steps.tolist()}; a sweep "
                         "starts every setting at the same step")
    return n


def train_sweep(states, step_fn: Callable, train_data, *, cfg, seeds, workdir: str,
                writer: SweepWriter | None = None, setting_names=None, mesh=None):
    """Trains the S stacked settings of ``states`` for cfg.num_steps steps each (resuming
    in ``workdir``) and returns (states, summary). cfg fields as `train`'s (eval_every is
    ignored). ``seeds``: int [S]. ``setting_names``: S names for the per-setting
    TensorBoard folders (when this function makes the writer).

    Devices: ``mesh`` is a ("settings", "data") mesh; by default, on one device there is
    none and the program is the single-device one (nothing placed, nothing constrained),
    and on several it is `sharding.sweep_mesh` over all global devices: the settings
    axis split over gcd(S, D) devices, each setting's batch over the largest divisor of
    the rest that divides the batch size (S=8 on 8 devices -> 8 x 1, S=2 -> 2 x 4,
    S=3 -> 1 x 8 for a batch divisible by 8). The stacked state (and the checkpoints,
    saved and restored sharded) is split along settings, the data replicated; the
    returned states keep that sharding. Every setting still computes its own single
    run; with data > 1 its batch means are summed in another order (float32 rounding).
    On several processes each must call this with the same host values (states,
    seeds, data), as every process of a multi-host run builds them the same way.

    summary: {"settings": [per setting {"metrics": mean of the last dispatch (NaN for a
    diverged setting), "diverged": None or {"step", "metric", "value"}}], "alive": [S]
    bools, "compile_s", "steps_per_s", "mesh": {"settings": a, "data": b} or None}.
    Raises NonFiniteError (one line) when every setting has diverged, after saving a
    checkpoint.
    """
    num_steps, per = int(cfg.num_steps), int(cfg.steps_per_dispatch)
    num_settings = _num_settings(states, seeds)
    steps0 = sharding.to_host(states.step)
    check_finite_data(train_data)
    ensure_workdir(workdir, create=is_main_process())    # Orbax's primary host writes
    num_examples = len(jax.tree_util.tree_leaves(train_data)[0])
    batch_size = int(cfg.batch_size)
    if not 0 < batch_size <= num_examples:
        raise ValueError(f"batch_size {batch_size} must be in 1..{num_examples} (the number "
                         "of training examples)")

    if setting_names is not None and len(setting_names) != num_settings:
        raise ValueError(f"setting_names has {len(setting_names)} names for "
                         f"{num_settings} settings; give one name per setting")
    if mesh is None and jax.device_count() > 1:
        mesh = sharding.sweep_mesh(num_settings, batch_size)
    if mesh is not None:
        if tuple(mesh.axis_names) != ("settings", "data"):
            raise ValueError(f"a sweep's mesh has the axes ('settings', 'data'), not "
                             f"{tuple(mesh.axis_names)}; build it with "
                             "genjax.train.sharding.sweep_mesh")
        if num_settings % mesh.shape["settings"] or batch_size % mesh.shape["data"]:
            raise ValueError(f"a mesh of settings {mesh.shape['settings']} x data "
                             f"{mesh.shape['data']} does not divide {num_settings} settings "
                             f"of batch {batch_size}; use sharding.sweep_mesh(S, B)")
        if is_main_process():
            log(f"[sweep] {num_settings} settings on a mesh of settings "
                f"{mesh.shape['settings']} x data {mesh.shape['data']} "
                f"({mesh.size} of {jax.device_count()} devices)")

    # The metric names, for naming a divergence (and storing it as an index).
    one = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype),
                                 states)
    one_batch = jax.eval_shape(             # batches.take's shapes (sparse rows densify)
        lambda d: batches.take(d, jnp.zeros((batch_size,), jnp.int32)), train_data)
    names = sorted(jax.eval_shape(step_fn, one, one_batch, jax.random.key(0))[1])

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=int(cfg.keep_checkpoints))
    own_writer = writer is None
    writer = writer or SweepWriter(workdir, total_steps=num_steps, names=setting_names)

    if mesh is None:
        place = lambda tree: tree                                  # noqa: E731
        place_settings = lambda tree: tree                         # noqa: E731
    else:
        place = lambda tree: sharding.put(tree, sharding.replicated(mesh))  # noqa: E731
        place_settings = lambda tree: sharding.put(                         # noqa: E731
            tree, sharding.settings_sharded(mesh))

    # Private copies: the compiled chunk donates its inputs, and the caller's arrays must
    # survive (`sharding.put` always makes new arrays).
    if mesh is None:
        states = jax.tree_util.tree_map(lambda a: jnp.asarray(a).copy(), states)
    else:
        states = place_settings(states)
    fresh_hparams = states.hparams
    record = place({
        "step": jnp.asarray(np.asarray(steps0)[0], jnp.int32),
        "alive": jnp.ones((num_settings,), jnp.int32),
        "diverged_step": jnp.full((num_settings,), -1, jnp.int32),
        "diverged_metric": jnp.full((num_settings,), -1, jnp.int32),   # index into names
        "diverged_value": jnp.zeros((num_settings,), jnp.float32),
    })
    record["state"] = states
    restored = ckpt.restore_latest(record)
    if restored is not None:
        record = dict(restored, state=restored["state"]._replace(hparams=fresh_hparams))
        if is_main_process():
            log(f"resumed the sweep from {ckpt.directory} at step "
                f"{int(sharding.to_host(record['step']))}")
    states = record["state"]
    record = sharding.to_host({k: v for k, v in record.items() if k != "state"})
    step = int(record["step"])
    alive = np.asarray(record["alive"]).astype(bool)
    diverged = [None] * num_settings
    for s in map(int, np.flatnonzero(np.asarray(record["diverged_step"]) >= 0)):
        m = int(record["diverged_metric"][s])
        diverged[s] = {"step": int(record["diverged_step"][s]),
                       "metric": names[m],
                       "value": float(record["diverged_value"][s])}

    def to_record():
        return {"state": states, **place(to_record_host())}

    def to_record_host():
        return {"step": jnp.int32(step),
                "alive": jnp.asarray(alive, jnp.int32),
                "diverged_step": jnp.array([-1 if d is None else d["step"]
                                            for d in diverged], jnp.int32),
                "diverged_metric": jnp.array(
                    [-1 if d is None else names.index(d["metric"]) for d in diverged],
                    jnp.int32),
                "diverged_value": jnp.array([0.0 if d is None else d["value"]
                                             for d in diverged], jnp.float32)}

    def all_diverged():
        return NonFiniteError(
            "every setting of the sweep diverged: " + "; ".join(
                f"setting {s}: {d['metric']} = {d['value']} at step {d['step']}"
                for s, d in enumerate(diverged))
            + f"; their last finite states are checkpointed in {ckpt.directory}. Lower the "
            "learning rates (or clip gradients) and start a new --workdir")

    if mesh is None:
        data = jax.device_put(train_data)
        seed_keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    else:
        data = place(train_data)
        seed_keys = jax.jit(jax.vmap(jax.random.key),
                            out_shardings=sharding.settings_sharded(mesh))(
            place_settings(np.asarray(seeds)))
    chunk = make_sweep_chunk(step_fn, num_examples=num_examples, batch_size=batch_size,
                             mesh=mesh)

    stop, restore_signals = catch_stop_signals()

    compiled: dict[int, Callable] = {}
    compile_time, steady_t, steady_steps = 0.0, 0.0, 0
    last = [None] * num_settings
    writer.start(step)
    try:
        if not alive.any():              # a rerun of a sweep that had stopped this way
            raise all_diverged()
        while step < num_steps:
            n = min(per, num_steps - step)
            alive_in = place(jnp.asarray(alive))
            if n not in compiled:
                t = time.perf_counter()
                compiled[n] = chunk.lower(states, alive_in, data, seed_keys, n).compile()
                compile_time += time.perf_counter() - t
                writer.start(step)
            t = time.perf_counter()
            states, alive_out, metrics, finite = compiled[n](states, alive_in, data,
                                                              seed_keys)
            metrics, finite, alive_out = sharding.to_host((metrics, finite, alive_out))
            steady_t, steady_steps = steady_t + time.perf_counter() - t, steady_steps + n
            for s in map(int, np.flatnonzero(alive & ~alive_out)):
                i = int(np.argmin(finite[:, s]))                 # the first non-finite step
                # finite is judged on the metrics alone: one of them is non-finite here
                name = next(k for k in metrics if not np.isfinite(metrics[k][i, s]))
                value = float(metrics[name][i, s])
                diverged[s] = {"step": step + i, "metric": name, "value": value}
                writer.diverged(s, step + i, name, value)
                if is_main_process():
                    log(f"[sweep] setting {s} diverged: {name} = {value} at step "
                        f"{step + i}; it is frozen at its state after step {step + i - 1}, "
                        "the others go on")
            alive = np.asarray(alive_out, bool)
            step += n
            last = [{k: float(np.mean(v[:, s])) for k, v in metrics.items()}
                    if alive[s] else None for s in range(num_settings)]
            writer.write(step, last)
            writer.progress(step, last)
            saved = (step % int(cfg.checkpoint_every) == 0 or step == num_steps
                     or stop["signal"] or not alive.any())
            if saved:
                ckpt.save(step, to_record())
            if not alive.any():
                ckpt.wait()
                raise all_diverged()
            if stop["signal"]:
                ckpt.wait()
                raise Interrupted(f"stopped by signal {stop['signal']} at step {step}; a "
                                  f"checkpoint is saved in {ckpt.directory}: rerun the same "
                                  f"command to resume")
    finally:
        ckpt.close()
        restore_signals()
        if own_writer:
            writer.close()
    nan = {k: math.nan for k in names}
    summary = {"settings": [{"metrics": last[s] if last[s] is not None else dict(nan),
                             "diverged": diverged[s]} for s in range(num_settings)],
               "alive": [bool(a) for a in alive], "compile_s": compile_time,
               "steps_per_s": steady_steps / steady_t if steady_t > 0 else float("nan"),
               "mesh": None if mesh is None else {k: int(mesh.shape[k])
                                                  for k in ("settings", "data")}}
    return states, summary
