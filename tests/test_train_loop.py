"""The shared loop: data order, resume after a real SIGKILL or SIGTERM, 8-device
equivalence, non-finite stops, hyper-parameters as arrays (vmappable steps)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from genjax.train import NonFiniteError, init_state, make_train_step, train
from genjax.train.batches import batch_indices

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A small VAE on the 8x8 digits: fast to compile and to run on a 2-core CPU.
TINY = ["--config=configs/vae.py:quick", "--config.data.name=digits",
        "--config.model.hidden=(32,)", "--config.model.latent_dim=4",
        "--config.train.batch_size=64", "--config.eval.iw_samples=10",
        "--config.eval.iw_chunk=10", "--config.plots.num_samples=4",
        "--config.plots.interp_pairs=1", "--config.plots.interp_steps=3"]


def run_vae(workdir, *extra, env=None, **kw):
    cmd = [sys.executable, "-m", "experiments.vae", f"--workdir={workdir}", *TINY, *extra]
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def restore_params(workdir):
    mngr = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"))
    step = mngr.latest_step()
    tree = mngr.restore(step, args=ocp.args.StandardRestore())
    return step, jax.tree_util.tree_leaves(tree)


def test_each_epoch_visits_every_example_once_in_a_seed_dependent_order():
    key = jax.random.key(0)
    n, b = 100, 10
    epoch0 = np.concatenate([batch_indices(key, s, num_examples=n, batch_size=b)
                             for s in range(10)])
    epoch1 = np.concatenate([batch_indices(key, s, num_examples=n, batch_size=b)
                             for s in range(10, 20)])
    assert sorted(epoch0) == list(range(n)) and sorted(epoch1) == list(range(n))
    assert not np.array_equal(epoch0, epoch1)
    other = batch_indices(jax.random.key(1), 0, num_examples=n, batch_size=b)
    assert not np.array_equal(other, epoch0[:b])


STEPS = ["--config.train.num_steps=1000", "--config.train.steps_per_dispatch=10",
         "--config.train.checkpoint_every=50"]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The final (step, parameters) of an uninterrupted run with STEPS."""
    full = str(tmp_path_factory.mktemp("uninterrupted"))
    p = run_vae(full, *STEPS)
    out = p.communicate(timeout=600)[0]
    assert p.returncode == 0, out
    return restore_params(full)


def start_and_stop_mid_run(workdir, sig):
    """Starts a run with STEPS, sends ``sig`` once a checkpoint at step >= 300 exists;
    returns (return code, output)."""
    p = run_vae(workdir, *STEPS)
    ckdir = os.path.join(workdir, "checkpoints")
    deadline = time.time() + 300
    while time.time() < deadline:                     # stop once training is under way
        done = [int(d) for d in os.listdir(ckdir) if d.isdigit()] if os.path.isdir(ckdir) else []
        if done and max(done) >= 300:
            break
        time.sleep(0.05)
    os.kill(p.pid, sig)
    out = p.communicate(timeout=60)[0]
    return p.returncode, out


def resume_and_compare(workdir, uninterrupted):
    p = run_vae(workdir, *STEPS)
    out = p.communicate(timeout=600)[0]
    assert p.returncode == 0, out
    assert "resumed from" in out
    s_full, leaves_full = uninterrupted
    s_res, leaves_res = restore_params(workdir)
    assert s_full == s_res == 1000
    assert len(leaves_full) == len(leaves_res)
    for a, b in zip(leaves_full, leaves_res):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))   # bit for bit
    return out


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_equal_to_an_uninterrupted_run(tmp_path,
                                                                       uninterrupted):
    killed = str(tmp_path / "killed")
    rc, _ = start_and_stop_mid_run(killed, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    step_at_kill, _ = restore_params(killed)
    assert 300 <= step_at_kill < 1000, "the kill must land mid-run"
    resume_and_compare(killed, uninterrupted)


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_130_and_the_rerun_is_bitwise_equal(
        tmp_path, uninterrupted):
    """As the cli documents: the current dispatch finishes, a checkpoint of that step is
    saved, 'interrupted: ...' is printed and the exit code is 130."""
    stopped = str(tmp_path / "stopped")
    rc, out = start_and_stop_mid_run(stopped, signal.SIGTERM)
    assert rc == 130, out
    m = re.search(r"^interrupted: stopped by signal 15 at step (\d+); a checkpoint is saved "
                  r"in (\S+): rerun the same command to resume$", out, re.MULTILINE)
    assert m, out
    step, where = int(m.group(1)), m.group(2)
    assert 300 <= step < 1000, "the signal must land mid-run"
    assert where == os.path.join(os.path.abspath(stopped), "checkpoints")
    assert restore_params(stopped)[0] == step       # saved at that step, not only at 50s
    assert "Traceback" not in out and "results.json" not in out
    out = resume_and_compare(stopped, uninterrupted)
    assert f"at step {step}" in out


@pytest.mark.slow
def test_eight_devices_give_the_same_losses_as_one(tmp_path):
    steps = ["--config.train.num_steps=60", "--config.train.steps_per_dispatch=20",
             "--config.train.checkpoint_every=60"]
    losses = {}
    for n in (1, 8):
        wd = str(tmp_path / f"d{n}")
        p = run_vae(wd, *steps, env={"JAX_NUM_CPU_DEVICES": str(n),
                                     "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}"})
        out = p.communicate(timeout=600)[0]
        assert p.returncode == 0, out
        assert f"devices [{', '.join(f'CpuDevice(id={i})' for i in range(n))}]" in out
        with open(os.path.join(wd, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f]
        losses[n] = np.array([r["train/loss"] for r in rows if "train/loss" in r])
        with open(os.path.join(wd, "results.json")) as f:
            losses[n, "test"] = json.load(f)["metrics"]["test/elbo"]
    assert len(losses[1]) == 3
    np.testing.assert_allclose(losses[8], losses[1], rtol=2e-4)
    np.testing.assert_allclose(losses[8, "test"], losses[1, "test"], rtol=2e-4)


def _toy_config(**kw):
    c = dict(num_steps=100, batch_size=4, steps_per_dispatch=10, checkpoint_every=10,
             keep_checkpoints=3, eval_every=0)
    c.update(kw)
    return ml_collections.ConfigDict(c)


def _toy_problem(nan_at=None):
    data = jnp.arange(32, dtype=jnp.float32)[:, None]            # [N, 1]
    tx = optax.identity()
    def loss_fn(params, batch, key, hp):
        loss = jnp.mean((batch - params["w"]) ** 2)
        if nan_at is not None:
            loss = jnp.where(params["t"] >= nan_at, jnp.nan, loss)
        return loss, {"mse": loss}
    step = make_train_step(loss_fn, tx)
    def step_fn(state, batch, key):                                # count steps in params
        state, m = step(state, batch, key)
        return state._replace(params=dict(state.params, t=state.params["t"] + 1)), m
    state = init_state({"w": jnp.zeros((1,)), "t": jnp.zeros(())}, tx,
                       {"lr": 0.1, "weight_decay": 0.0})
    return state, step_fn, data


def test_a_non_finite_loss_stops_with_step_and_metric_and_keeps_the_last_checkpoint(tmp_path):
    state, step_fn, data = _toy_problem(nan_at=37)
    with pytest.raises(NonFiniteError) as e:
        train(state, step_fn, data, cfg=_toy_config(), seed=0, workdir=str(tmp_path))
    msg = str(e.value)
    assert "at step 37" in msg and ("mse = nan" in msg or "loss = nan" in msg)
    assert "step 30" in msg and "\n" not in msg
    mngr = ocp.CheckpointManager(str(tmp_path / "checkpoints"))
    assert mngr.latest_step() == 30
    restored = mngr.restore(30, args=ocp.args.StandardRestore())
    assert np.all(np.isfinite(np.asarray(restored.params["w"] if hasattr(restored, "params")
                                         else restored["params"]["w"])))


def test_the_step_is_vmappable_over_a_sweep_of_learning_rates():
    state, step_fn, data = _toy_problem()
    lrs = jnp.array([0.0, 0.1, 0.5])
    states = jax.tree_util.tree_map(lambda a: jnp.stack([a] * 3), state)
    states = states._replace(hparams=dict(states.hparams, lr=lrs))
    batch = data[:4]
    new, metrics = jax.jit(jax.vmap(step_fn, in_axes=(0, None, None)))(
        states, batch, jax.random.key(0))
    for i, lr in enumerate(lrs):
        single = state._replace(hparams=dict(state.hparams, lr=lr))
        ref, _ = step_fn(single, batch, jax.random.key(0))
        np.testing.assert_allclose(new.params["w"][i], ref.params["w"], rtol=1e-6)
    assert float(new.params["w"][0, 0]) == 0.0 and float(new.params["w"][2, 0]) > float(
        new.params["w"][1, 0]) > 0


def test_resuming_takes_hyperparameters_from_the_new_config(tmp_path):
    state, step_fn, data = _toy_problem()
    train(state, step_fn, data, cfg=_toy_config(num_steps=20), seed=0, workdir=str(tmp_path))
    slow = state._replace(hparams=dict(state.hparams, lr=jnp.float32(0.0)))
    resumed, summary = train(slow, step_fn, data, cfg=_toy_config(num_steps=40), seed=0,
                             workdir=str(tmp_path))
    assert int(resumed.step) == 40 and float(resumed.hparams["lr"]) == 0.0
    assert summary["lr"] == 0.0
