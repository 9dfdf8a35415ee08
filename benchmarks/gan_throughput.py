"""Training throughput of the DCGAN on mnist5k: genjax's compiled loop against PyTorch eager.

    python -m benchmarks.gan_throughput [--out=benchmarks/results/gan_throughput.json]
        [--steps=50] [--repeats=7] [--quick]

Both sides train the default preset of ``configs/gan.py``: DCGAN generator (z 64 ->
dense 7x7x64 -> batch norm, ReLU -> 4x4 stride-2 transposed conv to 14x14x32 -> batch
norm, ReLU -> transposed conv to 28x28x1, tanh) and discriminator (4x4 stride-2 convs to
14x14x32 and 7x7x64, LeakyReLU 0.2, dense logit), non-saturating loss, one D update then
one G update per step, Adam (lr 2e-4, b1 0.5, b2 0.999) for each, an EMA of G (decay
0.995), batch 64 of the 4,000 training digits in [-1, 1], on the device:

* genjax: the experiment's own step (``experiments.gan.build``: genjax.train.gan_step,
  the DCGAN of genjax.models.dcgan on genjax.nn.loop_conv) run through
  ``genjax.train.loop.make_chunk``, ``--steps`` steps per dispatch, as in training.
  Compile time is reported apart.
* torch: a straightforward eager implementation of the same networks, losses, optimisers
  and EMA (``nn.ConvTranspose2d``/``nn.Conv2d``, ``BatchNorm2d(track_running_stats=
  False)``, ``torch.optim.Adam``; D's parameters are frozen during the G update, so
  neither side computes gradients it does not use), batches from a per-epoch
  ``randperm``, ``torch.set_num_threads(<cores>)``. The target is judged against it; the
  same with one thread is reported alongside (on a shared 2-core machine OpenMP's
  second thread often waits at barriers).

Blocks of ``--steps`` steps of each contender run round-robin (``--repeats`` rounds) and
every number is a median over rounds, so a busy phase of a shared machine slows all of
them alike; ``other_processes_cpu_fraction`` records how busy the CPUs were with other
processes meanwhile (0 = idle machine).

FLOPs (`dcgan_flops`): the multiply-adds of convolutions and dense layers that touch
data, forward, weight gradients and input gradients where needed: 2.67 GFLOP per step of
batch 64. The JSON gives each side's achieved rate and jax's own float32 matmul rate
measured in the same run (``matmul_timer``, interleaved), as a ceiling for XLA here.

Peer check: with the genjax initial weights copied into the torch networks (kernels
flipped and transposed as each library defines its convolutions), the same real batch
and the same latent draws, both compute the same D and G losses, and after one full
training step (D update, G update against the new D, EMA) the same parameters.
"""

from __future__ import annotations

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from configs import gan as gan_config
from experiments import gan as gan_experiment
from genjax import data as gdata
from genjax.data import transforms
from genjax.losses import gan as gan_losses

DEFAULT_OUT = os.path.join("benchmarks", "results", "gan_throughput.json")
TARGETS = {"speedup_vs_torch": 1.5}


def model_config():
    """The default preset of configs/gan.py (DCGAN on mnist5k, batch 64)."""
    return gan_config.get_config()


def dcgan_flops(config, image_shape) -> dict:
    """Multiply-add FLOPs (2 per multiply-add) of one training step, counting only the
    products that touch real data (a stride-2 4x4 transposed convolution has 4 taps per
    output, not 16): per layer the forward pass, the weight gradient where that player is
    trained, and the input gradient where something upstream needs it. Batch norm,
    activations, the losses, Adam and the EMA are not counted."""
    m, b = config.model, int(config.train.batch_size)
    h, w, c_img = image_shape
    z, cg, cd = m.latent_dim, m.g_channels, m.d_channels
    hw4, hw2, hw = (h // 4) * (w // 4), (h // 2) * (w // 2), h * w
    g_layers = [2 * z * hw4 * 2 * cg,                  # dense
                2 * hw2 * cg * 2 * cg * 4,             # deconv1: 4 live taps per output
                2 * hw * c_img * cg * 4]               # deconv2
    d_layers = [2 * hw2 * cd * c_img * 16,             # conv1
                2 * hw4 * 2 * cd * cd * 16,            # conv2
                2 * hw4 * 2 * cd]                      # dense
    g_fwd, d_fwd = sum(g_layers), sum(d_layers)
    d_update = b * g_fwd + 2 * b * (2 * d_fwd + sum(d_layers[1:]))
    g_update = b * (g_fwd + 2 * d_fwd + g_fwd + sum(g_layers[1:]))
    return {"per_step": d_update + g_update, "d_update": d_update, "g_update": g_update,
            "g_forward_per_example": g_fwd, "d_forward_per_example": d_fwd}


# ------------------------------------------------------------------------------ genjax

def genjax_runner(config, train_u8: np.ndarray, steps: int):
    """Compiles the training chunk of ``steps`` steps. Returns (run, timings): run()
    trains one chunk and fetches its metrics as the loop does."""
    _, _, state, step_fn = gan_experiment.build(config, train_u8.shape[1:])
    run, timings, _ = common.compiled_chunk(step_fn, state, train_u8,
                                            batch_size=config.train.batch_size, steps=steps,
                                            seed=config.seed, finite=("d_loss", "g_loss"))
    return run, timings


# ------------------------------------------------------------------------------- torch

def _torch():
    import torch
    return torch


def make_torch_dcgan(config, image_shape):
    """(G, D): the DCGAN of genjax.models.dcgan in PyTorch (NCHW)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    m = config.model
    if not m.g_norm:
        raise ValueError("the torch peer is written for the batch-normalised generator")
    h, w, c_img = image_shape
    cg, cd, zd = m.g_channels, m.d_channels, m.latent_dim
    grid = (2 * cg, h // 4, w // 4)

    class G(nn.Module):
        def __init__(self):
            super().__init__()
            self.dense = nn.Linear(zd, math.prod(grid), bias=False)   # batch norm follows
            self.norm0 = nn.BatchNorm2d(2 * cg, eps=1e-5, track_running_stats=False)
            self.deconv1 = nn.ConvTranspose2d(2 * cg, cg, 4, 2, 1, bias=False)
            self.norm1 = nn.BatchNorm2d(cg, eps=1e-5, track_running_stats=False)
            self.deconv2 = nn.ConvTranspose2d(cg, c_img, 4, 2, 1)

        def forward(self, z):
            x = F.relu(self.norm0(self.dense(z).view(-1, *grid)))
            x = F.relu(self.norm1(self.deconv1(x)))
            return torch.tanh(self.deconv2(x))

    class D(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(c_img, cd, 4, 2, 1)
            self.conv2 = nn.Conv2d(cd, 2 * cd, 4, 2, 1)
            self.dense = nn.Linear(2 * cd * (h // 4) * (w // 4), 1)

        def forward(self, x):
            x = F.leaky_relu(self.conv1(x), 0.2)
            x = F.leaky_relu(self.conv2(x), 0.2)
            return self.dense(x.flatten(1)).squeeze(1)

    return G(), D()


def torch_losses():
    F = _torch().nn.functional

    def d_loss(real_logits, fake_logits):
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()

    def g_loss(fake_logits):
        return F.softplus(-fake_logits).mean()

    return d_loss, g_loss


class TorchTrainer:
    """One straightforward eager training step: D on real + detached fakes, then G
    against the updated D (D frozen), then the EMA of G."""

    def __init__(self, config, image_shape, *, g=None, d=None):
        torch = _torch()
        self.torch = torch
        self.g, self.d = g, d
        if g is None:
            self.g, self.d = make_torch_dcgan(config, image_shape)
        o_g, o_d = config.optim, config.optim_d
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=o_g.lr, betas=(o_g.b1, o_g.b2),
                                      eps=o_g.eps)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=o_d.lr, betas=(o_d.b1, o_d.b2),
                                      eps=o_d.eps)
        self.decay = config.model.ema_decay
        self.ema = [p.detach().clone() for p in self.g.parameters()]
        self.latent_dim = config.model.latent_dim
        self.d_loss, self.g_loss = torch_losses()

    def step(self, real, z_d=None, z_g=None):
        torch, b = self.torch, real.shape[0]
        z_d = torch.randn(b, self.latent_dim) if z_d is None else z_d
        with torch.no_grad():
            fake = self.g(z_d)
        logits = self.d(torch.cat([real, fake]))
        d_loss = self.d_loss(logits[:b], logits[b:])
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        z_g = torch.randn(b, self.latent_dim) if z_g is None else z_g
        for p in self.d.parameters():
            p.requires_grad_(False)
        g_loss = self.g_loss(self.d(self.g(z_g)))
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        for p in self.d.parameters():
            p.requires_grad_(True)
        if self.decay > 0:
            with torch.no_grad():
                for e, p in zip(self.ema, self.g.parameters()):
                    e.mul_(self.decay).add_(p, alpha=1.0 - self.decay)
        return d_loss, g_loss


def torch_runner(config, train_u8: np.ndarray, steps: int, *, threads: int):
    """run(): ``steps`` eager training steps with ``threads`` intra-op threads, batches
    drawn without replacement from a fresh randperm each epoch; returns the last losses."""
    torch = _torch()
    torch.manual_seed(config.seed)
    data = torch.from_numpy(np.array(train_u8)).permute(0, 3, 1, 2).contiguous()  # NCHW u8
    trainer = TorchTrainer(config, train_u8.shape[1:])
    batch, n = int(config.train.batch_size), len(train_u8)
    holder = {"perm": torch.randperm(n), "pos": 0}

    def run():
        torch.set_num_threads(threads)
        for _ in range(steps):
            if holder["pos"] + batch > n:
                holder["perm"], holder["pos"] = torch.randperm(n), 0
            idx = holder["perm"][holder["pos"]:holder["pos"] + batch]
            holder["pos"] += batch
            real = data[idx].float().div_(127.5).sub_(1.0)
            d_loss, g_loss = trainer.step(real)
        losses = float(d_loss.detach()), float(g_loss.detach())
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError("torch loss became non-finite in the benchmark")
        return losses

    return run


# -------------------------------------------------------------------------- peer check

def torch_from_genjax(config, image_shape, params):
    """(G, D) in torch holding exactly genjax's ``params`` {"g", "d"}: dense layers
    reordered from NHWC to NCHW flattening, conv kernels [kh, kw, in, out] ->
    [out, in, kh, kw], transposed-conv kernels flipped (torch's ConvTranspose2d is the
    adjoint of a convolution, flax's a correlation of the dilated input) ->
    [in, out, kh, kw]."""
    torch = _torch()
    g, d = make_torch_dcgan(config, image_shape)
    a = lambda v: np.asarray(v[...], np.float32)                           # noqa: E731
    t = lambda v: torch.from_numpy(np.array(v))                            # noqa: E731
    pg, pd = params["g"], params["d"]
    h, w, _ = image_shape
    gh, gw, gc = h // 4, w // 4, 2 * config.model.g_channels
    dc = 2 * config.model.d_channels
    with torch.no_grad():
        k = a(pg["dense"]["kernel"])                                         # [Z, gh*gw*gc]
        g.dense.weight.copy_(t(k.reshape(-1, gh, gw, gc).transpose(3, 1, 2, 0)
                               .reshape(gc * gh * gw, -1)))
        for name in ("norm0", "norm1"):
            getattr(g, name).weight.copy_(t(a(pg[name]["scale"])))
            getattr(g, name).bias.copy_(t(a(pg[name]["bias"])))
        for name in ("deconv1", "deconv2"):
            k = a(pg[name]["kernel"])                                        # [kh, kw, I, O]
            getattr(g, name).weight.copy_(t(k[::-1, ::-1].transpose(2, 3, 0, 1)))
        g.deconv2.bias.copy_(t(a(pg["deconv2"]["bias"])))
        for name in ("conv1", "conv2"):
            getattr(d, name).weight.copy_(t(a(pd[name]["kernel"]).transpose(3, 2, 0, 1)))
            getattr(d, name).bias.copy_(t(a(pd[name]["bias"])))
        k = a(pd["dense"]["kernel"])                                         # [gh*gw*dc, 1]
        d.dense.weight.copy_(t(k.reshape(h // 4, w // 4, dc, 1).transpose(3, 2, 0, 1)
                               .reshape(1, -1)))
        d.dense.bias.copy_(t(a(pd["dense"]["bias"])))
    return g, d


def _max_rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / (np.max(np.abs(a)) + 1e-30))


def peer_check(config=None, train_u8: np.ndarray | None = None, *, seed: int = 0) -> dict:
    """Both implementations from genjax's initial weights on one real batch with the
    same latent draws: the D and G losses and their gradients at the initial weights, and
    every parameter (and the EMA of G) after one full training step of each. Relative
    differences are to each tensor's largest magnitude; Adam's first step,
    lr * g / (|g| + eps), magnifies float32 differences of gradients near 0, hence larger
    differences after the step than in the gradients."""
    torch = _torch()
    config = config or model_config()
    if train_u8 is None:
        train_u8 = np.asarray(gdata.load(config.data.name).train)
    shape = train_u8.shape[1:]
    b, zd = int(config.train.batch_size), config.model.latent_dim
    batch = jnp.asarray(train_u8[:b])
    generate, discriminate, state, step = gan_experiment.build(config, shape)
    key = jax.random.key(seed)
    # the draws the step makes (experiments.gan.build / genjax.train.gan_step): D's
    # noise from split(fold_in(fold_in(key, 0), 0), 3)[1], G's from fold_in(key, 1)
    z_d = jax.random.normal(jax.random.split(jax.random.fold_in(jax.random.fold_in(key, 0),
                                                                0), 3)[1], (b, zd))
    z_g = jax.random.normal(jax.random.fold_in(key, 1), (b, zd))
    real = transforms.preprocess(key, batch, config.data.preprocess)          # [-1, 1]
    p = state.params
    fake = generate(p["g"], z_d)
    logits = discriminate(p["d"], jnp.concatenate([real, fake]))
    d0 = float(gan_losses.discriminator_loss(logits[:b], logits[b:]))
    g0 = float(gan_losses.generator_loss_non_saturating(discriminate(p["d"],
                                                                     generate(p["g"], z_g))))
    d_grads = jax.grad(lambda pd: gan_losses.discriminator_loss(
        *jnp.split(discriminate(pd, jnp.concatenate([real, fake])), 2)))(p["d"])
    g_grads = jax.grad(lambda pg: gan_losses.generator_loss_non_saturating(
        discriminate(p["d"], generate(pg, z_g))))(p["g"])
    new, _ = jax.jit(step)(state, batch, key)

    g, d = torch_from_genjax(config, shape, p)
    to_t = lambda v: torch.from_numpy(np.array(v, np.float32))                 # noqa: E731
    real_t = to_t(real).permute(0, 3, 1, 2).contiguous()
    z_d_t, z_g_t = to_t(z_d), to_t(z_g)
    d_loss_t, g_loss_t = torch_losses()
    with torch.no_grad():
        fake_t = g(z_d_t)
    lt = d(torch.cat([real_t, fake_t]))
    loss = d_loss_t(lt[:b], lt[b:])
    d0_t = float(loss.detach())
    loss.backward()
    d_grads_t = [q.grad.numpy().copy() for q in d.parameters()]
    d.zero_grad(set_to_none=True)
    loss = g_loss_t(d(g(z_g_t)))
    g0_t = float(loss.detach())
    loss.backward()
    g_grads_t = [q.grad.numpy().copy() for q in g.parameters()]
    g.zero_grad(set_to_none=True)
    d.zero_grad(set_to_none=True)
    # genjax's gradients in torch's layout (the weight maps are linear)
    ref_g, ref_d = torch_from_genjax(config, shape, {"g": g_grads, "d": d_grads})
    grad_diff = {
        "d": max(_max_rel(r.detach().numpy(), x) for x, r in zip(d_grads_t, ref_d.parameters(),
                                                                   strict=True)),
        "g": max(_max_rel(r.detach().numpy(), x) for x, r in zip(g_grads_t, ref_g.parameters(),
                                                                   strict=True))}
    trainer = TorchTrainer(config, shape, g=g, d=d)
    trainer.step(real_t, z_d_t, z_g_t)
    g_after, d_after = torch_from_genjax(config, shape, new.params)
    diffs = {}
    for side, mod_t, mod_ref in (("d", trainer.d, d_after), ("g", trainer.g, g_after)):
        diffs[side] = max(_max_rel(r.detach().numpy(), x.detach().numpy())
                          for x, r in zip(mod_t.parameters(), mod_ref.parameters(),
                                          strict=True))
    out = {"d_loss_genjax": d0, "d_loss_torch": d0_t, "g_loss_genjax": g0,
           "g_loss_torch": g0_t, "d_loss_abs_diff": abs(d0 - d0_t),
           "g_loss_abs_diff": abs(g0 - g0_t),
           "d_grad_max_rel_diff": grad_diff["d"], "g_grad_max_rel_diff": grad_diff["g"],
           "d_params_after_step_max_rel_diff": diffs["d"],
           "g_params_after_step_max_rel_diff": diffs["g"]}
    if "g_ema" in new.params:
        g_ema, _ = torch_from_genjax(config, shape, dict(new.params, g=new.params["g_ema"]))
        out["g_ema_after_step_max_rel_diff"] = max(
            _max_rel(r.detach().numpy(), e.numpy())
            for e, r in zip(trainer.ema, g_ema.parameters(), strict=True))
    return out


# ---------------------------------------------------------------------------- benchmark

def run_benchmark(*, steps: int = 50, repeats: int = 7, quick: bool = False,
                  pause_s: float = 0.05) -> dict:
    """Measures everything and returns the JSON record (without device/versions)."""
    torch = _torch()
    cores = common.core_count()
    config = model_config()
    ds = gdata.load(config.data.name)
    train_u8 = np.asarray(ds.train)
    batch = int(config.train.batch_size)

    torch.set_num_threads(cores)
    peer = peer_check(config, train_u8)
    run_genjax, compile_times = genjax_runner(config, train_u8, steps)
    contenders = {"genjax": run_genjax}
    if common.before_arm_wanted(quick):
        with common.xla_defaults():
            contenders["genjax_xla_defaults"] = genjax_runner(config, train_u8, steps)[0]
    contenders.update({
                  "torch": torch_runner(config, train_u8, steps, threads=cores)})
    if cores > 1:
        contenders["torch_1thread"] = torch_runner(config, train_u8, steps, threads=1)
    sizes = (1024,) if quick else (1024, 2048)
    matmul_flops = {}
    for n in sizes:            # jax's own float32 matmul rate, measured alongside
        contenders[f"matmul_{n}"], matmul_flops[f"matmul_{n}"] = common.matmul_timer(n)
    with common.CpuContention() as contention:
        times = common.interleaved(contenders, repeats=repeats, warmup=1, pause_s=pause_s)
    torch.set_num_threads(cores)
    med = {k: float(np.median(v)) for k, v in times.items()}
    sps = {k: steps / v for k, v in med.items() if not k.startswith("matmul_")}
    ratio = sps["genjax"] / sps["torch"]
    peak = max(matmul_flops[k] / med[k] for k in matmul_flops)
    flops = dcgan_flops(config, ds.example_shape)
    m = config.model
    record = {
        "benchmark": "gan_throughput",
        "quick": quick,
        "config": {
            "model": f"DCGAN z{m.latent_dim}, G channels {m.g_channels}/{2 * m.g_channels} "
                     f"with batch norm, D channels {m.d_channels}/{2 * m.d_channels}",
            "dataset": config.data.name, "num_train_examples": len(train_u8),
            "image_shape": list(ds.example_shape), "batch_size": batch,
            "latent_dim": m.latent_dim, "g_channels": m.g_channels,
            "d_channels": m.d_channels, "objective": config.loss.objective,
            "d_steps": config.loss.d_steps, "ema_decay": m.ema_decay,
            "optimizer_g": {k: config.optim[k] for k in ("name", "lr", "b1", "b2", "eps")},
            "optimizer_d": {k: config.optim_d[k] for k in ("name", "lr", "b1", "b2", "eps")},
            "steps_per_block": steps, "repeats": repeats, "torch_threads": cores,
            "jax_backend": jax.default_backend(),
        },
        "genjax": {**compile_times, "steps_per_s": sps["genjax"],
                   "examples_per_s": sps["genjax"] * batch,
                   "block_s": common.summarize(times["genjax"])},
        "torch": {"steps_per_s": sps["torch"], "examples_per_s": sps["torch"] * batch,
                  "threads": cores, "block_s": common.summarize(times["torch"])},
        "ratio_genjax_over_torch": ratio,
        "flops_per_step": flops["per_step"],
        "flops_counted": dcgan_flops.__doc__.split("\n\n")[0].replace("\n", " "),
        "flops_breakdown": flops,
        "achieved_flops": {k: v * flops["per_step"] for k, v in sps.items()},
        "jax_matmul_peak_flops": {"large": peak,
                                  "by_size": {k: matmul_flops[k] / med[k] for k in matmul_flops}},
        "genjax_fraction_of_jax_matmul_peak": sps["genjax"] * flops["per_step"] / peak,
        "peer_check": peer,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": {"speedup_vs_torch": TARGETS["speedup_vs_torch"],
                    "speedup_vs_torch_met": bool(ratio >= TARGETS["speedup_vs_torch"])},
    }
    if "genjax_xla_defaults" in sps:
        record["genjax_xla_defaults"] = {
            "what": "the same step compiled with XLA's default options and the weight "
                    "gradients loop_conv picks for them (the code before genjax.xla)",
            "steps_per_s": sps["genjax_xla_defaults"],
            "examples_per_s": sps["genjax_xla_defaults"] * batch,
            "block_s": common.summarize(times["genjax_xla_defaults"])}
        record["ratio_genjax_over_xla_defaults"] = sps["genjax"] / sps["genjax_xla_defaults"]
        record["ratio_xla_defaults_over_torch"] = sps["genjax_xla_defaults"] / sps["torch"]
    if "torch_1thread" in sps:
        record["torch_1thread"] = {
            "steps_per_s": sps["torch_1thread"], "examples_per_s": sps["torch_1thread"] * batch,
            "threads": 1, "block_s": common.summarize(times["torch_1thread"])}
        record["ratio_genjax_over_torch_1thread"] = sps["genjax"] / sps["torch_1thread"]
    return record


def summary_text(r: dict) -> str:
    c, tg, pc = r["config"], r["targets"], r["peer_check"]

    def row(label, side):
        return (f"  {label:<20}{side['examples_per_s']:8.0f} examples/s "
                f"{side['steps_per_s']:7.2f} steps/s "
                f"{side['steps_per_s'] * r['flops_per_step'] / 1e9:6.1f} GFLOP/s")

    lines = [
        f"DCGAN on {c['dataset']}, batch {c['batch_size']} (jax on {c['jax_backend']}): "
        f"medians of {c['repeats']} interleaved blocks of {c['steps_per_block']} steps",
        row("genjax", r["genjax"]) + f"  (compile {r['genjax']['lower_and_compile_s']:.1f} s, "
                                     "apart)",
        row(f"torch ({c['torch_threads']} threads)", r["torch"]),
    ]
    if "torch_1thread" in r:
        lines.append(row("torch (1 thread)", r["torch_1thread"]))
    if "genjax_xla_defaults" in r:
        lines.append(row("genjax, XLA defaults", r["genjax_xla_defaults"])
                     + f"  (before; now {r['ratio_genjax_over_xla_defaults']:.2f}x it, it "
                     f"{r['ratio_xla_defaults_over_torch']:.2f}x torch)")
    lines.append(f"  genjax / torch = {r['ratio_genjax_over_torch']:.2f}x (target "
                 f"{tg['speedup_vs_torch']}x: "
                 f"{'met' if tg['speedup_vs_torch_met'] else 'NOT met'})"
                 + (f"; genjax / torch 1 thread = {r['ratio_genjax_over_torch_1thread']:.2f}x"
                    if "torch_1thread" in r else ""))
    lines.append(f"  {r['flops_per_step'] / 1e9:.2f} GFLOP per step (multiply-adds that "
                 f"touch data); jax's float32 matmul peak here "
                 f"{r['jax_matmul_peak_flops']['large'] / 1e9:.1f} GFLOP/s, genjax at "
                 f"{r['genjax_fraction_of_jax_matmul_peak']:.0%} of it")
    after = max(pc["d_params_after_step_max_rel_diff"], pc["g_params_after_step_max_rel_diff"])
    lines.append(f"  peer check: D loss {pc['d_loss_genjax']:.5f} (genjax) vs "
                 f"{pc['d_loss_torch']:.5f} (torch), G loss {pc['g_loss_genjax']:.5f} vs "
                 f"{pc['g_loss_torch']:.5f}; parameters after one step agree to {after:.1e}")
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    p = common.base_parser("benchmarks.gan_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved timed blocks per contender (default 7; "
                                        "2 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed block (default 50; 5 with --quick)")
    return common.parse_positive(p, argv, ("steps", "repeats"))


def main(argv=None) -> dict:
    args = parse_args(argv)
    steps = args.steps or (5 if args.quick else 50)
    repeats = args.repeats or (2 if args.quick else 7)
    record = run_benchmark(steps=steps, repeats=repeats, quick=args.quick)
    return common.finish(args.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
