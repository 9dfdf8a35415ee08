"""Smoke test of benchmarks/vae_throughput.py: the --quick CLI writes a complete JSON
record, and the PyTorch peer is the same model as genjax's (same loss, gradients and Adam
step from the same weights, binarised batch and noise). Speed is not asserted."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run_quick  # noqa: E402


@pytest.mark.slow          # the benchmark's command line, as the other benchmarks'
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "results" / "vae.json"          # the folder does not exist yet
    stdout, r = run_quick("benchmarks.vae_throughput", out, timeout=300)
    assert "genjax / torch" in stdout

    assert r["device"]["cores"] >= 1 and r["device"]["jax_devices"]
    assert "cpu_model" in r["device"]
    for pkg in ("jax", "jaxlib", "flax", "optax", "torch", "genjax"):
        assert r["versions"][pkg]
    assert r["config"]["batch_size"] == 128
    assert r["config"]["layers"] == [[784, 400], [400, 40], [20, 400], [400, 784]]

    for side in ("genjax", "torch"):
        for k in ("steps_per_s", "examples_per_s", "achieved_flops"):
            assert positive_finite(r[side][k]), (side, k, r[side][k])
        assert r[side]["examples_per_s"] == pytest.approx(128 * r[side]["steps_per_s"])
    assert positive_finite(r["genjax"]["compile_s"])
    assert positive_finite(r["ratio_genjax_over_torch"])
    assert r["ratio_genjax_over_torch"] == pytest.approx(
        r["genjax"]["steps_per_s"] / r["torch"]["steps_per_s"])

    # 2*128*(784*400 + 400*40 + 20*400 + 400*784) forward, the same for the weight
    # gradients, and 2*128*(400*40 + 20*400 + 400*784) for the input gradients
    assert r["flops_per_step"] == 419_840_000
    assert r["achieved_flops"] == pytest.approx(
        r["flops_per_step"] * r["genjax"]["steps_per_s"])
    for k in ("large", "step_shaped"):
        assert positive_finite(r["matmul_peak_flops"][k])
    for k in ("large_matmul", "step_matmuls"):
        assert positive_finite(r["fraction_of_peak"][k])
    assert r["fraction_of_peak"]["large_matmul"] == pytest.approx(
        r["achieved_flops"] / r["matmul_peak_flops"]["large"])

    t = r["targets"]
    assert t["speedup_vs_torch"] == 1.5 and t["fraction_of_peak"] == 0.7
    assert isinstance(t["speedup_vs_torch_met"], bool)
    assert isinstance(t["fraction_of_peak_met"], bool)
    assert r["peer_check"]["loss_abs_diff"] < 1e-2


def test_torch_peer_is_the_same_model():
    from benchmarks import vae_throughput as vt

    c = vt.peer_check(seed=3)
    # summed over 784 pixels the loss is ~550 nats at initialisation; float32 sums in a
    # different order agree to ~1e-5 relative
    assert math.isfinite(c["loss_genjax"]) and c["loss_genjax"] > 100
    assert c["loss_torch"] == pytest.approx(c["loss_genjax"], rel=1e-5)
    assert c["grad_max_rel_diff"] < 1e-4
    # Adam's first step is lr * g / (|g| + eps): it magnifies differences in gradients
    # that are ~0, hence the looser bound (relative to each tensor's largest entry)
    assert c["params_after_adam_step_max_rel_diff"] < 1e-3


def test_flop_count_and_layers():
    from benchmarks import common, vae_throughput as vt

    layers = vt.dense_layers(vt.model_config(), 784)
    assert layers == [(784, 400), (400, 40), (20, 400), (400, 784)]
    dots = common.dense_training_dots(128, layers)
    assert len(dots) == 11                        # 4 forward, 4 weight grads, 3 input grads
    fwd = 2 * 128 * sum(a * b for a, b in layers)
    assert sum(d.flops for d in dots) == 2 * fwd + (fwd - 2 * 128 * 784 * 400)
    with_first = common.dense_training_dots(128, layers, input_grad_of_first=True)
    assert sum(d.flops for d in with_first) == 3 * fwd
