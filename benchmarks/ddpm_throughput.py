"""DDPM throughput: the default U-Net of configs/ddpm.py, genjax against PyTorch eager.

    python -m benchmarks.ddpm_throughput [--out=benchmarks/results/ddpm_throughput.json]
        [--preset=default] [--steps=20] [--repeats=3] [--sample-images=8] [--quick]
        [--torch-device=auto]

* training: steps/s of the noise objective (batch of the preset, Adam, EMA update),
  genjax's compiled scan-of-steps loop (``genjax.train.loop.make_chunk``) against a
  straightforward PyTorch eager loop (``torch.optim.Adam``, an EMA copy updated with
  ``torch._foreach_lerp_``), interleaved in one run;
* sampling: images/s of the ancestral sampler (T = 1000 steps) and of DDIM (S = 50), one
  compiled ``lax.scan`` against a Python loop over steps under ``torch.no_grad()``.

The PyTorch U-Net is the same architecture, layer by layer (time embedding, residual
blocks, group norm, single-head attention, dropout, strided-conv down / nearest-up
sampling); the JSON records both parameter counts, which must agree. Targets: at least
1.3x PyTorch on the CPU; on a GPU the JSON names the device.
"""

from __future__ import annotations

import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from configs import ddpm as ddpm_config
from experiments import ddpm as ddpm_experiment
from genjax import data as gdata
from genjax.diffusion import samplers
from genjax.train.ema import ema_params

DEFAULT_OUT = os.path.join("benchmarks", "results", "ddpm_throughput.json")
TARGET = 1.3


# ------------------------------------------------------------------------------ torch

def make_torch_unet(image_shape, m):
    """The PyTorch twin of `genjax.nn.unet.UNet` for the config section ``m``."""
    import torch
    from torch import nn
    F = nn.functional

    def norm(c):
        return nn.GroupNorm(math.gcd(m.groups, c), c)

    class Res(nn.Module):
        def __init__(self, cin, cout, tdim):
            super().__init__()
            self.n1, self.c1 = norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
            self.t = nn.Linear(tdim, cout)
            self.n2, self.c2 = norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
            self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None
            self.drop = nn.Dropout(m.dropout)

        def forward(self, x, temb):
            h = self.c1(F.silu(self.n1(x))) + self.t(F.silu(temb))[:, :, None, None]
            h = self.c2(self.drop(F.silu(self.n2(h))))
            return (x if self.skip is None else self.skip(x)) + h

    class Attn(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.n, self.qkv, self.out = norm(c), nn.Linear(c, 3 * c), nn.Linear(c, c)

        def forward(self, x, temb=None):
            b, c, h, w = x.shape
            y = self.n(x).flatten(2).transpose(1, 2)                          # [B, HW, C]
            q, k, v = self.qkv(y).chunk(3, dim=-1)
            a = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(c), dim=-1)
            return x + self.out(a @ v).transpose(1, 2).reshape(b, c, h, w)

    class Down(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, stride=2, padding=1)

        def forward(self, x, temb=None):
            return self.conv(x)

    class Up(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.conv = nn.Conv2d(c, c, 3, padding=1)

        def forward(self, x, temb=None):
            return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            h, _, c = image_shape
            ch, tdim = m.channels, 4 * m.channels
            self.ch = ch
            self.t1, self.t2 = nn.Linear(ch, tdim), nn.Linear(tdim, tdim)
            self.conv_in = nn.Conv2d(c, ch, 3, padding=1)
            down, skips, cur, side = [], [ch], ch, h
            levels = len(m.channel_mults)
            for i, mult in enumerate(m.channel_mults):
                for _ in range(m.num_res_blocks):
                    down.append(Res(cur, ch * mult, tdim))
                    cur = ch * mult
                    if side in m.attention_resolutions:
                        down.append(Attn(cur))
                    skips.append(cur)
                if i < levels - 1:
                    down.append(Down(cur))
                    skips.append(cur)
                    side //= 2
            self.down = nn.ModuleList(down)
            self.mid = nn.ModuleList([Res(cur, cur, tdim), Attn(cur), Res(cur, cur, tdim)])
            up = []
            for i, mult in reversed(list(enumerate(m.channel_mults))):
                for _ in range(m.num_res_blocks + 1):
                    up.append(Res(cur + skips.pop(), ch * mult, tdim))
                    cur = ch * mult
                    if side in m.attention_resolutions:
                        up.append(Attn(cur))
                if i > 0:
                    up.append(Up(cur))
                    side *= 2
            self.up = nn.ModuleList(up)
            self.n_out, self.conv_out = norm(cur), nn.Conv2d(cur, c, 3, padding=1)

        def forward(self, x, t):
            half = self.ch // 2
            freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=x.device) / half)
            args = t.float()[:, None] * freqs[None]
            temb = self.t2(F.silu(self.t1(torch.cat([args.sin(), args.cos()], -1))))
            h = self.conv_in(x)
            hs = [h]
            for blk in self.down:
                h = blk(h, temb)
                if isinstance(blk, Attn):
                    hs[-1] = h
                else:
                    hs.append(h)
            for blk in self.mid:
                h = blk(h, temb)
            for blk in self.up:
                if isinstance(blk, Res):
                    h = torch.cat([h, hs.pop()], 1)
                h = blk(h, temb)
            return self.conv_out(F.silu(self.n_out(h)))

    return UNet()


def torch_setup(config, train_u8, device):
    import torch
    d = config.diffusion
    model = make_torch_unet(train_u8.shape[1:], config.model).to(device)
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=config.optim.lr)
    from genjax.diffusion import make_schedule
    ab = torch.tensor(np.asarray(make_schedule(d.schedule, d.num_steps).alpha_bars),
                      device=device)
    data = torch.from_numpy(np.ascontiguousarray(train_u8.transpose(0, 3, 1, 2))).to(device)
    return model, ema, opt, ab, data


def torch_train_runner(config, train_u8, steps, device):
    import torch
    model, ema, opt, ab, data = torch_setup(config, train_u8, device)
    b, n, T = int(config.train.batch_size), len(train_u8), config.diffusion.num_steps
    decay = float(config.ema.decay)

    def run():
        model.train()
        for _ in range(steps):
            idx = torch.randint(0, n, (b,), device=device)
            x0 = data[idx].float() / 127.5 - 1.0
            t = torch.randint(0, T, (b,), device=device)
            noise = torch.randn_like(x0)
            a = ab[t][:, None, None, None]
            xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
            loss = ((model(xt, t) - noise) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
            opt.step()
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in model.parameters()], 1 - decay)
        return float(loss.detach())

    return run, sum(p.numel() for p in model.parameters())


def torch_sampler(config, train_u8, n, device, *, ddim_steps=None):
    """Ancestral (ddim_steps None; "beta" variance, clipped x0) or DDIM (eta = 0)."""
    import torch
    model, _, _, _, _ = torch_setup(config, train_u8, device)
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

    g_train, compile_s, g_params, graphdef, params = genjax_train_runner(config, train_u8, steps)
    t_train, t_params = torch_train_runner(config, train_u8, steps, device)
    g_anc, g_anc_compile = genjax_sampler(config, graphdef, params, train_u8, sample_images,
                                          ddim=False)
    g_ddim, g_ddim_compile = genjax_sampler(config, graphdef, params, train_u8, sample_images,
                                            ddim=True)
    contenders = {
        "genjax_train": g_train, "torch_train": t_train,
        "genjax_ddim": g_ddim,
        "torch_ddim": torch_sampler(config, train_u8, sample_images, device,
                                    ddim_steps=config.eval.ddim_steps),
        "genjax_ancestral": g_anc,
        "torch_ancestral": torch_sampler(config, train_u8, sample_images, device),
    }
    with common.CpuContention() as contention:
        times = common.interleaved(contenders, repeats=repeats, warmup=1)
    med = {k: float(np.median(v)) for k, v in times.items()}
    rate = {"train_steps_per_s": {s: steps / med[f"{s}_train"] for s in ("genjax", "torch")}}
    for kind in ("ddim", "ancestral"):
        rate[f"{kind}_images_per_s"] = {s: sample_images / med[f"{s}_{kind}"]
                                        for s in ("genjax", "torch")}
    ratios = {k: v["genjax"] / v["torch"] for k, v in rate.items()}
    return {
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
    lines.append(f"  target {r['target']['ratio']}x: " + ", ".join(
        f"{k.split('_')[0]} {'met' if m else 'NOT met'}" for k, m in r["target"]["met"].items()))
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
