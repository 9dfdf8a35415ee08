"""Smoke test of benchmarks/ddpm_throughput.py: the --quick CLI writes a complete JSON
record, with the peer check passed, and the PyTorch U-Net is the same size as genjax's.
Speed is not asserted; that the peer computes what genjax computes is
tests/test_ddpm_peer.py."""

import math

import pytest

pytest.importorskip("torch")

from tests.bench_cli import run_quick  # noqa: E402


@pytest.mark.slow
def test_quick_cli_writes_complete_json(tmp_path):
    out = tmp_path / "ddpm.json"
    _, r = run_quick("benchmarks.ddpm_throughput", out, timeout=900)
    assert r["params"]["genjax"] == r["params"]["torch"] > 0
    for k in ("train_steps_per_s", "ddim_images_per_s", "ancestral_images_per_s"):
        for side in ("genjax", "torch"):
            assert math.isfinite(r[k][side]) and r[k][side] > 0
    assert r["versions"]["jax"] and r["device"]["jax_devices"]
    # the default U-Net, batch 64, genjax's first step's draws (dropout 0.1 included)
    pc = r["peer_check"]
    assert pc["batch_size"] == 64 and pc["num_param_tensors"] == 128
    assert pc["loss_torch"] == pytest.approx(pc["loss_genjax"], rel=1e-5)
    assert pc["loss_genjax"] == pytest.approx(pc["step_loss_genjax"], rel=1e-6)
    assert pc["eps_max_rel_diff"] < 1e-4 and pc["grad_max_rel_diff"] < 1e-3
    assert pc["grad_norm_torch"] == pytest.approx(pc["grad_norm_genjax"], rel=1e-5)
    assert pc["update_max_abs_diff_over_lr"] < 1e-2


def test_torch_unet_has_the_same_parameter_count_as_genjax():
    from flax import nnx
    import jax
    from benchmarks.ddpm_throughput import make_torch_unet
    from configs import ddpm as ddpm_config
    from genjax.nn.unet import UNet
    for preset in (None, "gpu"):
        m = ddpm_config.get_config(preset).model
        net = nnx.eval_shape(lambda: UNet(
            (28, 28, 1), channels=m.channels, channel_mults=tuple(m.channel_mults),
            num_res_blocks=m.num_res_blocks, attention_resolutions=tuple(m.attention_resolutions),
            dropout=m.dropout, groups=m.groups, rngs=nnx.Rngs(0)))
        n_jax = sum(x.size for x in jax.tree_util.tree_leaves(nnx.state(net, nnx.Param)))
        n_torch = sum(p.numel() for p in make_torch_unet((28, 28, 1), m).parameters())
        assert n_jax == n_torch
