"""Sweeps on several devices: the settings axis split over a ("settings", "data") mesh
gives each setting what one device gives, checkpoints resume sharded, and each setting
gets its own TensorBoard run folder.

The 8-device runs happen in one subprocess (this file run as a script, with 8 fake CPU
devices); the 1-device answers are computed in the test process."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import test_sweep_loop as toy  # noqa: E402  (the toy model: a 4-16-1 MLP, batch 16)

LRS = (0.02, 0.05, 0.08, 0.1, 0.12, 0.15, 0.18, 0.2)
NUM_STEPS = 40
# S -> the mesh (settings, data) that `sweep_mesh_shape` picks on 8 devices, batch 16.
MESHES = {8: (8, 1), 2: (2, 4), 3: (1, 8)}


def _cfg(**kw):
    return toy._cfg(num_steps=NUM_STEPS, **kw)


def _start(num):
    import jax.numpy as jnp
    return (toy._stack([toy._state(lr, i) for i, lr in enumerate(LRS[:num])]),
            jnp.arange(num, dtype=jnp.int32))


def _sweep(num, workdir, **kw):
    from genjax.train.sweep_loop import train_sweep
    states, seeds = _start(num)
    return train_sweep(states, toy.STEP, toy._data(), cfg=_cfg(**kw.pop("cfg", {})),
                       seeds=seeds, workdir=str(workdir), **kw)


def _run_on_eight_devices(out):
    """The subprocess: the sweeps of MESHES on 8 devices, and a sweep stopped at step 20
    (its last checkpoint at 10) and resumed. Writes out/results.json and out/<name>.npz (final params)."""
    import jax
    from genjax.train.sweep_loop import SweepWriter, train_sweep
    assert jax.device_count() == 8, jax.devices()
    results = {}

    def save(name, states, summary):
        params = jax.tree_util.tree_map(np.asarray, states.params)
        np.savez(os.path.join(out, f"{name}.npz"), **params)
        results[name] = {
            "mesh": summary["mesh"], "alive": summary["alive"],
            "metrics": [s["metrics"] for s in summary["settings"]],
            "specs": {k: list(v.sharding.spec) for k, v in states.params.items()},
            "other_specs": sorted({str(list(x.sharding.spec)) for x in
                                   jax.tree_util.tree_leaves((states.step, states.hparams,
                                                              states.opt_state))}),
            "devices": len(states.params["w1"].sharding.device_set)}

    for num in MESHES:
        save(f"S{num}", *_sweep(num, os.path.join(out, f"S{num}")))

    class Stop(Exception):
        pass

    class StopAt20(SweepWriter):          # stops before the step-20 checkpoint is saved
        def progress(self, step, per_setting, **kw):
            super().progress(step, per_setting, **kw)
            if step == 20:
                raise Stop

    wd = os.path.join(out, "stopped")
    states, seeds = _start(2)
    writer = StopAt20(wd, total_steps=NUM_STEPS)
    try:
        train_sweep(states, toy.STEP, toy._data(), cfg=_cfg(checkpoint_every=10),
                    seeds=seeds, workdir=wd, writer=writer)
    except Stop:
        writer.close()
    results["stopped_at"] = sorted(os.listdir(os.path.join(wd, "checkpoints")))
    save("resumed", *_sweep(2, wd, cfg={"checkpoint_every": 10}))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(results, f)


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    out = tmp_path_factory.mktemp("eight")
    flags = " ".join(f for f in os.environ.get("XLA_FLAGS", "").split()
                     if "device_count" not in f)
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="8", JAX_PLATFORMS="cpu",
               XLA_FLAGS=f"{flags} --xla_force_host_platform_device_count=8".strip())
    p = subprocess.run([sys.executable, __file__, str(out)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    with open(out / "results.json") as f:
        results = json.load(f)
    params = {k: dict(np.load(out / f"{k}.npz")) for k in results if k != "stopped_at"}
    return results, params, p.stdout


@pytest.mark.slow
def test_the_settings_axis_is_split_over_the_devices_and_batches_when_few(eight):
    from genjax.train.sharding import sweep_mesh_shape
    results, _, stdout = eight
    for num, (s, d) in MESHES.items():
        assert sweep_mesh_shape(num, 16, 8) == (s, d)
        r = results[f"S{num}"]
        assert r["mesh"] == {"settings": s, "data": d}
        assert r["devices"] == 8
        assert r["alive"] == [True] * num
        # every leaf of the returned stacked state is split along its settings axis (an
        # axis of size 1 may come back as P(): the same placement, replicated)
        ok = (["settings"],) if s > 1 else (["settings"], [])
        assert all(spec in ok for spec in r["specs"].values()), r["specs"]
        assert set(r["other_specs"]) <= {str(spec) for spec in ok}, r["other_specs"]
        assert f"[sweep] {num} settings on a mesh of settings {s} x data {d} " \
               "(8 of 8 devices)" in stdout
    # a batch that leaves some devices without an even share uses fewer of them
    assert sweep_mesh_shape(3, 12, 8) == (1, 4)
    assert sweep_mesh_shape(16, 5, 8) == (8, 1)
    assert sweep_mesh_shape(12, 16, 8) == (4, 2)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """The 8-setting sweep on this process's one device. Its first S settings are the
    S-setting sweep's: on CPU a vmapped program gives each setting its single run bit
    for bit, whatever S (tests/test_sweep_loop.py checks that)."""
    import jax
    assert jax.device_count() == 1
    states, summary = _sweep(8, tmp_path_factory.mktemp("one"))
    assert summary["mesh"] is None
    return states, summary


@pytest.mark.parametrize("num", sorted(MESHES))
@pytest.mark.slow
def test_eight_devices_give_each_setting_what_one_device_gives(eight, one_device, num):
    """With settings-only splitting (S=8: 8 x 1) each device runs the same per-setting
    program: equal bit for bit on an Intel Xeon, within one or two float32 ulp (9e-8
    absolute on weights of order 1e-2, observed) on an AMD EPYC, whose XLA:CPU kernels
    differ per shape; atol 5e-7 still catches a wrong batch or key. With the batch split over "data" (S=2: 2 x 4,
    S=3: 1 x 8) each batch mean is summed as 4 or 8 partial sums and an all-reduce, a
    different float32 order: after 40 SGD steps the weights (of order 1) differ by at
    most 1.2e-7 (a few ulp; observed), relatively up to 1.5e-5 on the smallest entries;
    atol 1e-6 + rtol 1e-5 leave 8x room and still catch a wrong batch or step key."""
    results, params, _ = eight
    states, summary = one_device
    got = params[f"S{num}"]
    exact = MESHES[num][1] == 1
    for k, v in states.params.items():
        want = np.asarray(v)[:num]
        if exact:
            np.testing.assert_allclose(got[k], want, rtol=0, atol=5e-7, err_msg=k)
        else:
            np.testing.assert_allclose(got[k], want, rtol=1e-5, atol=1e-6, err_msg=k)
    for mine, theirs in zip(summary["settings"][:num], results[f"S{num}"]["metrics"]):
        for k, v in mine["metrics"].items():
            assert theirs[k] == pytest.approx(v, rel=1e-6 if exact else 1e-5, abs=1e-7), k


@pytest.mark.slow
def test_a_sharded_sweep_resumes_from_its_checkpoint_bit_for_bit(eight):
    results, params, stdout = eight
    assert results["stopped_at"] == ["10"]
    assert "resumed the sweep from" in stdout and "at step 10" in stdout
    assert results["resumed"]["specs"] == results["S2"]["specs"]
    for k in params["S2"]:
        np.testing.assert_array_equal(params["resumed"][k], params["S2"][k], err_msg=k)


def _tb_scalars(folder):
    """{tag: [(step, value)]} from the TensorBoard event files in ``folder`` (TFRecord
    framing: u64 length, u32 crc, data, u32 crc; read with tensorboardX's protos)."""
    from tensorboardX.proto import event_pb2
    out = {}
    for name in sorted(os.listdir(folder)):
        with open(os.path.join(folder, name), "rb") as f:
            buf = f.read()
        i = 0
        while i < len(buf):
            (n,) = struct.unpack("<Q", buf[i:i + 8])
            event = event_pb2.Event.FromString(buf[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def test_each_setting_gets_its_own_tensorboard_run(tmp_path):
    names = ["000_lr=0.02", "001_lr=0.05", "002/odd"]
    _, summary = _sweep(3, tmp_path, setting_names=names, cfg={"steps_per_dispatch": 20})
    tb = tmp_path / "tensorboard"
    assert sorted(os.listdir(tb)) == ["000_lr=0.02", "001_lr=0.05", "002_odd"]
    with open(tmp_path / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    for s, folder in enumerate(sorted(os.listdir(tb))):
        scalars = _tb_scalars(tb / folder)
        mine = [r for r in rows if r["setting"] == s]
        assert [t for t, _ in scalars["train/loss"]] == [20, 40]
        for k in mine[0]:
            if k.startswith("train/"):
                assert [v for _, v in scalars[k]] == pytest.approx(
                    [r[k] for r in mine], rel=1e-6), (folder, k)
        assert scalars["train/lr"][-1][1] == pytest.approx(LRS[s])
        assert scalars["train/loss"][-1][1] == pytest.approx(
            summary["settings"][s]["metrics"]["loss"], rel=1e-6)


def test_only_process_zero_writes(tmp_path, monkeypatch):
    from genjax.train import sweep_loop
    monkeypatch.setattr(sweep_loop, "is_main_process", lambda: False)
    _, summary = _sweep(2, tmp_path, cfg={"steps_per_dispatch": 20})
    assert summary["alive"] == [True, True]
    assert sorted(os.listdir(tmp_path)) == ["checkpoints"]


def test_setting_names_must_name_every_setting(tmp_path):
    with pytest.raises(ValueError, match="setting_names has 1 names for 2 settings"):
        _sweep(2, tmp_path, setting_names=["a"])


if __name__ == "__main__":
    _run_on_eight_devices(sys.argv[1])
