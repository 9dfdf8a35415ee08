"""Smoke test of benchmarks/recommend_throughput.py: the --quick CLI writes a complete JSON
record, and the PyTorch Mult-VAE is genjax's model (same loss, gradients, training step
and ranking metrics from the same weights). Speed is not asserted."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from tests.bench_cli import positive_finite, run_quick  # noqa: E402


@pytest.mark.slow   # about 30 s idle (60 s on a busy 2-core CPU): compiles, times, 2 children
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "results" / "recommend.json"     # the folder does not exist yet
    stdout, r = run_quick("benchmarks.recommend_throughput", out, timeout=300)
    assert "genjax / torch" in stdout and "peak RSS" in stdout
    assert r["benchmark"] == "recommend_throughput" and r["quick"] is True
    assert r["device"]["cores"] >= 1 and r["versions"]["torch"] and r["versions"]["jax"]
    c, d = r["config"], r["data"]
    assert (c["num_items"], c["batch_size"], c["hidden"], c["latent"]) == (1000, 500, [600],
                                                                          200)
    assert d["train_users"] == 2000 and d["clicks"] > 10 * 2000
    for part in ("training", "evaluation"):
        p = r[part]
        for k in ("genjax_users_per_s", "torch_users_per_s", "genjax_over_torch"):
            assert positive_finite(p[k]), (part, k)
        assert p["genjax_over_torch"] == pytest.approx(
            p["genjax_users_per_s"] / p["torch_users_per_s"])
    assert positive_finite(r["training"]["genjax_compile_s"])
    assert positive_finite(r["evaluation"]["evaluate_users_call_s"])
    for k in ("genjax_step_s", "torch_step_s", "genjax_densify_s", "torch_densify_s",
              "step_matmuls_s"):
        assert positive_finite(r["breakdown"][k]), k
    t = r["targets"]
    assert t["train_speedup_vs_torch"] == 1.5
    assert isinstance(t["train_speedup_vs_torch_met"], bool)
    # peak memory: one child per framework, each with only its own framework loaded
    m = r["memory"]
    for fw, own, other in (("genjax", "jax", "torch"), ("torch", "torch", "jax")):
        assert positive_finite(m[fw]["peak_rss_bytes"]), fw
        assert m[fw]["peak_rss_bytes"] >= m[fw]["setup_rss_bytes"] > 0
        assert m[fw][f"{own}_loaded"] is True and m[fw][f"{other}_loaded"] is False, m[fw]
    assert r["peer_check"]["ok"], r["peer_check"]


def _small_case():
    from benchmarks import recommend_throughput as rt
    from experiments import recommend as er
    from genjax.train import sweep_spec
    import jax

    train, foldin, heldout, _ = rt.make_data(60, 50, 0.2, 30)
    config = sweep_spec.apply(rt.model_config(16), {"model.hidden": (24,),
                                                     "model.latent": 8})
    b = er.build(config, "multvae", 50)
    return rt, config, b, jax.device_get(b.state.params), train, foldin, heldout


def test_torch_peer_is_the_same_model():
    rt, config, b, params0, train, foldin, heldout = _small_case()
    peer = rt.peer_check(config, b, params0, train, foldin, heldout)
    nn, st, ev = peer["no_noise"], peer["train_step"], peer["evaluation"]
    assert nn["loss_rel_diff"] <= 1e-5 and nn["grad_max_rel_diff"] <= 1e-4, nn
    assert st["loss_rel_diff"] <= 1e-5 and st["beta_genjax"] == pytest.approx(0.1), st
    assert st["params_after_adam_step_frac_differing"] < 1e-3, st
    assert ev["score_max_rel_diff"] <= 1e-5, ev
    for k in ("recall@20", "recall@50", "ndcg@100"):
        assert ev[f"torch_vs_evaluate_users_{k}_users_differing"] == 0, (k, ev)
        assert ev[f"genjax_hoisted_vs_evaluate_users_{k}_users_differing"] == 0, (k, ev)
    assert peer["ok"]


def test_torch_densify_matches_sparse_rows_and_scipy():
    import jax.numpy as jnp
    import torch

    from benchmarks import recommend_throughput as rt
    from genjax.data import clicks as clk

    m, stats = rt.generate_clicks(300, 80, density=0.15)
    assert stats["clicks"] == m.nnz and stats["clicks_per_user"]["min"] >= 5
    assert m.has_canonical_format and set(np.unique(m.data)) == {1.0}
    idx = np.random.default_rng(0).permutation(300)[:40]
    want = m[idx].toarray()
    got_t = rt.TorchRows(m).dense(torch.from_numpy(idx)).numpy()
    got_j = np.asarray(clk.SparseRows.from_csr(m, batch_size=40).take_rows(jnp.asarray(idx)))
    np.testing.assert_array_equal(got_t, want)
    np.testing.assert_array_equal(got_j, want)
    # the 80/20 split: disjoint, covering, int(0.2 n) held out per user
    f, h = rt.fold_in_split(m)
    assert (f.multiply(h)).nnz == 0 and (f + h - m).nnz == 0
    np.testing.assert_array_equal(np.diff(h.indptr), (0.2 * np.diff(m.indptr)).astype(int))
