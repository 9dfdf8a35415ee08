"""Smoke test of benchmarks/gan_throughput.py: the --quick CLI writes a complete JSON
record, in which the PyTorch peer is checked to be the same DCGAN as genjax's (same
losses, gradients and training step from the same weights and draws). Speed is not
asserted. The heavy test is marked slow (``pytest -m slow tests/test_gan_benchmark_smoke.py``)."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run, run_quick  # noqa: E402


@pytest.mark.slow          # about 35 s: compiles both sides and times them
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "results" / "gan.json"          # the folder does not exist yet
    stdout, r = run_quick("benchmarks.gan_throughput", out, "--steps=2", timeout=300)
    assert "genjax / torch" in stdout
    assert r["benchmark"] == "gan_throughput" and r["quick"] is True
    assert r["device"]["cores"] >= 1 and r["device"]["jax_devices"]
    for pkg in ("jax", "flax", "optax", "torch", "genjax"):
        assert r["versions"][pkg]
    c = r["config"]
    assert c["batch_size"] == 64 and c["image_shape"] == [28, 28, 1]
    assert c["dataset"] == "mnist5k" and c["objective"] == "non_saturating"
    for side in ("genjax", "torch"):
        assert positive_finite(r[side]["steps_per_s"]), side
        assert r[side]["examples_per_s"] == pytest.approx(64 * r[side]["steps_per_s"])
    assert positive_finite(r["genjax"]["lower_and_compile_s"])
    assert r["ratio_genjax_over_torch"] == pytest.approx(
        r["genjax"]["steps_per_s"] / r["torch"]["steps_per_s"])
    # D update: G forward on 64 + D forward, weight and input gradients on 128; G update:
    # G and D forward, D input gradients, G weight and input gradients on 64
    assert r["flops_per_step"] == 2_674_982_912
    assert r["achieved_flops"]["genjax"] == pytest.approx(
        r["flops_per_step"] * r["genjax"]["steps_per_s"])
    assert positive_finite(r["jax_matmul_peak_flops"]["large"])
    assert r["genjax_fraction_of_jax_matmul_peak"] == pytest.approx(
        r["achieved_flops"]["genjax"] / r["jax_matmul_peak_flops"]["large"])
    assert r["targets"]["speedup_vs_torch"] == 1.5
    assert isinstance(r["targets"]["speedup_vs_torch_met"], bool)
    frac = r["other_processes_cpu_fraction"]
    assert frac is None or 0.0 <= frac <= 1.0
    # the PyTorch peer is the same DCGAN (the record's peer check, seed 0)
    c = r["peer_check"]
    assert c["d_loss_abs_diff"] < 1e-5 and c["g_loss_abs_diff"] < 1e-5
    # at initialisation D is unsure: both losses are near log 4 and log 2
    assert c["d_loss_genjax"] == pytest.approx(math.log(4), abs=0.1)
    assert c["g_loss_genjax"] == pytest.approx(math.log(2), abs=0.1)
    assert c["d_loss_torch"] == pytest.approx(c["d_loss_genjax"], rel=1e-5)
    assert c["g_loss_torch"] == pytest.approx(c["g_loss_genjax"], rel=1e-5)
    assert c["d_grad_max_rel_diff"] < 1e-3 and c["g_grad_max_rel_diff"] < 1e-3
    # one full step (D update, G update against the new D, EMA) lands on the same weights
    assert c["d_params_after_step_max_rel_diff"] < 1e-3
    assert c["g_params_after_step_max_rel_diff"] < 1e-3
    assert c["g_ema_after_step_max_rel_diff"] < 1e-3


def test_bad_arguments_are_usage_errors():
    proc = run("benchmarks.gan_throughput", "--steps=0", timeout=120)
    assert proc.returncode == 2 and "--steps must be a positive integer" in proc.stderr
