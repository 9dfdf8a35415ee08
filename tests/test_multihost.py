"""Several processes on one machine (genjax.train.distributed): two processes on
localhost, one CPU device each, exchanging gradients through gloo, train the tiny VAE
with each batch split over both and end where one process does; only process 0 writes
files; a coordinator that cannot be reached is a one-line error; the train.* fields of
several processes are checked in one line."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import vae as vae_config
from experiments import vae as vae_experiment
from genjax.train import ConfigError, config as cfglib, distributed, sweep_spec

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "multihost_worker.py")
# The tiny VAE of tests/test_sweep_vae.py (digits, 50 steps, batch 32).
TINY = {"data.name": "digits", "model.hidden": (16,), "model.latent_dim": 3,
        "train.num_steps": 50, "train.steps_per_dispatch": 25,
        "train.checkpoint_every": 50, "train.batch_size": 32, "eval.iw_samples": 10,
        "eval.iw_chunk": 10, "eval.fd_samples": 0, "plots.interp_steps": 3}
TINY_FLAGS = [f"--config.{k}={v}".replace(" ", "") for k, v in TINY.items()]
TEST_METRICS = ("test/elbo", "test/iw_log_likelihood", "test/kl", "test/log_px")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env(devices: int = 1) -> dict:
    return dict(os.environ, JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(devices))


def run_processes(workdir, audit_dir, args, *, n=2, timeout=240):
    """Runs ``python -m experiments.vae ARGS`` as n processes of one run on localhost
    (through tests/multihost_worker.py, which records the files each one writes under
    ``workdir``). Returns [(returncode, output, writes)] by process id."""
    port = free_port()
    procs = []
    for i in range(n):
        cmd = [sys.executable, WORKER, str(audit_dir / f"audit{i}.json"), str(workdir), "-m",
               "experiments.vae", *args, f"--workdir={workdir}",
               f"--config.train.coordinator_address=127.0.0.1:{port}",
               f"--config.train.num_processes={n}", f"--config.train.process_id={i}",
               "--config.train.init_timeout_s=60"]
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    out = []
    try:
        for i, p in enumerate(procs):
            text, _ = p.communicate(timeout=timeout)
            path = audit_dir / f"audit{i}.json"
            writes = json.loads(path.read_text()) if path.exists() else None
            out.append((p.returncode, text, writes))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (rc, text, _) in enumerate(out):
        assert rc == 0, f"process {i} failed:\n{text[-3000:]}"
    return out


def orbax_own_files(path: str) -> bool:
    """What Orbax has every process write by design during a multi-process save: its own
    array metadata and OCDBT shard folder, named after the process, inside the step's
    temporary folder (process 0 then finalises the step)."""
    return ".orbax-checkpoint-tmp" in path and "process_1" in path


def files_under(d) -> set:
    return {os.path.relpath(os.path.join(r, f), d) for r, _, fs in os.walk(d) for f in fs}


@pytest.mark.slow
def test_a_run_split_over_two_processes_equals_one_process(tmp_path):
    """~45-70 s on the 2-core CPU (two JAX processes start, compile and train at once;
    cross-process gloo all-reduces make each step slow)."""
    t0 = time.perf_counter()
    two = tmp_path / "two"
    results = run_processes(two, tmp_path, ["--config=configs/vae.py:quick", *TINY_FLAGS])
    t_two = time.perf_counter() - t0
    one = vae_experiment.train_and_evaluate(sweep_spec.apply(vae_config.get_config("quick"),
                                                             TINY), str(tmp_path / "one"))
    print(f"two processes: {t_two:.1f} s; one: {time.perf_counter() - t0 - t_two:.1f} s")

    with open(two / "results.json") as f:
        res = json.load(f)
    assert res["processes"] == 2 and len(res["devices"]) == 2
    # The same init, data order and step keys; each process holds half of every batch
    # and the gradient is summed across processes, a different order of float32 additions
    # than one device's reduction over the whole batch, amplified over 50 Adam steps.
    # Measured: 2e-8 relative at most; rtol 1e-5 (0.4 millinats on ~-40 nats), as for
    # a sweep against its single runs (tests/test_sweep_vae.py).
    for k in TEST_METRICS:
        np.testing.assert_allclose(res["metrics"][k], one[k], rtol=1e-5, err_msg=k)

    # Nothing written twice: one metrics row per dispatch (2), one TensorBoard event file,
    # the same files as the one-process run apart from Orbax's per-process parts, and
    # process 1 wrote nothing (seen from Python) but Orbax's own per-process files.
    with open(two / "metrics.jsonl") as f:
        assert [json.loads(line)["step"] for line in f] == [25, 50]
    assert len(os.listdir(two / "tensorboard")) == 1
    strip = lambda names: {n for n in names if "process_1" not in n      # noqa: E731
                           and not n.startswith(("tensorboard", "checkpoints/50/default/d",
                                                 "checkpoints/50/default/ocdbt"))}
    assert strip(files_under(two)) == strip(files_under(tmp_path / "one"))
    (_, out0, writes0), (_, out1, writes1) = results
    assert writes1 is not None and writes0
    assert [w for w in writes1 if not all(orbax_own_files(p) for p in w[1:])] == []
    assert "final:" in out0 and "final:" not in out1 and "[train]" not in out1


@pytest.mark.slow
def test_an_unreachable_coordinator_is_a_one_line_error(tmp_path):
    """~10 s: the wait is --config.train.init_timeout_s=5."""
    port = free_port()                         # closed again: nobody listens there
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.vae", "--config=configs/vae.py:quick",
         f"--workdir={tmp_path / 'w'}",
         f"--config.train.coordinator_address=127.0.0.1:{port}",
         "--config.train.num_processes=2", "--config.train.process_id=1",
         "--config.train.init_timeout_s=5"],
        cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
    took = time.perf_counter() - t
    assert proc.returncode == 1, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert f"127.0.0.1:{port}" in lines[0] and "init_timeout_s" in lines[0]
    assert "Traceback" not in proc.stderr
    assert took < 5 + 20
    assert not (tmp_path / "w").exists()


def test_process_zero_on_a_taken_port_is_a_one_line_error():
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen(1)
        port = s.getsockname()[1]
        cfg = vae_config.get_config("quick")
        cfg.train.update(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                         process_id=0)
        with pytest.raises(ConfigError, match=f"port {port}") as e:
            distributed.initialize(cfg.train)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("fields, named, says", [
    ({"coordinator_address": "localhost", "num_processes": 2, "process_id": 0},
     "coordinator_address='localhost'", "HOST:PORT"),
    ({"coordinator_address": "h:99999", "num_processes": 2, "process_id": 0},
     "coordinator_address='h:99999'", "HOST:PORT"),
    ({"num_processes": 2, "process_id": 0}, "coordinator_address=''", "HOST:PORT"),
    ({"coordinator_address": "h:1234", "process_id": 0}, "num_processes=0", ">= 1"),
    ({"coordinator_address": "h:1234", "num_processes": 2, "process_id": -1},
     "process_id=-1", ">= 0"),
    ({"coordinator_address": "h:1234", "num_processes": 2, "process_id": 2},
     "process_id=2", "0 .. 1"),
    ({"process_id": 1}, "process_id=1", "0 without"),
    ({"num_processes": -1}, "num_processes=-1", "0 = one process"),
    ({"init_timeout_s": 0}, "init_timeout_s=0", "seconds"),
])
def test_processes_fields_are_checked_in_one_line(fields, named, says):
    cfg = vae_config.get_config("quick")
    cfg.train.update(fields)
    with pytest.raises(ConfigError) as e:
        cfglib.validate_common(cfg, 1)
    msg = str(e.value)
    assert f"--config.train.{named}" in msg and says in msg and "\n" not in msg


def test_processes_fields_accept_one_process_and_several():
    cfg = vae_config.get_config("quick")
    cfglib.validate_common(cfg, 1)                     # the defaults: one process
    assert not distributed.wanted(cfg.train)
    cfg.train.update(coordinator_address="10.0.0.1:1234", num_processes=4, process_id=3,
                     init_timeout_s=30)
    cfglib.validate_common(cfg, 1)
    assert distributed.wanted(cfg.train)


@pytest.mark.slow
def test_a_sweep_split_over_two_processes_equals_one_process(tmp_path):
    """~60-80 s on the 2-core CPU. Two settings on the ("settings", "data") mesh of two
    processes with one device each: each process trains one setting
    (`genjax.train.sharding.sweep_mesh`), process 0 writes the tables."""
    two = tmp_path / "two"
    results = run_processes(two, tmp_path, ["--config=configs/vae.py:quick", *TINY_FLAGS,
                                            "--sweep=seed=0,1"])
    one = vae_experiment.sweep(sweep_spec.apply(vae_config.get_config("quick"), TINY),
                               str(tmp_path / "one"), ["seed=0,1"])
    with open(two / "sweep.json") as f:
        rows = json.load(f)["settings"]
    assert [r["name"] for r in rows] == [r["name"] for r in one["settings"]]
    for r, ref in zip(rows, one["settings"]):
        # Each setting's batch stays on one device here, as in the one-process sweep:
        # the same programs per setting; rtol as in the single-run test above.
        for k in TEST_METRICS:
            np.testing.assert_allclose(r["metrics"][k], ref["metrics"][k], rtol=1e-5,
                                       err_msg=f"{r['name']} {k}")
    assert rows[0]["metrics"]["test/elbo"] != pytest.approx(rows[1]["metrics"]["test/elbo"])
    for r in rows:
        assert (two / r["name"] / "results.json").exists()
    # Process 1 wrote no file (seen from Python) but Orbax's own per-process files.
    # (Creating a folder that already exists is not counted: os.makedirs(exist_ok=True).)
    (_, out0, _), (_, out1, writes1) = results
    assert writes1 is not None
    files1 = [w for w in writes1 if w[0] != "os.mkdir"]
    assert [w for w in files1 if not all(orbax_own_files(p) for p in w[1:])] == []
    assert "wrote" in out0 and "wrote" not in out1
