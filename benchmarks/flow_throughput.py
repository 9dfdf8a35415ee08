"""RealNVP throughput: training steps/s and samples/s of genjax's flows against PyTorch
eager computing the same log-likelihood and gradients from the same weights.

    python -m benchmarks.flow_throughput [--out=benchmarks/results/flow_throughput.json]
        [--cases=mlp,conv] [--repeats=5] [--mlp-steps=250] [--conv-steps=50] [--quick]

Two cases, both measured in one run, every contender of both interleaved round-robin
(`benchmarks.common.interleaved`, ``--repeats`` rounds after a warm-up round); every
number is a median over rounds, and ``other_processes_cpu_fraction`` records how busy
the CPUs were with other processes meanwhile (0 = idle machine):

* ``mlp``: configs/flow.py:moons, a `VectorFlow` RealNVP of 8 affine couplings with MLP
  conditioners (2 -> 128 -> 128 -> 2x2, ReLU, last layer zero-initialised), alternating
  half masks, log-scale bounded by 3 tanh(raw / 3), batch 256 of two_moons points;
* ``conv``: configs/flow.py's default, RealNVP's multi-scale `MultiScaleFlow` on the 8x8
  digits (2 levels: 3 checkerboard couplings, squeeze to 4x4x4, 3 channel couplings,
  factor half out, then 4 checkerboard couplings; conv conditioners 3x3 -> 1x1 -> 3x3
  with 64 channels, the last zero-initialised), batch 128, uniform dequantisation and
  the logit pre-transform (alpha 0.05) of `genjax.losses.flow`, every Jacobian counted.

Training (steps/s), the whole step of the experiment: the mean NLL, its gradients,
clipping to the config's global norm (100), Adam at the config's learning rate times its
warmup + cosine schedule.

* genjax: ``experiments.flow.build`` and ``genjax.train.make_train_step``, run through
  ``genjax.train.loop.make_chunk`` (`common.compiled_chunk`): ``--mlp-steps`` /
  ``--conv-steps`` steps in one compiled ``lax.scan`` per dispatch, batches drawn on the
  device, as the experiment trains. Compile time is reported apart.
* torch: the same flow as an ``nn.Module`` (`make_torch_flow`; NCHW, with the squeeze
  and the factor-out mapping channels exactly as genjax's NHWC code does), eager:
  forward, ``backward``, ``clip_grad_norm_``, ``torch.optim.Adam`` with the schedule's
  learning rate; images dequantised with ``torch.rand`` per step, batches from a
  per-epoch ``randperm``. Three arms: the default (for-loop) Adam and ``Adam(fused=True)``
  with ``torch.set_num_threads(<cores>)``, and fused Adam on one thread (on a shared
  2-core machine, another process on one core stalls OpenMP's second thread at every
  barrier: 2-thread torch then runs up to 100x slower, one thread does not). The fastest
  arm is the peer the ratio and the target (genjax >= 1.5x torch on the mlp case) are
  judged against. A torch block stops after 5 s even if short of its steps; rates are
  work done / time, per block.

Sampling (samples/s): genjax's compiled sampler (``Built.sample_fn`` under
``genjax.xla.jit``: z ~ N(0, I), the inverse flow, and for images the inverse logit
clipped to [0, 1]) against the torch module's inverse under ``torch.inference_mode``
(all cores, and one thread; the faster is the peer), ``--mlp-samples`` /
``--conv-samples`` per call.

Peer check (``peer_check``, run before timing; the run stops if it fails): genjax's
initial weights, perturbed with N(0, s^2) noise (s = 0.03 mlp, 0.01 conv) so that the
zero-initialised last layers do something, are copied into the torch module (dense
kernels [in, out] -> [out, in], conv kernels [kh, kw, in, out] -> [out, in, kh, kw]); on
one batch, with genjax's dequantisation noise handed to torch as data, both compute the
per-example log-likelihoods (within 1e-4 of the largest, relative), the gradients of the
mean NLL for every parameter tensor (within 1e-3 of each tensor's largest entry), and
the inverse of the same z (within 1e-3). The max errors are in the JSON under each case's
"peer_check".
"""

from __future__ import annotations

import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common, torch_twin
from benchmarks.torch_twin import (flat_params, load_genjax_params,
                                   torch_grads_as_genjax)

DEFAULT_OUT = os.path.join("benchmarks", "results", "flow_throughput.json")
TARGETS = {"mlp_train_speedup_vs_torch": 1.5}
CASES = {"mlp": "moons", "conv": None}          # case -> configs/flow.py preset
TOLERANCES = {"log_likelihood": 1e-4, "grad": 1e-3, "inverse": 1e-3}
# std of the noise added to every weight for the peer check, by data kind: enough to
# move the log-likelihood well away from the identity flow's (conv: -441 -> -568 nats)
PERTURB = {"points": 0.03, "image": 0.01}
TORCH_BLOCK_CAP_S = 5.0      # a torch block stops after this long (see the docstring)


def _torch():
    import torch     # only the benchmark imports torch; genjax never does
    return torch


# ------------------------------------------------------------------------------ setup

def case_config(case: str, *, quick: bool = False):
    """The configs/flow.py preset of ``case``; ``quick``: a tiny flow and batch."""
    from configs import flow as flow_config
    config = flow_config.get_config(CASES[case])
    if quick:
        config.unlock()
        if case == "mlp":
            config.model.update(layers=2, hidden=(16, 16))
            config.train.batch_size = 32
        else:
            config.model.update(layers=1, hidden=(8,), init_examples=64)
            config.train.batch_size = 16
        config.lock()
    return config


def load_case(case: str, *, quick: bool = False):
    """(config, dataset, Built): the experiment's own model, loss and sampler."""
    from experiments import flow as flow_experiment
    from genjax import data as gdata
    config = case_config(case, quick=quick)
    flow_experiment.validate(config)
    ds = gdata.load(config.data.name)
    flow_experiment.validate_data(config, ds)
    m = config.model
    if m.name != "realnvp" or m.transformer != "affine":
        raise ValueError("the torch peer is written for RealNVP with affine couplings")
    return config, ds, flow_experiment.build(config, ds)


# ------------------------------------------------------------------------------ torch

def make_torch_flow(config, ds):
    """The PyTorch twin of the config's RealNVP (`genjax.models.flow.VectorFlow` on
    points, `MultiScaleFlow` on images), with genjax's module names so that
    `load_genjax_params` copies a genjax parameter state by path. Images are NCHW; the
    squeeze puts pixel (2i + di, 2j + dj) of channel c in channel (2 di + dj) C + c, and
    the factor-out keeps the first channels, both as genjax's NHWC code does, and
    `inverse` takes z in genjax's order (each level's factored-out part flattened in
    NHWC order, then the last level's).

    model.log_likelihood(x) -> [B] nats (images: x = dequantised pixels u in [0, 1),
    [B, C, H, W]: log p(256 u) on the 8-bit scale, every Jacobian counted);
    model.inverse(z [N, D]) -> x (images: logit space, NCHW)."""
    torch = _torch()
    from torch import nn
    from genjax.flows import bijectors as bij
    F = nn.functional
    m = config.model
    images = ds.kind == "image"
    max_s, alpha = float(m.max_log_scale), float(m.logit_alpha)
    log_2pi = math.log(2 * math.pi)

    class MLPConditioner(nn.Module):
        def __init__(self, d, hidden):
            super().__init__()
            sizes = [d, *hidden]
            self.hidden = nn.ModuleList([nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:])])
            self.out = nn.Linear(sizes[-1], 2 * d)

        def forward(self, x):                                 # [B, D] -> 2 x [B, D]
            h = x
            for layer in self.hidden:
                h = F.relu(layer(h))
            theta = self.out(h).view(x.shape[0], -1, 2)       # genjax: [B, D, P]
            return theta[..., 0], theta[..., 1]

    class ConvConditioner(nn.Module):
        def __init__(self, c, hidden):
            super().__init__()
            self.conv1 = nn.Conv2d(c, hidden, 3, padding=1)   # "SAME", stride 1
            self.conv2 = nn.Conv2d(hidden, hidden, 1)
            self.conv3 = nn.Conv2d(hidden, 2 * c, 3, padding=1)

        def forward(self, x):                                 # [B, C, H, W] -> 2 x same
            h = F.relu(self.conv2(F.relu(self.conv1(x))))
            b, c, hh, ww = x.shape
            theta = self.conv3(h).view(b, c, 2, hh, ww)      # genjax: [B, H, W, C, P]
            return theta[:, :, 0], theta[:, :, 1]

    class Coupling(nn.Module):
        """y = x where mask, else x e^s + t, (t, raw) = net(x * mask), s = max tanh(raw
        / max); log|det| = sum of s where not mask."""

        def __init__(self, mask, net):
            super().__init__()
            self.register_buffer("mask", torch.from_numpy(np.array(mask, np.float32)))
            self.register_buffer("keep", self.mask != 0)
            self.net = net

        def _shift_scale(self, v):
            t, raw = self.net(v * self.mask)
            return t, max_s * torch.tanh(raw / max_s)

        def forward(self, x):
            t, s = self._shift_scale(x)
            y = torch.where(self.keep, x, x * torch.exp(s) + t)
            return y, torch.where(self.keep, 0.0, s).flatten(1).sum(1)

        def inverse(self, y):
            t, s = self._shift_scale(y)
            x = torch.where(self.keep, y, (y - t) * torch.exp(-s))
            return x, -torch.where(self.keep, 0.0, s).flatten(1).sum(1)

    class Squeeze(nn.Module):
        def forward(self, x):
            b, c, h, w = x.shape
            y = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4)
            return y.reshape(b, 4 * c, h // 2, w // 2), x.new_zeros(b)

        def inverse(self, y):
            b, c4, h, w = y.shape
            x = y.view(b, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2)
            return x.reshape(b, c4 // 4, 2 * h, 2 * w), y.new_zeros(b)

    def run(layers, x):
        total = 0.0
        for layer in layers:
            x, ld = layer(x)
            total = total + ld
        return x, total

    def run_inverse(layers, y):
        total = 0.0
        for layer in reversed(layers):
            y, ld = layer.inverse(y)
            total = total + ld
        return y, total

    def normal_log_prob(z):                                   # [B, ...] -> [B]
        z = z.flatten(1)
        return -0.5 * (z * z).sum(1) - 0.5 * z.shape[1] * log_2pi

    class VectorFlow(nn.Module):
        def __init__(self):
            super().__init__()
            d = math.prod(ds.example_shape)
            self.layers = nn.ModuleList([
                Coupling(bij.channel_mask(d, parity=i % 2), MLPConditioner(d, m.hidden))
                for i in range(m.layers)])

        def log_prob(self, x):
            z, ld = run(self.layers, x.flatten(1))
            return normal_log_prob(z) + ld

        log_likelihood = log_prob

        def inverse(self, z):
            return run_inverse(self.layers, z)[0].view(z.shape[0], *ds.example_shape)

    class MultiScaleFlow(nn.Module):
        def __init__(self):
            super().__init__()
            h, w, c = ds.example_shape
            hidden, levels, self.kept = m.hidden[0], [], []
            for level in range(m.levels):
                last = level == m.levels - 1
                layers = []
                for i in range(4 if last else m.layers):
                    mask = np.asarray(bij.checkerboard_mask(h, w, c, parity=i % 2))
                    layers.append(Coupling(mask.transpose(2, 0, 1), ConvConditioner(c, hidden)))
                if not last:
                    layers.append(Squeeze())
                    h, w, c = h // 2, w // 2, 4 * c
                    for i in range(m.layers):
                        mask = np.asarray(bij.channel_mask(c, parity=i % 2))[:, None, None]
                        layers.append(Coupling(mask, ConvConditioner(c, hidden)))
                levels.append(nn.ModuleList(layers))
                keep = c if last else c // 2
                self.kept.append((h, w, keep, c))
                c = keep
            self.levels = nn.ModuleList(levels)

        def log_prob(self, y):                                # y [B, C, H, W], logit space
            total, lp = 0.0, 0.0
            for layers, (_, _, keep, _) in zip(self.levels, self.kept):
                y, ld = run(layers, y)
                total = total + ld
                lp = lp + normal_log_prob(y[:, keep:])        # factored out
                y = y[:, :keep]
            return lp + normal_log_prob(y) + total

        def log_likelihood(self, u):
            """u [B, C, H, W] dequantised pixels in [0, 1) -> log p(256 u) [B]
            (`genjax.losses.flow.dequantized_log_likelihood`)."""
            p = alpha + (1.0 - 2.0 * alpha) * u
            y = torch.log(p) - torch.log1p(-p)
            ld = (math.log(1.0 - 2.0 * alpha) - torch.log(p) - torch.log1p(-p)).flatten(1)
            return self.log_prob(y) + ld.sum(1) - u[0].numel() * math.log(256.0)

        def inverse(self, z):                                 # z [N, D], genjax's order
            n = z.shape[0]
            sizes = [h * w * (c - keep) for h, w, keep, c in self.kept[:-1]]
            h, w, keep, _ = self.kept[-1]
            pieces = torch.split(z, sizes + [h * w * keep], 1)
            nchw = lambda v, h, w: v.reshape(n, h, w, -1).permute(0, 3, 1, 2)  # noqa: E731
            y = nchw(pieces[-1], h, w)
            for i in reversed(range(len(self.levels))):
                h, w, _, _ = self.kept[i]
                if i < len(self.levels) - 1:
                    y = torch.cat([y, nchw(pieces[i], h, w)], 1)
                y, _ = run_inverse(self.levels[i], y)
            return y

    return MultiScaleFlow() if images else VectorFlow()


def torch_flow_from_genjax(config, ds, params):
    """The torch twin holding genjax's ``params`` (an nnx.State, or any pytree of its
    structure), every torch parameter set."""
    return load_genjax_params(make_torch_flow(config, ds), params)


def _nchw(a):
    """A host NHWC array -> a torch NCHW tensor (float32, contiguous)."""
    return _torch().from_numpy(np.array(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))


# -------------------------------------------------------------------------- peer check

def _max_rel(ref, x) -> float:
    """max |ref - x| / max |ref|."""
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    return float(np.max(np.abs(ref - x)) / (np.max(np.abs(ref)) + 1e-30))


def perturbed(params, key, scale: float):
    """params + N(0, scale^2) noise on every entry (zero-initialised layers included)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [p + scale * jax.random.normal(k, p.shape, p.dtype)
                  for p, k in zip(leaves, keys)])


def peer_check(config, ds, b, *, seed: int = 0, num_inverse: int = 64,
               perturb: float | None = None) -> dict:
    """genjax's log-likelihoods, gradients of the training loss and inverse against the
    torch twin's, from the same perturbed weights on one training batch (images: with
    genjax's dequantisation noise for the key, handed to torch as data). Errors are
    relative to the largest entry of each reference (per gradient tensor); ``ok`` says
    whether all are within `TOLERANCES`."""
    torch = _torch()
    from genjax.data import transforms
    images = ds.kind == "image"
    key = jax.random.key(seed)
    bsz = int(config.train.batch_size)
    idx = np.random.default_rng(seed).choice(len(ds.train), bsz, replace=False)
    batch = jnp.asarray(np.asarray(ds.train)[np.sort(idx)])
    perturb = PERTURB[ds.kind] if perturb is None else perturb
    params = perturbed(b.state.params, jax.random.fold_in(key, 1), perturb)
    step_key = jax.random.fold_in(key, 2)

    @jax.jit
    def genjax_side(params):
        ll = b.log_prob_fn(params, batch, step_key)
        grads = jax.grad(lambda p: b.loss_fn(p, batch, step_key, b.state.hparams)[0])(params)
        return ll, grads

    ll_j, grads_j = genjax_side(params)
    d = math.prod(ds.example_shape)
    z = jax.random.normal(jax.random.fold_in(key, 3), (num_inverse, d))
    x_j = jax.jit(lambda p, z: b.model(p).inverse(z)[0])(params, z)       # logit space

    model = torch_flow_from_genjax(config, ds, params)
    if images:
        data_t = _nchw(transforms.dequantize_uniform(step_key, batch))
    else:
        data_t = torch.from_numpy(np.array(batch, np.float32))
    ll_t = model.log_likelihood(data_t)
    model.zero_grad(set_to_none=True)
    (-ll_t.mean()).backward()
    paths = list(flat_params(params))
    grads_t = torch_grads_as_genjax(model, paths)
    with torch.no_grad():
        x_t = model.inverse(torch.from_numpy(np.array(z))).numpy()
    if images:
        x_t = x_t.transpose(0, 2, 3, 1)
    g_j = flat_params(grads_j)
    grad_diff = {p: _max_rel(g_j[p], grads_t[p]) for p in paths}
    worst = max(grad_diff, key=grad_diff.get)
    ll_j = np.asarray(ll_j)
    out = {
        "seed": seed, "batch_size": bsz, "perturbation_std": perturb,
        "num_param_tensors": len(paths),
        "mean_log_likelihood_genjax": float(ll_j.mean()),
        "mean_log_likelihood_torch": float(ll_t.detach().mean()),
        "log_likelihood_max_rel_diff": _max_rel(ll_j, ll_t.detach().numpy()),
        "grad_max_rel_diff": grad_diff[worst],
        "grad_worst_tensor": ".".join(map(str, worst)),
        "inverse_max_rel_diff": _max_rel(x_j, x_t),
        "tolerances": TOLERANCES,
    }
    out["ok"] = bool(out["log_likelihood_max_rel_diff"] <= TOLERANCES["log_likelihood"]
                     and out["grad_max_rel_diff"] <= TOLERANCES["grad"]
                     and out["inverse_max_rel_diff"] <= TOLERANCES["inverse"])
    return out


# ---------------------------------------------------------------------------- runners

def genjax_train_runner(config, ds, b, steps: int):
    """run() -> steps: ``steps`` training steps in one compiled dispatch (the
    experiment's chunk); also the compile timings."""
    from genjax.train import make_train_step
    step = make_train_step(b.loss_fn, b.tx, b.lr_schedule)
    chunk, timings, _ = common.compiled_chunk(step, b.state, np.asarray(ds.train),
                                              batch_size=config.train.batch_size,
                                              steps=steps, seed=config.seed)

    def run():
        chunk()
        return steps

    return run, timings


def genjax_sampler(b, params, num: int):
    """run() -> num: ``num`` samples from the compiled `Built.sample_fn`; and its compile
    time (the first call)."""
    from genjax import xla
    sample = xla.jit(lambda p, k: b.sample_fn(p, k, num))
    key = jax.random.key(0)
    t = time.perf_counter()
    jax.block_until_ready(sample(params, key))
    compile_s = time.perf_counter() - t

    def run():
        jax.block_until_ready(sample(params, key))
        return num

    return run, compile_s


def torch_train_runner(config, ds, params, steps: int, *, fused: bool = False,
                       threads: int = 1, max_s: float = TORCH_BLOCK_CAP_S):
    """run() -> steps done: ``steps`` eager training steps (fewer when a block has taken
    ``max_s`` seconds: with its threads starved by other processes a torch block can
    slow down 100-fold) from genjax's ``params`` (NLL, backward, clip_grad_norm_, Adam at
    the schedule's learning rate) with ``threads`` intra-op threads, batches without
    replacement from a fresh randperm each epoch."""
    torch = _torch()
    model = torch_flow_from_genjax(config, ds, params)
    images = ds.kind == "image"
    data = np.asarray(ds.train)
    data = torch.from_numpy(np.array(data.transpose(0, 3, 1, 2) if images else data))

    def batch_loss(x):
        if images:                                       # uniform dequantisation
            x = (x.float() + torch.rand(x.shape)) / 256.0
        return -model.log_likelihood(x).mean()

    return torch_twin.adam_runner(config, model, data, batch_loss, steps, threads=threads,
                                  max_s=max_s, fused=fused)


def torch_sampler(config, ds, params, num: int, *, threads: int = 1):
    """run() -> num: ``num`` samples from the torch twin's inverse under inference mode
    with ``threads`` intra-op threads (images: pixel intensities in [0, 1], as
    `Built.sample_fn`)."""
    torch = _torch()
    model = torch_flow_from_genjax(config, ds, params)
    alpha, temp = float(config.model.logit_alpha), float(config.plots.temperature)
    d = math.prod(ds.example_shape)
    images = ds.kind == "image"

    def run():
        torch.set_num_threads(threads)
        with torch.inference_mode():
            x = model.inverse(temp * torch.randn(num, d))
            if images:
                x = ((torch.sigmoid(x) - alpha) / (1 - 2 * alpha)).clamp_(0.0, 1.0)
            float(x.sum())
        return num

    return run


# -------------------------------------------------------------------------- benchmark

def _describe(config, ds) -> str:
    m = config.model
    if ds.kind == "image":
        return (f"multi-scale RealNVP, {m.levels} levels, {m.layers} steps, conv "
                f"conditioners with {m.hidden[0]} channels, affine (max log-scale "
                f"{m.max_log_scale}), on {config.data.name} {ds.example_shape}")
    return (f"RealNVP, {m.layers} affine couplings (max log-scale {m.max_log_scale}), MLP "
            f"conditioners {tuple(m.hidden)}, on {config.data.name} {ds.example_shape}")


TRAIN_SIDES = ("genjax", "torch", "torch_fused_adam", "torch_1thread_fused_adam")
SAMPLE_SIDES = ("genjax", "torch", "torch_1thread")
LABELS = {"torch": "Adam", "torch_fused_adam": "fused Adam",
          "torch_1thread_fused_adam": "fused Adam 1 thread", "torch_1thread": "1 thread"}


def run_benchmark(*, cases=("mlp", "conv"), steps=None, samples=None, repeats: int = 5,
                  quick: bool = False, pause_s: float = 0.05) -> dict:
    """Measures everything and returns the JSON record (without device/versions).
    ``steps`` / ``samples``: {case: training steps per block / samples per call}."""
    torch = _torch()
    cores = common.core_count()
    torch.set_num_threads(cores)
    steps = steps or {"mlp": 250, "conv": 50}
    samples = samples or {"mlp": 1000, "conv": 256}
    contenders, info = {}, {}
    for case in cases:
        config, ds, b = load_case(case, quick=quick)
        peer = peer_check(config, ds, b, seed=config.seed)
        if not peer["ok"]:
            raise SystemExit(f"error: the torch peer of the {case} case does not compute "
                             f"genjax's numbers (tolerances {TOLERANCES}): {peer}")
        # host copies: the training chunk donates the state's buffers
        host_params = jax.device_get(b.state.params)
        params = jax.tree_util.tree_map(jnp.asarray, host_params)
        n, ns = steps[case], samples[case]
        g_train, timings = genjax_train_runner(config, ds, b, n)
        g_sample, sample_compile_s = genjax_sampler(b, params, ns)
        mine = {
            "genjax_train": g_train,
            "torch_train": torch_train_runner(config, ds, host_params, n, threads=cores),
            "torch_fused_adam_train": torch_train_runner(config, ds, host_params, n,
                                                         fused=True, threads=cores),
            "torch_1thread_fused_adam_train": torch_train_runner(config, ds, host_params, n,
                                                                 fused=True, threads=1),
            "genjax_sample": g_sample,
            "torch_sample": torch_sampler(config, ds, host_params, ns, threads=cores),
            "torch_1thread_sample": torch_sampler(config, ds, host_params, ns, threads=1),
        }
        if cores == 1:                       # the 1-thread arms would repeat the others
            mine = {k: v for k, v in mine.items() if "1thread" not in k}
        contenders.update({f"{case}_{k}": v for k, v in mine.items()})
        info[case] = {
            "preset": CASES[case] or "default", "model": _describe(config, ds),
            "dataset": config.data.name, "example_shape": list(ds.example_shape),
            "batch_size": int(config.train.batch_size),
            "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(host_params))),
            "optimizer": {k: config.optim[k] for k in ("name", "lr", "b1", "b2", "eps",
                                                       "grad_clip", "schedule",
                                                       "warmup_steps")},
            "steps_per_block": n, "samples_per_call": ns,
            "genjax_compile": {**timings, "sampler_s": sample_compile_s},
            "peer_check": peer,
        }

    # each call returns the work it did (a torch block stops early past its time cap)
    done = {k: [] for k in contenders}
    fns = {k: (lambda k=k, fn=fn: done[k].append(fn())) for k, fn in contenders.items()}
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    with common.CpuContention() as contention:
        times = common.interleaved(fns, repeats=repeats, warmup=1, pause_s=pause_s)
    torch.set_num_threads(cores)
    rates = {k: float(np.median([w / t for w, t in zip(done[k][-repeats:], times[k])]))
             for k in contenders}

    def side(key, unit, per):
        out = {unit: rates[key], "block_s": common.summarize(times[key]),
               "work_per_block": done[key][-repeats:]}
        if per:
            out["examples_per_s"] = rates[key] * per
        return out

    record_cases = {}
    for case, c in info.items():
        train = {s: side(f"{case}_{s}_train", "steps_per_s", c["batch_size"])
                 for s in TRAIN_SIDES if f"{case}_{s}_train" in rates}
        best = max((s for s in train if s != "genjax"), key=lambda s: train[s]["steps_per_s"])
        g = train["genjax"]["steps_per_s"]
        sample = {s: side(f"{case}_{s}_sample", "samples_per_s", 0)
                  for s in SAMPLE_SIDES if f"{case}_{s}_sample" in rates}
        best_s = max((s for s in sample if s != "genjax"),
                     key=lambda s: sample[s]["samples_per_s"])
        gs = sample["genjax"]["samples_per_s"]
        record_cases[case] = {
            **{k: v for k, v in c.items() if k != "peer_check"},
            "train": {
                **train, "best_torch": best,
                "ratio_genjax_over_torch": g / train[best]["steps_per_s"],
                "ratio_genjax_over_each_arm": {s: g / train[s]["steps_per_s"]
                                               for s in train if s != "genjax"},
            },
            "sampling": {
                **sample, "best_torch": best_s,
                "ratio_genjax_over_torch": gs / sample[best_s]["samples_per_s"],
                "ratio_genjax_over_each_arm": {s: gs / sample[s]["samples_per_s"]
                                               for s in sample if s != "genjax"},
            },
            "peer_check": c["peer_check"],
        }
    targets = dict(TARGETS)
    if "mlp" in record_cases:
        ratio = record_cases["mlp"]["train"]["ratio_genjax_over_torch"]
        targets["mlp_train_speedup_vs_torch_met"] = bool(
            ratio >= TARGETS["mlp_train_speedup_vs_torch"])
    return {
        "benchmark": "flow_throughput",
        "quick": quick,
        "config": {"cases": list(cases), "repeats": repeats, "torch_threads": cores,
                   "jax_backend": jax.default_backend(),
                   "jax_devices": len(jax.devices()),
                   "torch_block_cap_s": TORCH_BLOCK_CAP_S},
        "cases": record_cases,
        "load_average_before_timing": load_before,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": targets,
    }


def summary_text(r: dict) -> str:
    c = r["config"]
    lines = [f"RealNVP, jax on {c['jax_devices']} {c['jax_backend']} device(s), torch eager "
             f"({c['torch_threads']} threads unless said); medians of {c['repeats']} "
             "interleaved rounds"]
    for case, v in r["cases"].items():
        t, s, pc = v["train"], v["sampling"], v["peer_check"]
        torch_train = ", ".join(f"{LABELS[k]} {t[k]['steps_per_s']:.1f}"
                                for k in TRAIN_SIDES[1:] if k in t)
        torch_sample = ", ".join(f"{LABELS[k] if k != 'torch' else 'all threads'} {s[k]['samples_per_s']:.0f}"
                                 for k in SAMPLE_SIDES[1:] if k in s)
        lines += [
            f"  {case}: {v['model']}, batch {v['batch_size']}",
            f"    train  genjax {t['genjax']['steps_per_s']:.1f} steps/s "
            f"(compile {v['genjax_compile']['lower_and_compile_s']:.1f} s, apart); torch "
            f"{torch_train}",
            f"           genjax / {t['best_torch']} = {t['ratio_genjax_over_torch']:.2f}x",
            f"    sample genjax {s['genjax']['samples_per_s']:.0f} samples/s; torch "
            f"{torch_sample}; genjax / {s['best_torch']} = "
            f"{s['ratio_genjax_over_torch']:.2f}x ({v['samples_per_call']} per call)",
            f"    peer check (perturbed weights): log p within "
            f"{pc['log_likelihood_max_rel_diff']:.1e}, gradients within "
            f"{pc['grad_max_rel_diff']:.1e}, inverse within {pc['inverse_max_rel_diff']:.1e} "
            "(relative)",
        ]
    tg = r["targets"]
    if "mlp_train_speedup_vs_torch_met" in tg:
        lines.append(f"  target: mlp training genjax / best torch >= "
                     f"{tg['mlp_train_speedup_vs_torch']}x: "
                     f"{'met' if tg['mlp_train_speedup_vs_torch_met'] else 'NOT met'}")
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    p = common.base_parser("benchmarks.flow_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved rounds (default 5; 1 with --quick)",
                           quick_help="tiny flows and blocks: seconds, for smoke tests")
    p.add_argument("--cases", default="mlp,conv", help="comma-separated: mlp, conv")
    p.add_argument("--mlp-steps", type=int, default=None,
                   help="mlp training steps per timed block (default 250; 3 with --quick)")
    p.add_argument("--conv-steps", type=int, default=None,
                   help="conv training steps per timed block (default 50; 3 with --quick)")
    p.add_argument("--mlp-samples", type=int, default=None,
                   help="mlp samples per sampling call (default 1000; 16 with --quick)")
    p.add_argument("--conv-samples", type=int, default=None,
                   help="conv samples per sampling call (default 256; 16 with --quick)")
    args = common.parse_positive(p, argv, ("repeats", "mlp_steps", "conv_steps",
                                           "mlp_samples", "conv_samples"))
    cases = tuple(s.strip() for s in args.cases.split(",") if s.strip())
    bad = [s for s in cases if s not in CASES]
    if bad or not cases:
        p.error(f"--cases: unknown case(s) {bad}; expected some of {list(CASES)}")
    args.cases = cases
    return args


def main(argv=None) -> dict:
    a = parse_args(argv)
    q = a.quick
    steps = {"mlp": a.mlp_steps or (3 if q else 250), "conv": a.conv_steps or (3 if q else 50)}
    samples = {"mlp": a.mlp_samples or (16 if q else 1000),
               "conv": a.conv_samples or (16 if q else 256)}
    record = run_benchmark(cases=a.cases, steps=steps, samples=samples,
                           repeats=a.repeats or (1 if q else 5), quick=q)
    return common.finish(a.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
