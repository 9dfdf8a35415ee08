"""DDPM throughput: the default U-Net of configs/ddpm.py, genjax against PyTorch eager.

    python -m benchmarks.ddpm_throughput [--out=benchmarks/results/ddpm_throughput.json]
        [--preset=default] [--steps=20] [--repeats=3] [--sample-images=8] [--quick]
        [--torch-device=auto]

* training: steps/s of the noise objective (batch of the preset, gradient clipping, Adam
  with the preset's warmup, EMA update), genjax's compiled scan-of-steps loop
  (``genjax.train.loop.make_chunk``) against a straightforward PyTorch eager loop
  (``torch.optim.Adam``, ``clip_grad_norm_``, an EMA copy updated with
  ``torch._foreach_lerp_``, batches from a per-epoch ``randperm``), both from genjax's
  initial weights, interleaved in one run;
* sampling: images/s of the ancestral sampler (T = 1000 steps) and of DDIM (S = 50), one
  compiled ``lax.scan`` against a Python loop over steps under ``torch.no_grad()``.

The PyTorch U-Net (`make_torch_unet`) is genjax.nn.unet's function, layer by layer: time
embedding, residual blocks, group norm with genjax's groups and epsilon (1e-6), single-head
attention, dropout, stride-2 downsampling padded as XLA's "SAME" (0 before, 1 after),
nearest-neighbour upsampling. `load_genjax_params` copies a genjax parameter state into it
(conv kernels [kh, kw, in, out] -> [out, in, kh, kw], dense [in, out] -> [out, in]).

Peer check (`peer_check`, in the JSON as "peer_check", run before timing): from genjax's
initial weights, on one batch with the t, noise and dropout masks of genjax's step, both
compute the same eps prediction, loss and gradients, and one training step of each
(clip, Adam, EMA) moves the weights and the average alike. Targets: at least 1.3x
PyTorch on the CPU; on a GPU the JSON names the device.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from benchmarks.torch_twin import (to_genjax_layout, torch_tensor, flat_params,
                                   load_genjax_params, lr_factors, torch_grads_as_genjax,
                                   torch_params_as_genjax)
from configs import ddpm as ddpm_config
from experiments import ddpm as ddpm_experiment
from genjax import data as gdata
from genjax.diffusion import samplers
from genjax.train.ema import ema_params

DEFAULT_OUT = os.path.join("benchmarks", "results", "ddpm_throughput.json")
TARGET = 1.3


# ------------------------------------------------------------------------------ torch

def make_torch_unet(image_shape, m):
    """The PyTorch twin of `genjax.nn.unet.UNet` for the config section ``m`` (NCHW).

    Layer for layer the same function: its submodules carry genjax's names (``down[3].
    conv1``, ``mid[1].qkv``, ...) so that `load_genjax_params` copies a genjax parameter
    state by path; group norm with genjax's epsilon (1e-6, not torch's 1e-5); the
    stride-2 downsampling convolutions padded as XLA's "SAME" pads them (0 before, 1
    after on even sides: torch's ``padding=1`` would shift the sampling grid by a pixel);
    dropout as ``nn.Dropout``, or, for the peer check, with masks from ``model.
    dropout_masks(block_index, shape)`` (genjax's masks, so both drop the same units).
    """
    import torch
    from torch import nn
    from genjax.nn.loop_conv import conv_padding
    F = nn.functional
    eps = 1e-6                                            # genjax.nn.group_norm's

    def norm(c):
        return nn.GroupNorm(math.gcd(m.groups, c), c, eps=eps)

    class ResBlock(nn.Module):
        def __init__(self, cin, cout, tdim):
            super().__init__()
            self.norm1, self.conv1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.temb = nn.Linear(tdim, cout)
            self.norm2, self.conv2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
            self.drop = nn.Dropout(m.dropout)

        def forward(self, x, temb, mask=None):
            h = self.conv1(F.silu(self.norm1(x))) + self.temb(F.silu(temb))[:, :, None, None]
            h = F.silu(self.norm2(h))
            if mask is None:
                h = self.drop(h)
            else:                                     # genjax's _dropout, given its mask
                h = torch.where(mask(h.shape), h / (1.0 - m.dropout), 0.0)
            h = self.conv2(h)
            return (x if self.skip is None else self.skip(x)) + h

    class Attention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.norm, self.qkv, self.out = norm(c), nn.Linear(c, 3 * c), nn.Linear(c, c)

        def forward(self, x, temb=None, mask=None):
            b, c, h, w = x.shape
            y = self.norm(x).flatten(2).transpose(1, 2)                       # [B, HW, C]
            q, k, v = self.qkv(y).chunk(3, dim=-1)
            a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
            return x + self.out(a @ v).transpose(1, 2).reshape(b, c, h, w)

    class Downsample(nn.Module):
        def __init__(self, c, side_hw):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, stride=2)
            (ht, hb), (wl, wr) = conv_padding("SAME", (3, 3), (2, 2), side_hw)
            self.pad = (wl, wr, ht, hb)

        def forward(self, x, temb=None, mask=None):
            return self.conv(F.pad(x, self.pad))

    class Upsample(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x, temb=None, mask=None):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            h, w, c = image_shape
            ch, tdim = m.channels, 4 * m.channels
            self.channels = ch
            self.dropout_masks = None
            self.temb1, self.temb2 = nn.Linear(ch, tdim), nn.Linear(tdim, tdim)
            self.conv_in = nn.Conv2d(c, ch, 3, padding=1)
            down, skips, cur, side, side_w = [], [ch], ch, h, w
            levels = len(m.channel_mults)
            for i, mult in enumerate(m.channel_mults):
                for _ in range(m.num_res_blocks):
                    down.append(ResBlock(cur, ch * mult, tdim))
                    cur = ch * mult
                    if side in m.attention_resolutions:
                        down.append(Attention(cur))
                    skips.append(cur)
                if i < levels - 1:
                    down.append(Downsample(cur, (side, side_w)))
                    skips.append(cur)
                    side, side_w = side // 2, side_w // 2
            self.down = nn.ModuleList(down)
            self.mid = nn.ModuleList([ResBlock(cur, cur, tdim), Attention(cur),
                                      ResBlock(cur, cur, tdim)])
            up = []
            for i, mult in reversed(list(enumerate(m.channel_mults))):
                for _ in range(m.num_res_blocks + 1):
                    up.append(ResBlock(cur + skips.pop(), ch * mult, tdim))
                    cur = ch * mult
                    if side in m.attention_resolutions:
                        up.append(Attention(cur))
                if i > 0:
                    up.append(Upsample(cur))
                    side *= 2
            self.up = nn.ModuleList(up)
            self.norm_out, self.conv_out = norm(cur), nn.Conv2d(cur, c, 3, padding=1)

        def forward(self, x, t):
            half = self.channels // 2
            freqs = torch.exp(-math.log(10_000.0)
                              * torch.arange(half, dtype=torch.float32, device=x.device) / half)
            args = t.float()[:, None] * freqs[None]
            temb = self.temb2(F.silu(self.temb1(torch.cat([args.sin(), args.cos()], -1))))
            masks = self.dropout_masks
            blocks = iter(range(len(self.down) + len(self.mid) + len(self.up)))

            def mask(i):                                # block i's dropout, as genjax keys it
                return None if masks is None else functools.partial(masks, i)

            h = self.conv_in(x)
            hs = [h]
            for blk in self.down:
                h = blk(h, temb, mask(next(blocks)))
                if isinstance(blk, Attention):
                    hs[-1] = h
                else:
                    hs.append(h)
            for blk in self.mid:
                h = blk(h, temb, mask(next(blocks)))
            for blk in self.up:
                if isinstance(blk, ResBlock):
                    h = torch.cat([h, hs.pop()], 1)
                h = blk(h, temb, mask(next(blocks)))
            return self.conv_out(F.silu(self.norm_out(h)))

    return UNet()


def torch_setup(config, train_u8, device, params=None):
    """(model, ema, opt, alpha_bars, data): the twin U-Net (with genjax's ``params`` when
    given), an EMA copy of its parameters, Adam as configured, the schedule's alpha-bar
    and the uint8 data in NCHW on ``device``."""
    import torch
    d, o = config.diffusion, config.optim
    model = make_torch_unet(train_u8.shape[1:], config.model)
    if params is not None:
        load_genjax_params(model, params)
    model = model.to(device)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.b1, o.b2), eps=o.eps)
    from genjax.diffusion import make_schedule
    ab = torch.tensor(np.asarray(make_schedule(d.schedule, d.num_steps).alpha_bars),
                      device=device)
    data = torch.from_numpy(np.array(train_u8.transpose(0, 3, 1, 2), order="C")).to(device)
    return model, ema, opt, ab, data


class TorchTrainer:
    """genjax's DDPM training step, eagerly: the noise objective on x0 = u8 / 127.5 - 1,
    gradients clipped to ``optim.grad_clip`` in global norm, Adam at genjax's learning
    rate for the step (warmup included), then the EMA. ``step`` draws t and the noise
    unless given them; dropout draws its own masks unless ``model.dropout_masks`` is
    set. Only what the benchmark's configs use is written: Adam, eps prediction,
    "symmetric" data."""

    def __init__(self, config, model, ema, opt, ab):
        o = config.optim
        if o.name != "adam" or o.weight_decay:
            raise ValueError("the torch peer is written for Adam without weight decay")
        if config.diffusion.prediction != "eps" or config.data.preprocess != "symmetric":
            raise ValueError("the torch peer is written for eps prediction on symmetric data")
        self.model, self.ema, self.opt, self.ab = model, ema, opt, ab
        self.lr, self.factors = float(o.lr), lr_factors(config)
        self.clip, self.decay = float(o.grad_clip), float(config.ema.decay)
        self.T, self.count = int(config.diffusion.num_steps), 0

    def loss_and_grads(self, x0, t=None, noise=None):
        """The noise objective on x0 [B, C, H, W] in [-1, 1] and its gradients (in the
        parameters' .grad); returns the loss tensor."""
        import torch
        if t is None:
            t = torch.randint(0, self.T, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0) if noise is None else noise
        a = self.ab[t][:, None, None, None]
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        loss = ((self.model(xt, t) - noise) ** 2).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        return loss

    def update(self):
        """Clips the gradients, takes the Adam step and updates the EMA; returns the
        gradients' global norm before clipping."""
        import torch
        params = list(self.model.parameters())
        norm = (torch.nn.utils.clip_grad_norm_(params, self.clip) if self.clip > 0 else
                torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad)
                                                      for p in params])))
        lr = self.lr * float(self.factors[min(self.count, len(self.factors) - 1)])
        for g in self.opt.param_groups:
            g["lr"] = lr
        self.opt.step()
        self.count += 1
        with torch.no_grad():
            torch._foreach_lerp_(self.ema, [p.detach() for p in params], 1 - self.decay)
        return norm

    def step(self, x0, t=None, noise=None):
        """One training step; returns (loss, gradient norm before clipping) tensors."""
        loss = self.loss_and_grads(x0, t, noise)
        return loss, self.update()


def torch_train_runner(config, train_u8, steps, device, params=None):
    """run(): ``steps`` eager training steps from genjax's initial ``params``, batches
    drawn without replacement from a fresh randperm each epoch (as genjax's loop does);
    returns the last loss."""
    import torch
    model, ema, opt, ab, data = torch_setup(config, train_u8, device, params)
    trainer = TorchTrainer(config, model, ema, opt, ab)
    b, n = int(config.train.batch_size), len(train_u8)
    holder = {"perm": torch.randperm(n, device=device), "pos": 0}

    def run():
        model.train()
        for _ in range(steps):
            if holder["pos"] + b > n:
                holder["perm"], holder["pos"] = torch.randperm(n, device=device), 0
            idx = holder["perm"][holder["pos"]:holder["pos"] + b]
            holder["pos"] += b
            loss, _ = trainer.step(data[idx].float() / 127.5 - 1.0)
        loss = float(loss.detach())
        if not math.isfinite(loss):
            raise FloatingPointError("torch loss became non-finite in the benchmark")
        return loss

    return run, sum(p.numel() for p in model.parameters())


def torch_sampler(config, train_u8, n, device, *, ddim_steps=None, params=None):
    """Ancestral (ddim_steps None; "beta" variance, clipped x0) or DDIM (eta = 0)."""
    import torch
    model, _, _, _, _ = torch_setup(config, train_u8, device, params)
    model.eval()
    from genjax.diffusion import make_schedule
    s = make_schedule(config.diffusion.schedule, config.diffusion.num_steps)
    g = {k: torch.tensor(np.asarray(v), device=device) for k, v in s._asdict().items()}
    T = s.num_steps
    log_var = torch.log(torch.cat([g["posterior_variance"][1:2], g["betas"][1:]]))
    taus = samplers.ddim_steps(ddim_steps, T) if ddim_steps else None

    @torch.no_grad()
    def run():
        h, w, c = train_u8.shape[1:]
        x = torch.randn((n, c, h, w), device=device)
        steps = range(T - 1, -1, -1) if taus is None else range(len(taus) - 1, -1, -1)
        for i in steps:
            t = int(i if taus is None else taus[i])
            tt = torch.full((n,), t, device=device)
            eps = model(x, tt)
            ab = g["alpha_bars"][t]
            x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
            if taus is None:
                mean = g["posterior_mean_coef_x0"][t] * x0 + g["posterior_mean_coef_xt"][t] * x
                x = mean + (torch.exp(0.5 * log_var[t]) * torch.randn_like(x) if t > 0 else 0)
            else:
                eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()
                ab_prev = g["alpha_bars"][int(taus[i - 1])] if i > 0 else torch.tensor(1.0)
                x = ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        return float(x.mean())

    return run


# -------------------------------------------------------------------------- peer check

def _max_rel(a, b) -> float:
    """max |a - b| / max |a| (a the reference)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30))


def genjax_dropout_masks(key, num_blocks: int, rate: float):
    """masks(i, nchw_shape) -> bool tensor: the keep-mask genjax's U-Net draws in block
    i (of down + mid + up) from dropout key ``key`` (genjax.nn.unet), in NCHW."""
    import torch
    from genjax import random as grandom
    keys = jax.random.split(key, num_blocks)

    def masks(i, shape):
        b, c, h, w = shape
        keep = grandom.bernoulli(keys[i], 1.0 - rate, (b, h, w, c))
        return torch.from_numpy(np.asarray(keep).transpose(0, 3, 1, 2).copy())

    return masks


def peer_check(config=None, train_u8: np.ndarray | None = None, *, seed: int = 0) -> dict:
    """genjax's U-Net and training step against the torch twin from the same (genjax's
    initial) weights, on one batch with the draws genjax's step makes from
    ``jax.random.key(seed)`` (t, noise and the dropout masks, given to torch):

    * the eps prediction without dropout (as sampled), relative to its largest entry;
    * the loss, and every parameter's gradient (before clipping), relative to each
      tensor's largest entry; the gradients' global norm;
    * after one full step of each (clip, Adam at the step's learning rate, EMA): the
      parameter updates, in units of the learning rate, and the EMA's move (ema - w0),
      in units of (1 - decay) * lr. Adam's first update is lr * g / (|g| + eps), about
      lr * sign(g): where a gradient is ~0 in exact arithmetic (an attention key's bias:
      softmax ignores a shift of the logits) float32 noise decides its sign, so updates
      are compared where |g| >= 1e-5 of the tensor's largest, and the fraction of
      entries left out is reported."""
    import torch
    from genjax import random as grandom
    from genjax.data import transforms
    from genjax.diffusion import forward
    config = config or ddpm_config.get_config()
    if train_u8 is None:
        train_u8 = np.asarray(gdata.load(config.data.name).train)
    shape, b = train_u8.shape[1:], int(config.train.batch_size)
    batch = jnp.asarray(train_u8[:b])
    graphdef, state, step, schedule = ddpm_experiment.build(config, shape)
    key = jax.random.key(seed)
    # the draws of experiments.ddpm.build's loss_fn and losses.ddpm.noise_loss
    _, k_loss, k_drop = jax.random.split(key, 3)
    k_t, k_noise = jax.random.split(k_loss)
    t = jax.random.randint(k_t, (b,), 0, schedule.num_steps)
    noise = grandom.normal(k_noise, batch.shape)
    x0 = transforms.preprocess(key, batch, config.data.preprocess)
    xt = forward.q_sample(schedule, x0, t, noise)

    def loss_of(params):
        return jnp.mean((nnx.merge(graphdef, params)(xt, t, key=k_drop) - noise) ** 2)

    @jax.jit
    def genjax_side(state):
        eps = nnx.merge(graphdef, state.params)(xt, t)
        loss, grads = jax.value_and_grad(loss_of)(state.params)
        new, metrics = step(state, batch, key)
        return eps, loss, grads, new, metrics

    params0 = jax.tree_util.tree_map(jnp.copy, state.params)
    eps_j, loss_j, grads_j, new, metrics = genjax_side(state)
    paths = list(flat_params(params0))

    model, ema, opt, ab, _ = torch_setup(config, train_u8, "cpu", params0)
    nchw = lambda v: torch.from_numpy(np.array(v).transpose(0, 3, 1, 2).copy())  # noqa: E731
    t_t = torch.from_numpy(np.array(t)).long()
    model.eval()
    with torch.no_grad():
        eps_t = model(nchw(xt), t_t).numpy().transpose(0, 2, 3, 1)
    model.train()
    n_blocks = len(model.down) + len(model.mid) + len(model.up)
    model.dropout_masks = genjax_dropout_masks(k_drop, n_blocks, config.model.dropout)
    trainer = TorchTrainer(config, model, ema, opt, ab)
    loss_t = float(trainer.loss_and_grads(nchw(x0), t_t, nchw(noise)).detach())
    grads_t = torch_grads_as_genjax(model, paths)                 # before clipping
    norm_t = float(trainer.update())
    model.dropout_masks = None

    g_j = flat_params(grads_j)
    grad_diff = {p: _max_rel(g_j[p], grads_t[p]) for p in paths}
    lr, decay = float(metrics["lr"]), float(config.ema.decay)
    w0, w1 = flat_params(params0), flat_params(new.params)
    w1_t = torch_params_as_genjax(model, paths)
    ema_j = flat_params(ema_params(new))
    ema_t = {p: to_genjax_layout(e.detach().numpy())
             for p, e in zip(paths, _ema_in_order(model, ema, paths))}
    upd, ema_move, left_out, total = 0.0, 0.0, 0, 0
    for p in paths:
        live = np.abs(g_j[p]) >= 1e-5 * np.abs(g_j[p]).max()
        left_out, total = left_out + int((~live).sum()), total + live.size
        d = np.abs((w1[p] - w0[p]) - (w1_t[p] - w0[p]))[live] / lr
        e = np.abs((ema_j[p] - w0[p]) - (ema_t[p] - w0[p]))[live] / ((1 - decay) * lr)
        upd = max(upd, float(d.max(initial=0.0)))
        ema_move = max(ema_move, float(e.max(initial=0.0)))
    return {
        "seed": seed, "batch_size": b, "num_param_tensors": len(paths),
        "eps_max_rel_diff": _max_rel(eps_j, eps_t),
        "loss_genjax": float(loss_j), "loss_torch": loss_t,
        "loss_abs_diff": abs(float(loss_j) - loss_t),
        "step_loss_genjax": float(metrics["loss"]),
        "grad_max_rel_diff": max(grad_diff.values()),
        "grad_worst_tensor": ".".join(map(str, max(grad_diff, key=grad_diff.get))),
        "grad_norm_genjax": float(metrics["grad_norm"]), "grad_norm_torch": norm_t,
        "lr": lr, "ema_decay": decay,
        "update_max_abs_diff_over_lr": upd,
        "ema_move_max_abs_diff_over_lr_times_1_minus_decay": ema_move,
        "update_fraction_left_out": left_out / total,
    }


def _ema_in_order(model, ema, paths):
    """The EMA tensors (kept in ``model.parameters()`` order) in the order of ``paths``."""
    index = {id(p): i for i, p in enumerate(model.parameters())}
    return [ema[index[id(torch_tensor(model, p))]] for p in paths]


# ----------------------------------------------------------------------------- genjax

def genjax_train_runner(config, train_u8, steps):
    graphdef, state, step, _ = ddpm_experiment.build(config, train_u8.shape[1:])
    run, timings, state = common.compiled_chunk(step, state, train_u8,
                                                batch_size=config.train.batch_size,
                                                steps=steps, seed=config.seed)
    compile_s = timings["lower_and_compile_s"]
    n_params = sum(x.size for x in jax.tree_util.tree_leaves(state.params))
    # a copy for the samplers: the training chunk donates (deletes) the state's buffers
    sample_params = jax.tree_util.tree_map(jnp.copy, ema_params(state))
    return run, compile_s, n_params, graphdef, sample_params


def genjax_sampler(config, graphdef, params, train_u8, n, *, ddim: bool):
    fns = ddpm_experiment.make_samplers(
        config, graphdef, params,
        __import__("genjax").diffusion.make_schedule(config.diffusion.schedule,
                                                     config.diffusion.num_steps),
        train_u8.shape[1:])
    fn, key = fns["ddim" if ddim else "ancestral"], jax.random.key(0)
    t = time.perf_counter()
    jax.block_until_ready(fn(key, n))
    return (lambda: jax.block_until_ready(fn(key, n))), time.perf_counter() - t


# -------------------------------------------------------------------------- benchmark

def run_benchmark(*, preset="default", steps=20, repeats=3, sample_images=8, quick=False,
                  torch_on="auto"):
    import torch
    torch.set_num_threads(common.core_count())
    from benchmarks.vae_throughput import torch_device
    device = torch_device(torch_on)
    config = ddpm_config.get_config(None if preset == "default" else preset)
    if quick:
        config.unlock()
        config.diffusion.num_steps = 50
        config.eval.ddim_steps = 10
        config.lock()
    train_u8 = np.asarray(gdata.load(config.data.name).train)
    b = int(config.train.batch_size)

    peer = peer_check(config, train_u8, seed=config.seed)
    g_train, compile_s, g_params, graphdef, params = genjax_train_runner(config, train_u8, steps)
    # both sides start from genjax's initial weights (the EMA copy is still equal to them)
    host_params = jax.device_get(params)
    t_train, t_params = torch_train_runner(config, train_u8, steps, device, host_params)
    g_anc, g_anc_compile = genjax_sampler(config, graphdef, params, train_u8, sample_images,
                                          ddim=False)
    g_ddim, g_ddim_compile = genjax_sampler(config, graphdef, params, train_u8, sample_images,
                                            ddim=True)
    before = {}
    if common.before_arm_wanted(quick):
        with common.xla_defaults():
            before["before_train"] = genjax_train_runner(config, train_u8, steps)[0]
            before["before_ddim"] = genjax_sampler(config, graphdef, params, train_u8,
                                                   sample_images, ddim=True)[0]
            before["before_ancestral"] = genjax_sampler(config, graphdef, params, train_u8,
                                                        sample_images, ddim=False)[0]
    contenders = {
        **before,
        "genjax_train": g_train, "torch_train": t_train,
        "genjax_ddim": g_ddim,
        "torch_ddim": torch_sampler(config, train_u8, sample_images, device,
                                    ddim_steps=config.eval.ddim_steps, params=host_params),
        "genjax_ancestral": g_anc,
        "torch_ancestral": torch_sampler(config, train_u8, sample_images, device,
                                         params=host_params),
    }
    with common.CpuContention() as contention:
        times = common.interleaved(contenders, repeats=repeats, warmup=1)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rate = {"train_steps_per_s": {s: steps / med[f"{s}_train"] for s in ("genjax", "torch")}}
    for kind in ("ddim", "ancestral"):
        rate[f"{kind}_images_per_s"] = {s: sample_images / med[f"{s}_{kind}"]
                                        for s in ("genjax", "torch")}
    ratios = {k: v["genjax"] / v["torch"] for k, v in rate.items()}
    extra = {}
    if before:
        steady = {"train_steps_per_s": steps / med["before_train"],
                  "ddim_images_per_s": sample_images / med["before_ddim"],
                  "ancestral_images_per_s": sample_images / med["before_ancestral"]}
        extra = {"genjax_xla_defaults": {
            "what": "genjax compiled with XLA's default options and the weight gradients "
                    "loop_conv picks for them (the code before genjax.xla)", **steady},
            "ratios_genjax_over_xla_defaults": {k: rate[k]["genjax"] / v
                                                for k, v in steady.items()}}
    return {
        **extra,
        "benchmark": "ddpm_throughput", "quick": quick, "preset": preset,
        "config": {"model": config.model.to_dict(), "batch_size": b,
                   "diffusion_steps": config.diffusion.num_steps,
                   "ddim_steps": config.eval.ddim_steps, "steps_per_block": steps,
                   "sample_images": sample_images, "repeats": repeats,
                   "jax_backend": jax.default_backend(), "torch_device": device},
        "params": {"genjax": int(g_params), "torch": int(t_params)},
        "compile_s": {"train": compile_s, "ancestral": g_anc_compile, "ddim": g_ddim_compile},
        **rate,
        "ratios_genjax_over_torch": ratios,
        "block_s": {k: common.summarize(v) for k, v in times.items()},
        "other_processes_cpu_fraction": contention.fraction,
        "target": {"ratio": TARGET, "met": {k: bool(v >= TARGET) for k, v in ratios.items()}},
        "peer_check": peer,
    }


def summary_text(r):
    c = r["config"]
    lines = [f"DDPM U-Net ({r['params']['genjax']:,} params; torch {r['params']['torch']:,}), "
             f"jax on {c['jax_backend']}, torch on {c['torch_device']}, batch {c['batch_size']}"]
    for k, unit in (("train_steps_per_s", "train steps/s"),
                    ("ddim_images_per_s", f"DDIM S={c['ddim_steps']} images/s"),
                    ("ancestral_images_per_s", f"ancestral T={c['diffusion_steps']} images/s")):
        v = r[k]
        lines.append(f"  {unit:<28} genjax {v['genjax']:10.2f}  torch {v['torch']:10.2f}  "
                     f"-> {r['ratios_genjax_over_torch'][k]:.2f}x")
    if "genjax_xla_defaults" in r:
        b = r["genjax_xla_defaults"]
        lines.append("  genjax with XLA's defaults (before): " + ", ".join(
            f"{b[k]:.2f} ({r['ratios_genjax_over_xla_defaults'][k]:.2f}x now)"
            for k in ("train_steps_per_s", "ddim_images_per_s", "ancestral_images_per_s")))
    lines.append(f"  target {r['target']['ratio']}x: " + ", ".join(
        f"{k.split('_')[0]} {'met' if m else 'NOT met'}" for k, m in r["target"]["met"].items()))
    pc = r.get("peer_check")
    if pc:
        lines.append(f"  peer check (same weights, batch, t, noise, dropout masks): loss "
                     f"{pc['loss_genjax']:.6f} vs {pc['loss_torch']:.6f}, gradients within "
                     f"{pc['grad_max_rel_diff']:.1e} (relative), step updates within "
                     f"{pc['update_max_abs_diff_over_lr']:.1e} lr")
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    p = common.base_parser("benchmarks.ddpm_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved rounds (default 3; 1 with --quick)",
                           quick_help="T = 50, a few steps: seconds, for smoke tests")
    p.add_argument("--preset", default="default", help="configs/ddpm.py preset")
    p.add_argument("--steps", type=int, default=None, help="train steps per block (20; 2 quick)")
    p.add_argument("--sample-images", type=int, default=None,
                   help="images per sampling call (default 8; 2 with --quick)")
    p.add_argument("--torch-device", default="auto", choices=("auto", "cpu", "cuda"))
    return common.parse_positive(p, argv, ("repeats", "steps", "sample_images"))


def main(argv=None):
    a = parse_args(argv)
    r = run_benchmark(preset=a.preset, steps=a.steps or (2 if a.quick else 20),
                      repeats=a.repeats or (1 if a.quick else 3),
                      sample_images=a.sample_images or (2 if a.quick else 8), quick=a.quick,
                      torch_on=a.torch_device)
    return common.finish(a.out, r, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
