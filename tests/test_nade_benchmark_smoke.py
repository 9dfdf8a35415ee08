"""Smoke test of benchmarks/nade_throughput.py: the --quick CLI writes a complete JSON
record, and the PyTorch peers compute the genjax NADE log-likelihoods from the same
weights. Speed is not asserted."""

from __future__ import annotations


import numpy as np
import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run_quick  # noqa: E402


@pytest.mark.slow          # about 20 s: compiles and times every contender
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "results" / "nade.json"          # the folder does not exist yet
    stdout, r = run_quick("benchmarks.nade_throughput", out, "--batch-size=16", timeout=300)
    assert "O(HD) / naive" in stdout
    assert r["device"]["cores"] >= 1 and r["versions"]["torch"] and r["versions"]["jax"]
    c = r["config"]
    assert (c["dim"], c["hidden"], c["batch_size"]) == (784, 500, 16)
    # one jax CPU device per core (or what --cpu-devices asked for)
    assert c["jax_devices"] == len(r["device"]["jax_devices"])
    for k in ("genjax", "genjax_one_device", "genjax_naive", "genjax_sampling", "genjax_grad",
              "genjax_grad_autodiff", "torch_loop", "torch_cumsum", "torch_sampling"):
        assert positive_finite(r["examples_per_s"][k]), k
    ll = r["log_likelihood"]
    assert ll["fast_over_naive"] == pytest.approx(
        r["examples_per_s"]["genjax"] / r["examples_per_s"]["genjax_naive"])
    assert ll["best_torch"] in ("torch_loop", "torch_cumsum")
    assert positive_finite(r["sampling"]["genjax_images_per_s"])
    t = r["targets"]
    assert t["fast_over_naive"] == 20.0 and t["speedup_vs_torch"] == 1.5
    assert isinstance(t["fast_over_naive_met"], bool)
    assert isinstance(t["speedup_vs_torch_met"], bool)
    # all four implementations give the same log-likelihoods (nats, float32)
    peer = r["peer_check"]
    for k in ("genjax_naive", "torch_loop", "torch_cumsum"):
        assert peer[f"{k}_max_abs_diff_vs_genjax"] < 1e-2, (k, peer)
    assert -250 < peer["mean_log_likelihood_genjax"] < -50


def test_torch_peers_are_the_same_model():
    import jax.numpy as jnp

    from benchmarks import nade_throughput as nt
    from genjax.losses import autoregressive as ar

    rng = np.random.default_rng(0)
    d, h = 30, 12
    params = {"W": rng.normal(size=(h, d)), "c": rng.normal(size=h),
              "V": rng.normal(size=(d, h)), "b": rng.normal(size=d)}
    params = {k: v.astype(np.float32) for k, v in params.items()}
    x = (rng.random((8, d)) < 0.4).astype(np.float32)
    ref = np.asarray(ar.nade_log_likelihood(jnp.asarray(x), **params))
    loop_ll, cumsum_ll, sample = nt.torch_nade(params)
    import torch
    xt = torch.from_numpy(x)
    np.testing.assert_allclose(loop_ll(xt).numpy(), ref, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(cumsum_ll(xt).numpy(), ref, rtol=1e-5, atol=1e-4)
    s = sample(5, torch.Generator().manual_seed(0)).numpy()
    assert s.shape == (5, d) and set(np.unique(s)) <= {0.0, 1.0}
