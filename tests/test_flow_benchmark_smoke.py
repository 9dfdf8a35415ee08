"""Smoke test of benchmarks/flow_throughput.py: the --quick CLI writes a complete JSON
record for both cases (2-D MLP couplings, multi-scale conv), and the PyTorch peer
computes genjax's log-likelihoods, gradients and inverse from the same (perturbed)
weights. Speed is not asserted. The CLI test is marked slow
(``pytest -m slow tests/test_flow_benchmark_smoke.py``)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run, run_quick  # noqa: E402


@pytest.mark.slow          # about 25 s: loads, checks, compiles and times both cases
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "results" / "flow.json"          # the folder does not exist yet
    stdout, r = run_quick("benchmarks.flow_throughput", out, timeout=300)
    assert "genjax / torch" in stdout and "samples/s" in stdout
    assert r["benchmark"] == "flow_throughput" and r["quick"] is True
    assert r["device"]["cores"] >= 1 and r["device"]["jax_devices"]
    assert "load_average" in r["device"]
    for pkg in ("jax", "flax", "optax", "torch", "genjax"):
        assert r["versions"][pkg]
    assert r["config"]["cases"] == ["mlp", "conv"]
    assert set(r["cases"]) == {"mlp", "conv"}
    assert r["cases"]["mlp"]["example_shape"] == [2]
    assert r["cases"]["conv"]["example_shape"] == [8, 8, 1]
    one = r["config"]["torch_threads"] > 1          # one-thread arms where they differ
    arms = ("torch", "torch_fused_adam") + (("torch_1thread_fused_adam",) if one else ())
    sample_arms = ("torch",) + (("torch_1thread",) if one else ())
    for case, c in r["cases"].items():
        t, s = c["train"], c["sampling"]
        for side in ("genjax",) + arms:
            assert positive_finite(t[side]["steps_per_s"]), (case, side)
            assert t[side]["examples_per_s"] == pytest.approx(
                c["batch_size"] * t[side]["steps_per_s"])
        assert t["best_torch"] == max(arms, key=lambda a: t[a]["steps_per_s"])
        assert t["ratio_genjax_over_torch"] == pytest.approx(
            t["genjax"]["steps_per_s"] / t[t["best_torch"]]["steps_per_s"])
        assert set(t["ratio_genjax_over_each_arm"]) == set(arms)
        assert positive_finite(c["genjax_compile"]["lower_and_compile_s"])
        for side in ("genjax",) + sample_arms:
            assert positive_finite(s[side]["samples_per_s"]), (case, side)
        assert s["best_torch"] in sample_arms
        assert s["ratio_genjax_over_torch"] == pytest.approx(
            s["genjax"]["samples_per_s"] / s[s["best_torch"]]["samples_per_s"])
        # the same numbers from the same weights (float32)
        pc = c["peer_check"]
        assert pc["ok"] is True
        assert pc["log_likelihood_max_rel_diff"] < 1e-4, (case, pc)
        assert pc["grad_max_rel_diff"] < 1e-3, (case, pc)
        assert pc["inverse_max_rel_diff"] < 1e-3, (case, pc)
        assert pc["mean_log_likelihood_torch"] == pytest.approx(
            pc["mean_log_likelihood_genjax"], rel=1e-4)
    tg = r["targets"]
    assert tg["mlp_train_speedup_vs_torch"] == 1.5
    assert isinstance(tg["mlp_train_speedup_vs_torch_met"], bool)
    frac = r["other_processes_cpu_fraction"]
    assert frac is None or 0.0 <= frac <= 1.0


def test_bad_arguments_are_usage_errors():
    proc = run("benchmarks.flow_throughput", "--conv-steps=0", timeout=120)
    assert proc.returncode == 2 and "--conv-steps must be a positive integer" in proc.stderr
    proc = run("benchmarks.flow_throughput", "--cases=mlp,bogus", timeout=120)
    assert proc.returncode == 2 and "bogus" in proc.stderr


@pytest.mark.parametrize("case", ["mlp", pytest.param("conv", marks=pytest.mark.slow)])
def test_torch_peer_is_the_same_flow(case):
    """The peer check on the tiny flows of --quick passes; the perturbation moves the
    flow away from the identity; and the check has teeth: a torch flow with its first
    coupling's mask flipped computes other log-likelihoods."""
    import jax
    import numpy as np
    import torch

    from benchmarks import flow_throughput as ft

    config, ds, b = ft.load_case(case, quick=True)
    c = ft.peer_check(config, ds, b, seed=1)
    assert c["ok"], c
    assert c["log_likelihood_max_rel_diff"] < 1e-5 and c["grad_max_rel_diff"] < 1e-4

    x = np.asarray(ds.train[:8])
    key = jax.random.key(0)
    params = ft.perturbed(b.state.params, jax.random.key(1), ft.PERTURB[ds.kind])
    ll0 = np.asarray(b.log_prob_fn(b.state.params, x, key))
    ll1 = np.asarray(b.log_prob_fn(params, x, key))
    assert np.max(np.abs(ll1 - ll0)) > 1e-2 * np.max(np.abs(ll0))

    data = (ft._nchw((x + 0.5) / 256.0) if case == "conv"
            else torch.from_numpy(np.array(x, np.float32)))
    model = ft.torch_flow_from_genjax(config, ds, params)
    with torch.no_grad():
        right = model.log_likelihood(data).numpy()
        first = (model.layers if case == "mlp" else model.levels[0])[0]
        first.mask.copy_(1.0 - first.mask)
        first.keep.copy_(~first.keep)
        wrong = model.log_likelihood(data).numpy()
    # far outside the check's tolerance (1e-4 of the largest)
    assert np.max(np.abs(wrong - right)) > 1e-3 * np.max(np.abs(right))
