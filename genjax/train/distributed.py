"""Several processes (hosts): who writes, and how the processes find each other.

`is_main_process()` is the one test every writer of files uses: only process 0 writes
metrics.jsonl, results.json, config.json, figures, caches and sweep tables (checkpoints
are written by every process together, the way Orbax expects).

`initialize(config.train)` starts the JAX distributed system from the config (the cli
calls it before anything touches a device):

    --config.train.coordinator_address=HOST:PORT   process 0's host and a free port
    --config.train.num_processes=N                 how many processes take part
    --config.train.process_id=I                    0 .. N-1, a different one in each
    --config.train.init_timeout_s=60               how long to wait for the others

(``--config.train.distributed=True`` with no address lets JAX detect the cluster itself:
Cloud TPU, Slurm, Open MPI, or the JAX_COORDINATOR_ADDRESS environment variable.)
Every process runs the same command with its own process_id; the mesh then spans all
processes' devices, each batch is split over them, and the embedded dataset is loaded
whole by each. On CPUs the cross-process collectives go through gloo.

A coordinator that cannot be reached, or processes that do not all arrive within
init_timeout_s, is a one-line error (`ConfigError`, or, once JAX's own wait has begun,
'error: ...' on stderr and exit status 1), never a hang: JAX itself would abort the
process with a C++ stack trace after its own timeout.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time

import jax

from genjax.train.config import ConfigError

# JAX's wait is set this much longer than ours, so that our one-line error comes first.
_JAX_TIMEOUT_MARGIN_S = 30


def is_main_process() -> bool:
    """True in process 0 (and in every single-process run)."""
    return jax.process_index() == 0


def is_initialized() -> bool:
    """Whether `jax.distributed.initialize` has run in this process."""
    check = getattr(jax.distributed, "is_initialized", None)
    if check is not None:
        return bool(check())
    from jax._src import distributed as _d  # pylint: disable=import-outside-toplevel
    return _d.global_state.client is not None


def wanted(train_cfg) -> bool:
    """Whether ``train_cfg`` (a config's train section) asks for several processes."""
    return bool(train_cfg.get("distributed") or train_cfg.get("coordinator_address")
                or train_cfg.get("num_processes"))


def split_address(address: str) -> tuple[str, int]:
    """'host:port' (or '[v6]:port') -> (host, port); ValueError when malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(address)
    return host.strip("[]"), int(port)


def _fix() -> str:
    return ("start process 0 first (or together), on the host and free port named by "
            "--config.train.coordinator_address, with the same --config.train.num_processes "
            "in every process and process ids 0 .. num_processes-1")


def _wait_for_coordinator(address: str, timeout_s: float) -> None:
    """Retries a TCP connection to ``address`` until it is accepted; ConfigError (one
    line) when ``timeout_s`` passes first."""
    host, port = split_address(address)
    deadline = time.monotonic() + timeout_s
    last = None
    while True:
        try:
            with socket.create_connection((host, port), timeout=min(2.0, timeout_s)):
                return
        except OSError as e:                        # refused, unreachable, unknown host
            last = e
        if time.monotonic() >= deadline:
            break
        time.sleep(0.25)
    why = (f"{type(last).__name__}: {last.strerror or last}" if isinstance(last, OSError)
           else "no answer")
    raise ConfigError(f"cannot reach the coordinator at {address} within {timeout_s:g} s "
                      f"(--config.train.init_timeout_s) ({why}); {_fix()}")


def _check_bindable(address: str) -> None:
    """Process 0 runs the coordinator: its port must be free here."""
    _, port = split_address(address)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("", port))
    except OSError as e:
        raise ConfigError(f"process 0 cannot run the coordinator on port {port} of this "
                          f"host ({e.strerror or e}); choose a free port in "
                          f"--config.train.coordinator_address={address}") from None


def _enable_cpu_collectives() -> None:
    """Cross-process collectives on CPU devices need an implementation (gloo ships with
    jaxlib); harmless where the devices are GPUs or TPUs."""
    try:
        if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except AttributeError:                          # an older or newer JAX without it
        pass


def initialize(train_cfg) -> bool:
    """Starts the JAX distributed system as ``train_cfg`` (a config's train section) asks:
    with coordinator_address / num_processes / process_id set, from them; with only
    distributed=True, from JAX's own cluster detection. Returns whether it started (False
    for a single-process run, or when it is already initialized).

    Raises ConfigError (one line naming the address and the fix) when the coordinator
    cannot be reached or its port is taken; when the processes do not all arrive within
    init_timeout_s after that, prints 'error: ...' on stderr and exits with status 1."""
    if not wanted(train_cfg) or is_initialized():
        return False
    address = train_cfg.get("coordinator_address") or ""
    num = int(train_cfg.get("num_processes") or 0)
    pid = int(train_cfg.get("process_id") or 0)
    timeout = float(train_cfg.get("init_timeout_s") or 300)
    start = time.monotonic()
    kwargs = {}
    if address or num:
        if not (address and num >= 1 and 0 <= pid < num):
            raise ConfigError(
                "several processes need all of --config.train.coordinator_address=HOST:PORT, "
                "--config.train.num_processes=N and --config.train.process_id=0..N-1 (got "
                f"{address!r}, {num}, {pid})")
        kwargs = dict(coordinator_address=address, num_processes=num, process_id=pid)
        if num > 1:
            if pid == 0:
                _check_bindable(address)
            else:
                _wait_for_coordinator(address, timeout)
    where = address or os.environ.get("JAX_COORDINATOR_ADDRESS") or "JAX detected"
    _enable_cpu_collectives()

    def give_up():        # runs in a thread while JAX waits (it releases the GIL)
        print(f"error: the {num or 'expected'} processes did not all reach the coordinator "
              f"at {where} within {timeout:g} s (--config.train.init_timeout_s) (this is "
              f"process {pid}); {_fix()}", file=sys.stderr, flush=True)
        os._exit(1)       # pylint: disable=protected-access

    watchdog = threading.Timer(max(1.0, timeout - (time.monotonic() - start)), give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            **kwargs, initialization_timeout=int(timeout) + _JAX_TIMEOUT_MARGIN_S)
    except (RuntimeError, ValueError) as e:         # e.g. no cluster detected
        why = " ".join(str(e).split())[:300]
        if kwargs:
            raise ConfigError(f"the JAX distributed system at {address} did not start "
                              f"({why}); {_fix()}") from None
        raise ConfigError(
            f"--config.train.distributed=True found no cluster to join ({why}); where "
            "JAX cannot detect one (Cloud TPU, Slurm, Open MPI), set "
            "--config.train.coordinator_address=HOST:PORT, --config.train.num_processes=N "
            "and --config.train.process_id=I in each process") from None
    finally:
        watchdog.cancel()
    return True


def barrier(name: str) -> None:
    """Waits until every process reached ``name`` (a no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # pylint: disable=import-outside-toplevel
        multihost_utils.sync_global_devices(name)
