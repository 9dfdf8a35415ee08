"""Smoke test of benchmarks/mcmc_throughput.py: the --quick CLI writes a complete JSON
record; the NumPy and PyTorch samplers replay genjax's MALA and HMC chains from the same
start and draws; and the peer check has teeth: a peer with the gradient's sign flipped or
its step size 5% off fails it. Speed is not asserted. The CLI test is marked slow
(``pytest -m slow tests/test_mcmc_benchmark_smoke.py``), as the other benchmarks' are."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run, run_quick  # noqa: E402

SETTINGS = {"mala": {"step_size": 0.01}, "hmc": {"step_size": 0.085, "num_leapfrog": 10}}


@pytest.mark.slow          # about 15 s: the peer check, compiles, and two timed rounds
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "results" / "mcmc.json"          # the folder does not exist yet
    stdout, r = run_quick("benchmarks.mcmc_throughput", out, timeout=300)
    assert "chain-steps/s" in stdout and "genjax / numpy" in stdout
    assert r["benchmark"] == "mcmc_throughput" and r["quick"] is True
    assert r["device"]["cores"] >= 1 and r["versions"]["torch"] and r["versions"]["jax"]
    c = r["config"]
    assert c["chains"] == 16 and c["jax_devices"] == len(r["device"]["jax_devices"])
    p = c["problem"]
    assert (p["num_data"], p["num_features"], p["num_classes"], p["num_params"]) == \
        (1797, 10, 10, 100)
    assert p["hessian_condition_number"] > 10
    assert c["torch_threads"] in (1, r["device"]["cores"])
    impls = ("genjax", "genjax_one_device", "numpy", "torch")
    for sampler in ("mala", "hmc"):
        s = r["samplers"][sampler]
        for impl in impls:
            assert positive_finite(s["chain_steps_per_s"][impl]), (sampler, impl)
            assert positive_finite(s["ess"][impl]["min"]), (sampler, impl)
            assert s["ess"][impl]["median"] >= s["ess"][impl]["min"]
            assert positive_finite(s["ess_per_s"][impl]["median"]), (sampler, impl)
            assert 0.3 < s["accept_rate"][impl] < 0.97, (sampler, impl, s["accept_rate"])
        for peer in ("numpy", "torch"):
            assert s["ratio_genjax_over"][peer] == pytest.approx(
                s["chain_steps_per_s"]["genjax"] / s["chain_steps_per_s"][peer])
        assert s["best_peer"] in ("numpy", "torch")
        assert s["gradients_per_s"]["genjax"] == pytest.approx(
            s["chain_steps_per_s"]["genjax"] * s["settings"]["gradients_per_step"])
        assert isinstance(r["targets"][f"{sampler}_met"], bool)
        pc = r["peer_check"][sampler]
        assert pc["genjax_decision_mismatches_vs_public_ratio"] == 0
        for peer in ("numpy", "torch"):
            assert pc[peer]["ok"] is True, pc
            assert pc[peer]["max_state_abs_diff"] < 1e-3
            assert pc[peer]["decisions_compared"] > 0
    assert r["peer_check"]["ok"] is True
    assert r["targets"]["speedup_vs_peers"] == 3.0
    frac = r["other_processes_cpu_fraction"]
    assert frac is None or 0.0 <= frac <= 1.0


def test_bad_arguments_are_usage_errors():
    proc = run("benchmarks.mcmc_throughput", "--chains=0", timeout=120)
    assert proc.returncode == 2 and "--chains must be a positive integer" in proc.stderr
    proc = run("benchmarks.mcmc_throughput", "--mala-step=-1", timeout=120)
    assert proc.returncode == 2 and "--mala-step must be positive" in proc.stderr


@pytest.fixture
def one_torch_thread():
    """Torch on one thread (on a busy 2-core machine its second OpenMP thread stalls)."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_peer_check_passes_and_detects_a_different_sampler(one_torch_thread):
    from benchmarks import mcmc_throughput as mt

    problem = mt.load_problem()
    x0, info = mt.laplace_start(problem, 8)
    assert x0.shape == (8, 10, 10) and info["widest_posterior_sd"] == pytest.approx(1.0)

    good = mt.peer_check(problem, x0, SETTINGS, steps=2)
    assert good["ok"], good
    for sampler in ("mala", "hmc"):
        assert 0.0 < good[sampler]["accepted_fraction"] < 1.0

    # the analytic NumPy gradient is the autograd / jax one (float64 vs float32 jax)
    vg = mt.numpy_value_and_grad(problem, np.float64)
    import jax
    import jax.numpy as jnp
    lp_j = mt.genjax_log_prob(problem)
    lp, g = vg(x0.astype(np.float64))
    np.testing.assert_allclose(np.asarray(lp_j(jnp.asarray(x0))), lp, rtol=1e-5)
    g_j = jax.grad(lambda w: lp_j(w).sum())(jnp.asarray(x0))
    np.testing.assert_allclose(np.asarray(g_j), g, rtol=1e-3, atol=1e-3)

    vg32 = mt.numpy_value_and_grad(problem)

    def flipped(w):
        lp, g = vg32(w)
        return lp, -g

    class SlowerTorch(mt.TorchPeer):                   # every step 5% longer
        def mala_step(self, state, z, u, h):
            return super().mala_step(state, z, u, 1.05 * h)

        def hmc_step(self, state, z, u, h, num_leapfrog):
            return super().hmc_step(state, z, u, 1.05 * h, num_leapfrog)

    bad = mt.peer_check(problem, x0, SETTINGS, steps=2,
                        peers={"numpy": mt.NumpyPeer(flipped),
                               "torch": SlowerTorch(mt.torch_value_and_grad(problem))})
    assert not bad["ok"]
    for sampler in ("mala", "hmc"):
        for peer in ("numpy", "torch"):
            assert not bad[sampler][peer]["ok"], (sampler, peer, bad[sampler][peer])
