"""Helpers shared by the benchmarks: timing, the machine's matmul peak, JSON records.

Timings on a shared CPU are noisy: measure every quantity you compare in the same run,
interleave the contenders (`interleaved`) and report medians over repeats.

    times = interleaved({"a": run_a, "b": run_b}, repeats=7)   # {name: [seconds]}
    peak = matmul_peak()                                        # float32 FLOP/s, jax
    write_json(path, record)                                    # adds machine + versions
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import statistics
import time
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from genjax.train import results


# ----------------------------------------------------------------------------- timing

def time_once(fn: Callable[[], object]) -> float:
    """Seconds for one call of ``fn``; ``fn`` must block until its work is done
    (``jax.block_until_ready`` on what it returns, or a host read)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_time(fn: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> float:
    """Median seconds over ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    return statistics.median(time_once(fn) for _ in range(repeats))


def interleaved(fns: dict[str, Callable[[], object]], *, repeats: int = 5, warmup: int = 1,
                pause_s: float = 0.0) -> dict[str, list[float]]:
    """Times each of ``fns`` ``repeats`` times, round-robin, so that a slow phase of a
    shared machine hits every contender alike. Returns {name: [seconds per call]}.
    ``pause_s`` sleeps between calls, letting one library's spinning worker threads go
    idle before the next library starts."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            time.sleep(pause_s)
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            out[name].append(time_once(fn))
            time.sleep(pause_s)
    return out


def summarize(times: Sequence[float]) -> dict:
    """Median, min, max and the count of a list of seconds."""
    return {"median_s": statistics.median(times), "min_s": min(times),
            "max_s": max(times), "repeats": len(times)}


class CpuContention:
    """Measures how busy the machine's CPUs were with *other* processes while a block
    ran (Linux /proc/stat minus this process's own CPU time; time a hypervisor stole for
    other guests counts as busy), as a fraction of all cores: 0 means this benchmark had
    the machine to itself, 0.5 on 2 cores means another process kept one core busy. On
    other systems ``fraction`` is None.

        with CpuContention() as c:
            ...
        c.fraction
    """

    def __init__(self):
        self.fraction: float | None = None

    @staticmethod
    def _busy_seconds() -> float | None:
        try:
            with open("/proc/stat") as f:
                fields = [float(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)     # idle + iowait
        return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")

    def __enter__(self):
        self._t, self._busy, self._own = (time.perf_counter(), self._busy_seconds(),
                                          sum(os.times()[:2]))
        return self

    def __exit__(self, *exc):
        busy = self._busy_seconds()
        if busy is not None and self._busy is not None:
            elapsed = time.perf_counter() - self._t
            own = sum(os.times()[:2]) - self._own
            other = max(0.0, (busy - self._busy) - own)
            self.fraction = min(1.0, other / max(elapsed * (os.cpu_count() or 1), 1e-9))
        return False


# ---------------------------------------------------------------------- matmul FLOPs

@dataclasses.dataclass(frozen=True)
class Dot:
    """One matmul of a computation: ``lax.dot_general(lhs, rhs, dimension_numbers)``
    with a single contracting axis and no batch axes."""
    name: str
    lhs: tuple[int, int]
    rhs: tuple[int, int]
    contract: tuple[int, int]          # (lhs axis, rhs axis)

    @property
    def flops(self) -> int:
        """2 * M * K * N (one multiply and one add per term)."""
        (lc, rc) = self.contract
        return 2 * self.lhs[1 - lc] * self.lhs[lc] * self.rhs[1 - rc]

    @property
    def dimension_numbers(self):
        return (((self.contract[0],), (self.contract[1],)), ((), ()))


def dense_training_dots(batch: int, layers: Sequence[tuple[int, int]], *,
                        input_grad_of_first: bool = False) -> list[Dot]:
    """The matmuls of one forward + backward pass through dense layers (in, out) applied
    to [batch, in] inputs, with the shapes and transposes backprop uses:

      forward        x [B, in] @ W [in, out]         2 B in out
      weight grad    x^T [in, B] @ dy [B, out]       2 B in out
      input grad     dy [B, out] @ W^T [out, in]     2 B in out   (skipped for the first
                                                                  layer: data needs none)
    Bias adds, activations and the optimiser are element-wise and not counted.
    """
    dots = []
    for i, (a, b) in enumerate(layers):
        dots.append(Dot(f"L{i}.fwd {batch}x{a}@{a}x{b}", (batch, a), (a, b), (1, 0)))
        dots.append(Dot(f"L{i}.dW {a}x{batch}@{batch}x{b}", (batch, a), (batch, b), (0, 0)))
        if i > 0 or input_grad_of_first:
            dots.append(Dot(f"L{i}.dx {batch}x{b}@{b}x{a}", (batch, b), (a, b), (1, 1)))
    return dots


def dots_timer(dots: Sequence[Dot], *, iters: int = 100, dtype=jnp.float32):
    """Returns (call, flops_per_call): ``call()`` runs exactly ``dots``, ``iters`` times,
    inside one compiled fori_loop (so dispatch costs nothing) and blocks until done. Its
    FLOP/s is the ceiling for a program made of these matmuls. Each iteration writes one
    element of every lhs from its product's sum, so XLA cannot hoist the matmuls out of
    the loop; the reduction costs under 1% of a matmul of these shapes."""

    def run(lhs, rhs):
        def body(_, lhs):
            out = []
            for d, x, w in zip(dots, lhs, rhs):
                y = jax.lax.dot_general(x, w, d.dimension_numbers)
                out.append(x.at[0, 0].set(jnp.sum(y).astype(x.dtype) * 1e-30))
            return out
        return jax.lax.fori_loop(0, iters, body, lhs)

    run = jax.jit(run, donate_argnums=0)
    key = jax.random.key(0)
    lhs = [jax.random.normal(jax.random.fold_in(key, i), d.lhs, dtype)
           for i, d in enumerate(dots)]
    rhs = [jax.random.normal(jax.random.fold_in(key, 1000 + i), d.rhs, dtype)
           for i, d in enumerate(dots)]
    state = {"lhs": jax.block_until_ready(run(lhs, rhs))}

    def call():
        state["lhs"] = jax.block_until_ready(run(state["lhs"], rhs))

    return call, iters * sum(d.flops for d in dots)


def matmul_timer(n: int, dtype=jnp.float32):
    """Returns (call, flops_per_call) for one jitted [n, n] @ [n, n] product; for n of
    1024 and more the dispatch is negligible next to the 2 n^3 FLOPs."""
    matmul = jax.jit(jnp.matmul)
    key = jax.random.key(n)
    a = jax.random.normal(key, (n, n), dtype)
    b = jax.random.normal(jax.random.fold_in(key, 1), (n, n), dtype)
    jax.block_until_ready(matmul(a, b))
    return (lambda: jax.block_until_ready(matmul(a, b))), 2 * n ** 3


def matmul_peak(sizes: Sequence[int] = (1024, 2048), *, repeats: int = 5,
                dtype=jnp.float32) -> dict:
    """The machine's measured dense float32 matmul rate with jax: the median FLOP/s of
    [n, n] @ [n, n] for each n. Returns {"flops": best over sizes, "by_size": {n: ...}}.
    (Benchmarks that compare against the peak should rather interleave `matmul_timer`
    with their own measurement.)"""
    by_size = {}
    for n in sizes:
        call, flops = matmul_timer(n, dtype)
        by_size[str(n)] = flops / median_time(call, repeats=repeats)
    return {"flops": max(by_size.values()), "by_size": by_size}


# ------------------------------------------------------------------- machine + JSON

def cpu_model() -> str | None:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def core_count() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def device_info() -> dict:
    return {
        "jax_devices": [str(d) for d in jax.devices()],
        "jax_backend": jax.default_backend(),
        "cpu_model": cpu_model(),
        "cores": core_count(),
        "machine": platform.machine(),
        "system": platform.system(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def versions(extra: Sequence[str] = ("torch",)) -> dict:
    """genjax's run-record versions (python, jax, jaxlib, flax, optax, ...) plus the
    peers' packages in ``extra`` (None where not installed)."""
    out = results.versions()
    for name in extra:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic, jax.Array)):
        v = np.asarray(v).item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_json(path: str, record: dict) -> str:
    """Writes ``record`` plus "device", "versions" and "time" to ``path`` (creating its
    folder); returns the path. Non-finite floats become null."""
    record = dict(record, device=device_info(), versions=versions(),
                  time=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(_jsonable(record), f, indent=2)
        f.write("\n")
    return path


@contextlib.contextmanager
def xla_defaults():
    """Within the block, `genjax.xla.jit` programs compile with XLA's default options (and
    `loop_conv` picks its weight gradients for them): the code before `genjax.xla`, for a
    "before" arm measured in the same run as the current one."""
    from genjax import xla

    before = xla._spec
    xla.configure("none")
    try:
        yield
    finally:
        xla.configure(before)


def before_arm_wanted(quick: bool = False) -> bool:
    """A "before" arm differs from the current code only on CPUs; ``quick`` runs (the
    smoke tests) leave it out, it would only compile every program twice."""
    return jax.default_backend() == "cpu" and not quick


def compiled_chunk(step: Callable, state, train_u8: np.ndarray, *, batch_size: int,
                   steps: int, seed: int, finite: Sequence[str] = ("loss",)):
    """The training loop's dispatch, compiled ahead of time: ``steps`` steps of ``step``
    in one lax.scan (`genjax.train.loop.make_chunk`), the state and the uint8 data
    replicated and each batch sharded over the local devices, as `genjax.train.train`
    places them. Returns (run, timings, state): run() trains one chunk from where the last
    one ended, fetches its metrics to the host and raises FloatingPointError if a metric
    named in ``finite`` is not finite; timings holds lower_s, compile_s and
    lower_and_compile_s; state is the placed initial state (the first run() donates it,
    so copy what you need from it before)."""
    from genjax.train import sharding
    from genjax.train.loop import make_chunk

    mesh = sharding.data_mesh()
    state, data = sharding.replicate(state, mesh), sharding.replicate(train_u8, mesh)
    key = jax.random.key(seed)
    chunk = make_chunk(step, num_examples=len(train_u8), batch_size=int(batch_size),
                       batch_sharding=sharding.batch_sharded(mesh))
    t = time.perf_counter()
    lowered = chunk.lower(state, data, key, steps)
    t_lower = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    t_compile = time.perf_counter() - t
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], data, key)
        metrics = jax.device_get(metrics)
        for k in finite:
            if not np.all(np.isfinite(metrics[k])):
                raise FloatingPointError(f"genjax {k} became non-finite in the benchmark")
        return metrics

    return run, {"lower_s": t_lower, "compile_s": t_compile,
                 "lower_and_compile_s": t_lower + t_compile}, state


def finish(out: str, record: dict, summary_text) -> dict:
    """Writes ``record`` as JSON to ``out``, prints ``summary_text(record)`` and the path,
    and returns the record (every benchmark's last lines)."""
    path = write_json(out, record)
    print(summary_text(record))
    print(f"wrote {path}")
    return record


def busy_lines(record: dict) -> list[str]:
    """The summary's warning line when other processes used more than a tenth of the CPUs
    while the benchmark timed (``record["other_processes_cpu_fraction"]``), else none."""
    busy = record.get("other_processes_cpu_fraction")
    if busy is None or busy <= 0.1:
        return []
    return [f"  WARNING: other processes used {busy:.0%} of the CPUs while timing; PyTorch's "
            "OpenMP threads suffer most from that: rerun on an idle machine"]


def base_parser(prog: str, doc: str, default_out: str, *, repeats_help: str,
                quick_help: str = "a few seconds, for smoke tests"):
    """The options every benchmark has: --out (JSON path), --repeats, --quick."""
    import argparse
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=doc.split("\n\n")[0])
    p.add_argument("--out", default=default_out, help="JSON output path")
    p.add_argument("--repeats", type=int, default=None, help=repeats_help)
    p.add_argument("--quick", action="store_true", help=quick_help)
    return p


def parse_positive(p, argv, names: Sequence[str] = ("repeats",)):
    """p.parse_args(argv), then a usage error for any of ``names`` given and < 1."""
    args = p.parse_args(argv)
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
    return args


def set_cpu_devices(n: int) -> bool:
    """Asks jax for ``n`` CPU devices; must run before jax initialises its backends.
    Returns whether the setting took effect."""
    import jax
    try:
        jax.config.update("jax_num_cpu_devices", int(n))
    except RuntimeError:              # backends already initialised (e.g. under pytest)
        return False
    return True
