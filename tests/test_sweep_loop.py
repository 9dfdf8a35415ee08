"""The sweep loop: S settings in one program give each setting's single run, a diverging
setting is frozen at its last finite step while the others go on, resume is bitwise."""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from genjax.train import NonFiniteError, init_state, make_train_step, train
from genjax.train.sweep_loop import SweepWriter, train_sweep

LRS = (0.05, 0.2, 0.1)
SEEDS = (0, 1, 2)
HUGE_LR = 2.0          # diverges at step 16 on this problem (checked below)


def _cfg(**kw):
    c = dict(num_steps=50, batch_size=16, steps_per_dispatch=10, checkpoint_every=10,
             keep_checkpoints=3, eval_every=0)
    c.update(kw)
    return ml_collections.ConfigDict(c)


def _data():
    x = jax.random.normal(jax.random.key(42), (64, 4))                     # [N, 4]
    y = jnp.sin(x @ jnp.array([1.0, -2.0, 0.5, 1.5]))[:, None]              # [N, 1]
    return {"x": x, "y": y}


def _loss(params, batch, key, hp):
    """A 4-16-1 tanh MLP, squared error, with dropout-like noise so the step key matters."""
    h = jnp.tanh(batch["x"] @ params["w1"] + params["b1"])                  # [B, 16]
    h = h * jax.random.bernoulli(key, 0.9, h.shape) / 0.9
    pred = h @ params["w2"] + params["b2"]                                  # [B, 1]
    loss = jnp.mean(jnp.sum((pred - batch["y"]) ** 2, -1))
    return loss, {"mse": loss}


TX = optax.identity()
STEP = make_train_step(_loss, TX)


def _state(lr, init_seed):
    k1, k2 = jax.random.split(jax.random.key(100 + init_seed))
    params = {"w1": jax.random.normal(k1, (4, 16)) * 0.5, "b1": jnp.zeros(16),
              "w2": jax.random.normal(k2, (16, 1)) * 0.5, "b2": jnp.zeros(1)}
    return init_state(params, TX, {"lr": lr})


def _stack(states):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)


def _setting(states, s):
    return jax.tree_util.tree_map(lambda a: a[s], states)


def _sweep(lrs, tmp, **cfg):
    states = _stack([_state(lr, i) for i, lr in enumerate(lrs)])
    return train_sweep(states, STEP, _data(), cfg=_cfg(**cfg),
                       seeds=jnp.array(SEEDS[:len(lrs)]), workdir=str(tmp))


@pytest.fixture(scope="module")
def singles(tmp_path_factory):
    """Each setting of LRS trained alone by `train` for 50 steps."""
    out = []
    for i, lr in enumerate(LRS):
        wd = str(tmp_path_factory.mktemp(f"single{i}"))
        out.append(train(_state(lr, i), STEP, _data(), cfg=_cfg(), seed=SEEDS[i],
                         workdir=wd))
    return out


def _assert_setting_equals(states, s, single):
    """Setting s of the sweep equals the single run. On CPU XLA the vmapped program gives
    the single run's numbers bit for bit (observed, and asserted). Elsewhere the batched
    [S, B, 4] x [S, 4, 16] matmuls may pick other kernels and reassociate sums, leaving
    float32 rounding differences that 50 SGD steps carry along: rtol 1e-5 (~100 ulp)."""
    got = _setting(states, s)
    assert int(got.step) == int(single.step)
    if jax.default_backend() == "cpu":
        check = np.testing.assert_array_equal
    else:
        check = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # noqa: E731
    jax.tree_util.tree_map(lambda a, b: check(np.asarray(a), np.asarray(b)),
                           got.params, single.params)


def test_a_sweep_gives_each_settings_single_run(tmp_path, singles):
    start = _stack([_state(lr, i) for i, lr in enumerate(LRS)])
    states, summary = train_sweep(start, STEP, _data(), cfg=_cfg(), seeds=jnp.array(SEEDS),
                                  workdir=str(tmp_path))
    # the caller's state survives the donation:
    assert int(start.step[0]) == 0 and float(start.hparams["lr"][1]) == np.float32(LRS[1])
    for s in range(3):
        single, single_summary = singles[s]
        _assert_setting_equals(states, s, single)
        assert summary["settings"][s]["diverged"] is None
        for k, v in summary["settings"][s]["metrics"].items():     # last dispatch's means
            assert v == pytest.approx(single_summary[k], rel=1e-6), k
    assert summary["alive"] == [True] * 3
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [(r["step"], r["setting"]) for r in rows] == [
        (t, s) for t in range(10, 51, 10) for s in range(3)]
    assert rows[-1]["train/lr"] == pytest.approx(LRS[2])


def test_a_diverging_setting_is_frozen_at_its_last_finite_step_and_the_others_go_on(
        tmp_path, singles):
    lrs = (LRS[0], HUGE_LR, LRS[2])
    states, summary = _sweep(lrs, tmp_path)
    d = summary["settings"][1]["diverged"]
    assert d is not None and d["metric"] in ("grad_norm", "loss", "mse", "state")
    k = d["step"]
    assert 10 < k < 50, "pick HUGE_LR so that it diverges mid-run"
    assert summary["alive"] == [True, False, True]
    assert np.isnan(summary["settings"][1]["metrics"]["loss"])
    # Frozen: its state is the one after step k - 1, which a single run of k steps
    # (all finite) reaches.
    ref, _ = train(_state(HUGE_LR, 1), STEP, _data(), cfg=_cfg(num_steps=k), seed=SEEDS[1],
                   workdir=str(tmp_path / "ref"))
    _assert_setting_equals(states, 1, ref)
    assert all(np.all(np.isfinite(np.asarray(x)))
               for x in jax.tree_util.tree_leaves(_setting(states, 1).params))
    # ... and a single run of k + 1 steps hits the non-finite metric at step k.
    with pytest.raises(NonFiniteError, match=f"at step {k};"):
        train(_state(HUGE_LR, 1), STEP, _data(), cfg=_cfg(num_steps=k + 1), seed=SEEDS[1],
              workdir=str(tmp_path / "ref2"))
    for s in (0, 2):
        _assert_setting_equals(states, s, singles[s][0])
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert {"step": k, "setting": 1, "diverged": d["metric"], "value": repr(d["value"])} \
        in rows


class _Stop(Exception):
    pass


class _StopAfter(SweepWriter):
    def __init__(self, workdir, stop_at):
        super().__init__(workdir, total_steps=50)
        self.stop_at = stop_at

    def progress(self, step, per_setting, **kw):
        super().progress(step, per_setting, **kw)
        if step == self.stop_at:
            raise _Stop(step)


def test_an_interrupted_sweep_resumes_bitwise_with_the_divergence_record(tmp_path):
    lrs = (LRS[0], HUGE_LR, LRS[2])
    full, full_summary = _sweep(lrs, tmp_path / "full")
    k = full_summary["settings"][1]["diverged"]["step"]
    stop_at = (k // 10 + 1) * 10 + 10           # after the divergence and a checkpoint
    assert stop_at < 50
    wd = tmp_path / "stopped"
    states = _stack([_state(lr, i) for i, lr in enumerate(lrs)])
    writer = _StopAfter(str(wd), stop_at)
    with pytest.raises(_Stop):
        train_sweep(states, STEP, _data(), cfg=_cfg(checkpoint_every=20),
                    seeds=jnp.array(SEEDS), workdir=str(wd), writer=writer)
    writer.close()
    assert "30" not in os.listdir(wd / "checkpoints")         # resumes from step 20
    resumed, summary = _sweep(lrs, wd, checkpoint_every=20)
    assert summary["settings"][1]["diverged"] == full_summary["settings"][1]["diverged"]
    assert summary["alive"] == full_summary["alive"]
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(
        np.asarray(a), np.asarray(b)), resumed, full)                     # bit for bit


def test_every_setting_diverging_raises_one_line(tmp_path):
    with pytest.raises(NonFiniteError) as e:
        _sweep((HUGE_LR, HUGE_LR * 2), tmp_path, num_steps=50)
    msg = str(e.value)
    assert "every setting of the sweep diverged" in msg and "\n" not in msg
    assert "setting 0:" in msg and "setting 1:" in msg
    with pytest.raises(NonFiniteError, match="every setting of the sweep diverged"):
        _sweep((HUGE_LR, HUGE_LR * 2), tmp_path, num_steps=50)       # rerun: at once


def test_a_state_without_the_settings_axis_is_refused_before_compiling(tmp_path):
    states = _stack([_state(lr, i) for i, lr in enumerate(LRS)])
    with pytest.raises(ValueError, match=r"leading settings axis \[2, \.\.\.\]"):
        train_sweep(states, STEP, _data(), cfg=_cfg(), seeds=jnp.array([0, 1]),
                    workdir=str(tmp_path))
    assert not (tmp_path / "checkpoints").exists()
