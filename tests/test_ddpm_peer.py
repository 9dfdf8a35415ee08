"""The DDPM benchmark's PyTorch U-Net is genjax's U-Net: from the same weights it computes
the same eps prediction and the same gradients of the noise objective, and the
benchmark's torch training step is genjax's step (same loss, gradient norm, learning
rate, Adam update and EMA on the same batch, t, noise and dropout masks)."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import ml_collections  # noqa: E402
from flax import nnx  # noqa: E402

from benchmarks import ddpm_throughput as dt  # noqa: E402
from configs import ddpm as ddpm_config  # noqa: E402
from genjax.nn.group_norm import GroupNorm  # noqa: E402
from genjax.nn.unet import UNet  # noqa: E402

# three levels on a non-square image (8 x 12 -> 4 x 6 -> 2 x 3), attention at side 4,
# two residual blocks per level, a channel count (12) that 8 groups do not divide
SMALL = ml_collections.ConfigDict(dict(channels=12, channel_mults=(1, 2, 2), num_res_blocks=2,
                                       attention_resolutions=(4,), dropout=0.0, groups=8))
SHAPE = (8, 12, 3)


@pytest.fixture(scope="module")
def genjax_unet():
    """(graphdef, params) of SMALL with every parameter perturbed: biases start at 0 and
    norm scales at 1, so a bias or scale copied to the wrong place, or ignored, would
    not show at initialisation."""
    m = SMALL
    net = UNet(SHAPE, channels=m.channels, channel_mults=tuple(m.channel_mults),
               num_res_blocks=m.num_res_blocks,
               attention_resolutions=tuple(m.attention_resolutions), dropout=m.dropout,
               groups=m.groups, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(net)
    rng = np.random.default_rng(1)
    return graphdef, jax.tree_util.tree_map(
        lambda p: p + 0.2 * rng.standard_normal(p.shape).astype(np.float32), params)


def _nets(genjax_unet):
    """(graphdef, params, a fresh torch twin holding params)."""
    graphdef, params = genjax_unet
    return graphdef, params, dt.load_genjax_params(dt.make_torch_unet(SHAPE, SMALL), params)


def _inputs(shape=SHAPE, b=3, steps=1000):
    k1, k2 = jax.random.split(jax.random.key(7))
    x = jax.random.normal(k1, (b, *shape))
    noise = jax.random.normal(k2, (b, *shape))
    t = jnp.array([0, 417, steps - 1][:b] + [5] * max(0, b - 3))
    return x, t, noise


def _nchw(a):
    return torch.from_numpy(np.array(a).transpose(0, 3, 1, 2).copy())


def _max_rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))) / np.max(np.abs(np.asarray(a))))


def test_same_groups_and_epsilon_in_every_group_norm():
    net = nnx.eval_shape(lambda: UNet(
        SHAPE, channels=SMALL.channels, channel_mults=tuple(SMALL.channel_mults),
        num_res_blocks=SMALL.num_res_blocks,
        attention_resolutions=tuple(SMALL.attention_resolutions), groups=SMALL.groups,
        rngs=nnx.Rngs(0)))
    model = dt.make_torch_unet(SHAPE, SMALL)
    norms = [(path, mod) for path, mod in nnx.iter_graph(net) if isinstance(mod, GroupNorm)]
    assert len(norms) == sum(isinstance(mod, torch.nn.GroupNorm) for mod in model.modules())
    for path, mod in norms:
        twin = dt.torch_tensor(model, (*path, "scale"))
        owner = [m for m in model.modules() if getattr(m, "weight", None) is twin][0]
        assert (owner.num_groups, owner.num_channels) == (mod.num_groups, mod.num_features)
        assert owner.eps == mod.epsilon == 1e-6
    # 12 channels in 8 groups: both take gcd(8, 12) = 4 groups
    assert model.conv_in.out_channels == 12 and model.down[0].norm1.num_groups == 4


@pytest.mark.slow
def test_same_eps_prediction_and_gradients_from_the_same_weights(genjax_unet):
    graphdef, params, model = _nets(genjax_unet)
    x, t, noise = _inputs()
    model.eval()

    def loss(p):
        eps = nnx.merge(graphdef, p)(x, t)                         # no key: no dropout
        return jnp.mean((eps - noise) ** 2), eps

    (loss_j, eps_j), grads_j = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
    eps_t = model(_nchw(x), torch.from_numpy(np.array(t)).long())
    loss_t = ((eps_t - _nchw(noise)) ** 2).mean()
    loss_t.backward()
    eps_t = eps_t.detach().numpy().transpose(0, 2, 3, 1)
    assert float(jnp.std(eps_j)) > 0.1                # a non-trivial output
    assert _max_rel(eps_j, eps_t) < 1e-5
    assert float(loss_t.detach()) == pytest.approx(float(loss_j), rel=1e-5)
    g_j = dt.flat_params(grads_j)
    g_t = dt.torch_grads_as_genjax(model, list(g_j))
    assert len(g_j) == len(list(model.parameters()))
    for path in g_j:
        assert np.abs(g_j[path]).max() > 0, path
        assert _max_rel(g_j[path], g_t[path]) < 1e-4, path


@pytest.mark.slow
def test_downsampling_pads_as_xla_same_not_symmetrically(genjax_unet):
    """Sensitivity of the comparison above: torch's usual ``padding=1`` for a stride-2
    3x3 convolution (the old peer's) samples a grid shifted by a pixel."""
    graphdef, params, model = _nets(genjax_unet)
    x, t, _ = _inputs()
    model.eval()
    downs = [blk for blk in model.down if hasattr(blk, "pad")]
    assert [blk.pad for blk in downs] == [(0, 1, 0, 1)] * 2
    eps_j = nnx.merge(graphdef, params)(x, t)
    for blk in downs:
        blk.pad = (1, 1, 1, 1)
    with torch.no_grad():
        eps_t = model(_nchw(x), torch.from_numpy(np.array(t)).long()).numpy()
    assert _max_rel(eps_j, eps_t.transpose(0, 2, 3, 1)) > 1e-2


def test_weights_load_into_the_right_places(genjax_unet):
    _, params, model = _nets(genjax_unet)
    flat = dt.flat_params(params)
    back = dt.torch_params_as_genjax(model, list(flat))
    for path, a in flat.items():
        np.testing.assert_array_equal(back[path], a)
    k = flat[("down", 0, "conv1", "kernel")]                     # [kh, kw, in, out]
    assert model.down[0].conv1.weight[5, 2, 0, 1].item() == k[0, 1, 2, 5]
    d = flat[("mid", 1, "qkv", "kernel")]                        # [in, out]
    assert model.mid[1].qkv.weight[7, 3].item() == d[3, 7]
    assert sum(a.size for a in flat.values()) == sum(p.numel() for p in model.parameters())


def _step_config():
    """The quick preset's U-Net (dropout 0.1) on 16 x 16 crops, batch 8; warmup and EMA
    chosen so that one step moves the weights and the average measurably."""
    c = ddpm_config.get_config("quick")
    c.unlock()
    c.model.attention_resolutions = (8,)
    c.train.batch_size = 8
    c.optim.warmup_steps = 2                    # step 0 runs at lr / 2
    c.ema.decay = 0.9
    c.lock()
    return c


@pytest.mark.slow
def test_torch_training_step_is_genjax_step():
    from genjax import data as gdata
    config = _step_config()
    u8 = np.asarray(gdata.load(config.data.name).train)[:64, 6:22, 6:22]
    c = dt.peer_check(config, u8, seed=3)
    assert config.model.dropout == 0.1 and c["batch_size"] == 8
    # the check reproduces the draws of genjax's step: its loss is the step's loss
    assert c["loss_genjax"] == pytest.approx(c["step_loss_genjax"], rel=1e-6)
    # eps at initialisation: a loss near E[eps^2] = 1
    assert 0.5 < c["loss_genjax"] < 2.0
    assert c["eps_max_rel_diff"] < 1e-5
    assert c["loss_torch"] == pytest.approx(c["loss_genjax"], rel=1e-5)
    assert c["grad_max_rel_diff"] < 1e-4
    assert c["grad_norm_torch"] == pytest.approx(c["grad_norm_genjax"], rel=1e-5)
    assert c["grad_norm_genjax"] > config.optim.grad_clip     # so clipping is exercised
    assert c["lr"] == pytest.approx(config.optim.lr / 2, rel=1e-6)
    assert c["update_max_abs_diff_over_lr"] < 1e-2
    assert c["ema_move_max_abs_diff_over_lr_times_1_minus_decay"] < 1e-2
    assert c["update_fraction_left_out"] < 0.01
    assert math.isfinite(c["loss_torch"])
