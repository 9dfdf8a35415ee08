"""Smoke test of benchmarks/sweep_throughput.py: the --quick CLI (2 settings, a few steps)
writes a complete JSON record in both modes, the PyTorch peer computes the same loss,
gradients and Adam step as genjax at the settings' lr and beta, and the sweep trains each
setting as its single run does. Speed is not asserted."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run_quick  # noqa: E402

QUICK_SETTINGS = [{"optim.lr": 2e-3, "loss.beta": 0.5}, {"optim.lr": 2e-3, "loss.beta": 2.0}]


def _common_fields(r):
    assert r["benchmark"] == "sweep_throughput" and r["quick"] is True
    assert r["device"]["cores"] >= 1 and r["device"]["jax_devices"]
    for pkg in ("jax", "jaxlib", "torch", "genjax"):
        assert r["versions"][pkg]
    c = r["config"]
    assert c["batch_size"] == 128 and c["num_settings"] == 2
    assert c["settings"] == QUICK_SETTINGS
    assert c["timed_steps_per_setting"] == 20 and c["rounds"] == 2
    assert c["steps_per_block"] == 10
    assert c["threads"]["torch_num_threads"] >= 1
    assert positive_finite(r["wall_s_total"])
    p = r["peer_check"]
    assert p["passed"] is True and p["default_setting"]["passed"] is True
    # the default setting (lr 1e-3, beta 1) and the last quick setting (beta 2)
    assert [(s["lr"], s["beta"]) for s in p["settings"]] == [(2e-3, 2.0)]
    for row in (p["default_setting"], *p["settings"]):
        assert row["loss_rel_diff"] < 1e-5 and row["grad_max_rel_diff"] < 1e-4


@pytest.mark.slow          # the benchmark's command line, as the other benchmarks'
def test_quick_cli_sweep_vs_sequential(tmp_path):
    out = tmp_path / "results" / "sweep.json"        # the folder does not exist yet
    stdout, r = run_quick("benchmarks.sweep_throughput", out, timeout=300)
    assert "sweep / torch sequential" in stdout
    _common_fields(r)
    assert r["mode"] == "sweep_vs_sequential"
    arms = r["arms"]
    assert set(arms) == {"sweep", "genjax_sequential", "torch_sequential"}
    for name, arm in arms.items():
        assert positive_finite(arm["setting_steps_per_s"]), name
        assert arm["block_s"]["repeats"] == 2
        # settings x steps per block / the median block
        assert arm["setting_steps_per_s"] == pytest.approx(2 * 10 / arm["block_s"]["median_s"])
    for name in ("sweep", "genjax_sequential"):
        assert positive_finite(arms[name]["compile_s"])
    assert r["ratio_sweep_over_genjax_sequential"] == pytest.approx(
        arms["sweep"]["setting_steps_per_s"] / arms["genjax_sequential"]["setting_steps_per_s"])
    assert r["ratio_sweep_over_torch_sequential"] == pytest.approx(
        arms["sweep"]["setting_steps_per_s"] / arms["torch_sequential"]["setting_steps_per_s"])
    t = r["targets"]
    assert t["sweep_over_genjax_sequential"] == 1.2 and t["sweep_over_torch_sequential"] == 2.0
    assert isinstance(t["sweep_over_genjax_sequential_met"], bool)
    assert isinstance(t["sweep_over_torch_sequential_met"], bool)
    # same init, data order and keys: the sweep's settings are their single runs
    m = r["sweep_matches_sequential"]
    assert m["last_block_loss_max_rel_diff"] < 1e-4
    assert m["last_block_loss_sweep"][0] != pytest.approx(m["last_block_loss_sweep"][1])


@pytest.mark.slow
def test_quick_cli_gpu_mode_runs_on_cpu(tmp_path):
    out = tmp_path / "sweep_gpu.json"
    stdout, r = run_quick("benchmarks.sweep_throughput", out, "--gpu", timeout=300)
    assert "wall time" in stdout
    _common_fields(r)
    assert r["mode"] == "gpu_wall_time"
    assert set(r["arms"]) == {"sweep", "one_setting"}
    ratio = r["arms"]["sweep"]["block_s"]["median_s"] / r["arms"]["one_setting"]["block_s"][
        "median_s"]
    assert r["ratio_sweep_over_one_setting_wall"] == pytest.approx(ratio)
    t = r["targets"]
    assert t["gpu_sweep_over_one_setting_wall"] == 2.0
    assert t["applies"] == (r["config"]["jax_backend"] == "gpu")
    assert isinstance(t["gpu_sweep_over_one_setting_wall_met"], bool)


def test_grid():
    from benchmarks import sweep_throughput as st

    g = st.grid(16)
    assert len(g) == 16 and len({(s["optim.lr"], s["loss.beta"]) for s in g}) == 16
    assert sorted({s["optim.lr"] for s in g}) == pytest.approx([2.5e-4, 5e-4, 1e-3, 2e-3])
    assert sorted({s["loss.beta"] for s in g}) == pytest.approx([0.5, 1.0, 2.0, 4.0])
    assert len(st.grid(64)) == 64
    assert st.grid(1) == [{"optim.lr": 1e-3, "loss.beta": 1.0}]
    with pytest.raises(ValueError, match="not a square"):
        st.grid(12)
