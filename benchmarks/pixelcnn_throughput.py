"""PixelCNN throughput: training steps/s and sampling images/s of genjax's gated PixelCNN
(`genjax.models.pixelcnn.PixelCNN`) against a PyTorch twin computing the same numbers
from the same weights.

    python -m benchmarks.pixelcnn_throughput
        [--out=benchmarks/results/pixelcnn_throughput.json] [--sizes=8x8,28x28]
        [--arch=gated] [--steps=N] [--samples=N] [--repeats=3] [--cpu-devices=1]
        [--no-xla-defaults-arm] [--quick]

Two model sizes, both measured in one run, every contender of both interleaved
round-robin (`benchmarks.common.interleaved`, ``--repeats`` rounds; each runner warms
itself up when it is built); every number is a median over rounds, and
``other_processes_cpu_fraction`` records how busy the CPUs were with other processes
meanwhile (0 = idle machine):

* ``8x8``: the sizes of configs/pixelcnn.py:digits: 8-bit 8x8 sklearn digits, a 256-way
  softmax per pixel (levels 256), 32 channels, 4 gated blocks of kernel 3 after a first
  layer of kernel 7, a 1x1 head of 128 ReLUs, batch 64;
* ``28x28``: the sizes of the default preset: dynamically binarised 28x28 mnist5k,
  Bernoulli pixels (levels 2), 32 channels, 5 gated blocks, head 64, batch 32.

Both take their sizes, optimiser and data from `configs/pixelcnn.py` (``get_config
("digits")`` / ``get_config()``); ``--arch=plain`` swaps in the masked-convolution stack.
The output biases start at zero (the config's ``init_bias_from_data`` is not applied:
the speed does not depend on it).

Training (steps/s), the whole step of the experiment: the mean NLL (nats per image) of a
batch, its gradients, clipping to the config's global norm (1.0), Adam at the config's
learning rate times its cosine schedule.

* genjax: `genjax.train.make_optimizer` / `init_state` / `make_train_step` on the
  model's ``log_prob``, run through `genjax.train.loop.make_chunk`
  (`common.compiled_chunk`: ``--steps`` steps in one compiled ``lax.scan`` per dispatch,
  batches drawn and binarised on the device, under `genjax.xla`'s CPU compiler
  options), as an experiment trains. Compile time is reported apart. On a CPU a second
  arm, ``genjax_xla_defaults``, compiles the same chunk with XLA's default options
  (plain ``jax.jit``; `common.xla_defaults`), to show what the options are worth here.
  The batch is sharded over ``--cpu-devices`` jax CPU devices (default: one per core,
  as `benchmarks.nade_throughput`; the experiments train on one device unless
  ``JAX_NUM_CPU_DEVICES`` is set). On a 2-core AMD EPYC one device per core trained the 8x8
  model 1.3x faster than one device whose convolutions use both cores (28x28: 1.1x).
* torch: the same network as an ``nn.Module`` (`make_torch_pixelcnn`, NCHW), eager:
  forward, ``backward``, ``clip_grad_norm_``, ``torch.optim.Adam`` with the schedule's
  learning rate, batches from a per-epoch ``randperm`` (binarised with
  ``torch.bernoulli`` at 28x28). Two arms: ``torch.set_num_threads(<cores>)``, and one
  thread (on a shared 2-core machine another process on one core can stall OpenMP's
  second thread at every barrier). The faster arm is the peer every ratio is judged
  against. A torch block stops after 5 s (1 s with ``--quick``) even if short of its
  steps; rates are work done / time, per block.

Sampling (images/s): ancestral sampling in raster order, one full forward pass of the
network per pixel (D passes per batch of images), the same algorithm on both sides:
genjax's compiled ``PixelCNN.sample`` (one ``lax.scan`` over the pixels, under
``genjax.xla.jit``, the images split over the jax devices with ``shard_map``; compile
time excluded and reported apart) against the twin's Python
loop over pixels under ``torch.no_grad()`` (all cores, and one thread; the faster is the
peer), ``--samples`` images per call. A torch call stops after 5 s; the pixels it drew
count as that fraction of the images (every pixel costs the same full pass).

Peer check (``peer_check`` per size, run before timing; the run stops if it fails):
genjax's initial weights, perturbed with N(0, 0.02^2) noise so that the zero-initialised
biases do something, are copied into the twin (conv kernels [kh, kw, in, out] ->
[out, in, kh, kw], dense [in, out] -> [out, in]); on one real training batch (at 28x28
binarised by genjax, handed to torch as data) both compute every pixel's
log p(x_i | x_<i), the per-image log p(x), and the gradients of the mean NLL for every
parameter tensor; and genjax's log_prob of images drawn by the twin's sampler equals the
log p the sampler accumulated pixel by pixel (so the twin's sampler conditions on the
pixels the model does). Errors are relative to the largest entry of each reference (per
gradient tensor); tolerances in `TOLERANCES`; the max errors are in the JSON.

Target (in the JSON, never a failure): genjax trains the 8x8 model at least 1.5x as many
steps/s as the best torch arm on a CPU.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common, torch_twin
from benchmarks.torch_twin import flat_params

DEFAULT_OUT = os.path.join("benchmarks", "results", "pixelcnn_throughput.json")
SIZES = {"8x8": "digits", "28x28": None}          # size -> configs/pixelcnn.py preset
TARGETS = {"train_8x8_speedup_vs_torch": 1.5}
# relative to the largest entry of the reference (per gradient tensor): float32 sums in
# another order differ by ~1e-6 of that
TOLERANCES = {"pixel_log_probs": 1e-4, "log_prob": 1e-5, "grad": 1e-4,
              "sampler_log_prob": 1e-4}
PERTURB = 0.02
TORCH_BLOCK_CAP_S = 5.0
QUICK_TORCH_BLOCK_CAP_S = 1.0
# per size: training steps per timed block, images per sampling call (full / quick)
STEPS = {"8x8": 20, "28x28": 3}
SAMPLES = {"8x8": 64, "28x28": 2}
QUICK_STEPS, QUICK_SAMPLES = 2, 4
# --quick: tiny models on centre crops of the same data (seconds, for smoke tests)
QUICK_MODEL = dict(channels=4, layers=1, head=8, first_kernel=3)
QUICK_CROP = {"8x8": 5, "28x28": 6}
QUICK_BATCH = 8


def _torch():
    import torch     # only the benchmark imports torch; genjax never does
    return torch


# ------------------------------------------------------------------------------ setup

def size_config(size: str, *, arch: str = "gated", quick: bool = False):
    """The configs/pixelcnn.py preset of ``size`` (``arch`` swapped in); ``quick``: a
    tiny model and batch."""
    from configs import pixelcnn as pixelcnn_config
    config = pixelcnn_config.get_config(SIZES[size])
    config.unlock()
    config.model.arch = arch
    if quick:
        config.model.update(QUICK_MODEL)
        config.train.batch_size = QUICK_BATCH
    config.lock()
    return config


def load_data(config, crop: int | None = None) -> np.ndarray:
    """The config's stored (uint8) training split [N, H, W, 1]; ``crop``: its centre
    crop x crop."""
    from genjax import data as gdata
    x = np.asarray(gdata.load(config.data.name).train)
    if crop:
        h0, w0 = (x.shape[1] - crop) // 2, (x.shape[2] - crop) // 2
        x = np.ascontiguousarray(x[:, h0:h0 + crop, w0:w0 + crop])
    return x


class Built(NamedTuple):
    """The genjax side: ``state`` the TrainState at the initial weights, ``loss_fn``
    (params, uint8 batch, key, hparams) -> (mean NLL, metrics), ``model(params)`` -> the
    PixelCNN module."""
    state: object
    tx: object
    lr_schedule: Callable
    loss_fn: Callable
    model: Callable


def build(config, example_shape) -> Built:
    """The config's PixelCNN for images ``example_shape`` [H, W, 1] (seed config.seed,
    output biases zero), its optimiser and the training loss on stored batches."""
    from flax import nnx

    from genjax.data import transforms
    from genjax.losses import autoregressive as ar
    from genjax.models.pixelcnn import PixelCNN
    from genjax.train import init_state, make_optimizer

    m = config.model
    module = PixelCNN(example_shape, arch=m.arch, channels=m.channels, layers=m.layers,
                      kernel=m.kernel, first_kernel=m.first_kernel, head=m.head,
                      levels=m.levels, rngs=nnx.Rngs(config.seed))
    graphdef, params, consts = nnx.split(module, nnx.Param, ...)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, hparams)
    model_of = lambda p: nnx.merge(graphdef, p, consts)        # noqa: E731
    mode = config.data.preprocess

    def loss_fn(params, batch, key, hp):
        del hp                                   # lr and clipping act in the step
        x = transforms.preprocess(key, batch, mode)               # [B, H, W, 1] float
        return ar.nll_loss(model_of(params).log_prob(x))

    return Built(state, tx, lr_schedule, loss_fn, model_of)


# ------------------------------------------------------------------------------ torch

def torch_layers():
    """The twin's layers, NCHW, as ``torch.nn.Conv2d`` / ``nn.Linear`` subclasses (so
    genjax's "kernel" is their ``weight``): {name: class}. A test can hand
    `make_torch_pixelcnn` a broken one in their place."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional

    class VerticalConv(nn.Conv2d):
        """Output row r sees rows r - k//2 .. r - 1 ("A") or .. r ("B"), columns
        c - k//2 .. c + k//2: kernel (k//2 (+1), k), k//2 rows of zeros padded on top
        only, the first H output rows kept (`genjax.nn.masked_conv.VerticalConv`)."""

        def __init__(self, cin, cout, k, mask_type):
            super().__init__(cin, cout, (k // 2 + (mask_type == "B"), k))
            self.p, self.mask_type = k // 2, mask_type

        def forward(self, x):
            p = self.p
            return super().forward(F.pad(x, (p, p, p, 0)))[:, :, :x.shape[2]]

    class HorizontalConv(nn.Conv2d):
        """Output column c of row r sees columns c - k//2 .. c - 1 ("A") or .. c ("B") of
        row r: kernel (1, k//2 (+1)), zeros padded on the left only."""

        def __init__(self, cin, cout, k, mask_type):
            super().__init__(cin, cout, (1, k // 2 + (mask_type == "B")))
            self.p, self.mask_type = k // 2, mask_type

        def forward(self, x):
            return super().forward(F.pad(x, (self.p, 0, 0, 0)))[:, :, :, :x.shape[3]]

    class MaskedConv(nn.Conv2d):
        """A k x k "same" convolution whose kernel is multiplied by the raster mask."""

        def __init__(self, cin, cout, k, mask_type):
            super().__init__(cin, cout, k, padding=k // 2)
            c, self.mask_type = k // 2, mask_type
            mask = torch.zeros(k, k)
            mask[:c] = 1.0
            mask[c, :c + (mask_type == "B")] = 1.0
            self.register_buffer("mask", mask)

        def forward(self, x):
            return self._conv_forward(x, self.weight * self.mask, self.bias)

    class Dense(nn.Linear):
        """A dense layer on the channels of NCHW features (a 1 x 1 convolution)."""

        def forward(self, x):
            return F.conv2d(x, self.weight[:, :, None, None], self.bias)

    return {"VerticalConv": VerticalConv, "HorizontalConv": HorizontalConv,
            "MaskedConv": MaskedConv, "Dense": Dense}


def make_torch_pixelcnn(example_shape, m, *, layers: dict | None = None):
    """The PyTorch twin of `genjax.models.pixelcnn.PixelCNN` for the config section
    ``m`` and images [H, W, 1], with genjax's module names (so a genjax parameter state
    copies in by path; see `load_genjax_params`). ``layers`` replaces some of
    `torch_layers` (tests). Images are NCHW [B, 1, H, W] with values 0..levels-1.

    logits(x) -> [B, D] (levels 2) or [B, D, K]; pixel_log_probs(x) -> [B, D];
    log_prob(x) -> [B] nats; sample(num, generator) -> (x [num, 1, H, W], log p [num]),
    one full forward pass per pixel."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    L = {**torch_layers(), **(layers or {})}
    h, w = int(example_shape[0]), int(example_shape[1])
    dim, levels, c = h * w, int(m.levels), int(m.channels)
    n_out = 1 if levels == 2 else levels

    def gate(f):
        a, b = torch.chunk(f, 2, dim=1)
        return torch.tanh(a) * torch.sigmoid(b)

    class GatedBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.v = L["VerticalConv"](c, 2 * c, m.kernel, "B")
            self.h = L["HorizontalConv"](c, 2 * c, m.kernel, "B")
            self.v_to_h = L["Dense"](2 * c, 2 * c)
            self.h_out = L["Dense"](c, c)

        def forward(self, v, hh):
            fv = self.v(v)
            fh = self.h(hh) + self.v_to_h(fv)
            return gate(fv), hh + self.h_out(gate(fh))

    class PlainBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = L["MaskedConv"](c, c, m.kernel, "B")

        def forward(self, hh):
            return hh + self.conv(F.relu(hh))

    class PixelCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.gated = m.arch == "gated"
            if self.gated:
                self.v_in = L["VerticalConv"](1, c, m.first_kernel, "A")
                self.h_in = L["HorizontalConv"](1, c, m.first_kernel, "A")
                self.blocks = nn.ModuleList([GatedBlock() for _ in range(m.layers)])
            else:
                self.first = L["MaskedConv"](1, c, m.first_kernel, "A")
                self.blocks = nn.ModuleList([PlainBlock() for _ in range(m.layers)])
            self.head = L["Dense"](c, m.head)
            self.out = L["Dense"](m.head, n_out)
            self.out_bias = nn.Parameter(torch.zeros((dim,) if levels == 2 else (dim, levels)))

        def features(self, x):
            u = x * (2.0 / (levels - 1)) - 1.0
            if self.gated:
                v, hh = self.v_in(u), self.h_in(u)
                for block in self.blocks:
                    v, hh = block(v, hh)
                return hh
            hh = self.first(u)
            for block in self.blocks:
                hh = block(hh)
            return hh

        def logits(self, x):
            b = x.shape[0]
            y = self.out(F.relu(self.head(F.relu(self.features(x)))))    # [B, K, H, W]
            y = y.permute(0, 2, 3, 1).reshape(b, dim, n_out)              # raster order
            return y[..., 0] + self.out_bias if levels == 2 else y + self.out_bias

        def pixel_log_probs(self, x):
            flat = x.reshape(x.shape[0], dim)
            logits = self.logits(x)
            if levels == 2:
                return flat * logits - F.softplus(logits)
            lsm = F.log_softmax(logits, -1)
            return lsm.gather(-1, flat.long()[..., None])[..., 0]

        def log_prob(self, x):
            return self.pixel_log_probs(x).sum(1)

        def sample(self, num, generator=None, *, max_s: float | None = None):
            """Ancestral samples, one full forward pass per pixel; ``max_s``: stop
            after that many seconds (the pixels drawn so far are then a fraction of
            the images, `sampled_pixels` of them)."""
            x = torch.zeros(num, 1, h, w)
            log_p = torch.zeros(num)
            t0 = time.perf_counter()
            self.sampled_pixels = dim
            for i in range(dim):
                if max_s is not None and time.perf_counter() - t0 > max_s:
                    self.sampled_pixels = i
                    break
                logits = self.logits(x)[:, i]                             # [N] or [N, K]
                if levels == 2:
                    v = torch.bernoulli(torch.sigmoid(logits), generator=generator)
                    lp = v * logits - F.softplus(logits)
                else:
                    lsm = F.log_softmax(logits, -1)
                    idx = torch.multinomial(lsm.exp(), 1, generator=generator)     # [N, 1]
                    v, lp = idx[:, 0].float(), lsm.gather(-1, idx)[:, 0]
                x[:, 0, i // w, i % w] = v
                log_p += lp
            return x, log_p

    return PixelCNN()


# the per-pixel output bias [D] / [D, K] is copied as it is, not as a dense kernel
AS_IS = (("out_bias",),)


def load_genjax_params(model, params):
    """Copies a genjax PixelCNN's parameters into the twin in place (`torch_twin`)."""
    return torch_twin.load_genjax_params(model, params, as_is=AS_IS)


def torch_grads_as_genjax(model, paths) -> dict:
    return torch_twin.torch_grads_as_genjax(model, paths, as_is=AS_IS)


def torch_pixelcnn_from_genjax(config, example_shape, params, *, layers=None):
    return load_genjax_params(make_torch_pixelcnn(example_shape, config.model,
                                                  layers=layers), params)


def _nchw(a):
    """A host NHWC array -> a torch NCHW float32 tensor."""
    return _torch().from_numpy(np.array(np.asarray(a, np.float32).transpose(0, 3, 1, 2)))


# -------------------------------------------------------------------------- peer check

def _max_rel(ref, x) -> float:
    """max |ref - x| / max |ref|."""
    ref, x = np.asarray(ref, np.float64), np.asarray(x, np.float64)
    return float(np.max(np.abs(ref - x)) / (np.max(np.abs(ref)) + 1e-30))


@jax.jit
def perturbed(params, key, scale: float):
    """params + N(0, scale^2) noise on every entry (the zero biases included)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [p + scale * jax.random.normal(k, p.shape, p.dtype)
                  for p, k in zip(leaves, keys)])


class Reference(NamedTuple):
    """genjax's side of the peer check: the perturbed ``params`` (host), the batch ``x``
    [B, H, W, 1] (preprocessed, host), pixel log-probabilities [B, D], log p [B], the
    gradients of the mean NLL (host pytree), and ``log_prob(params, x)`` compiled."""
    params: object
    x: np.ndarray
    pixel_log_probs: np.ndarray
    log_prob: np.ndarray
    grads: object
    log_prob_fn: Callable


def genjax_reference(config, train_u8: np.ndarray, *, seed: int = 0,
                     built: Built | None = None) -> Reference:
    """genjax's numbers for the peer check: the initial weights perturbed by N(0,
    `PERTURB`^2), a batch of the config's size drawn from ``train_u8`` and preprocessed
    (binarised) by genjax, all under `genjax.xla.jit` as training runs them."""
    from genjax import xla
    from genjax.data import transforms
    b = built or build(config, train_u8.shape[1:])
    key = jax.random.key(seed)
    bsz = int(config.train.batch_size)
    idx = np.sort(np.random.default_rng(seed).choice(len(train_u8), bsz, replace=False))
    batch = jnp.asarray(train_u8[idx])
    params = perturbed(b.state.params, jax.random.fold_in(key, 1), PERTURB)
    x = transforms.preprocess(jax.random.fold_in(key, 2), batch, config.data.preprocess)

    @xla.jit
    def genjax_side(params, x):
        model = b.model(params)
        nll = lambda p: -jnp.mean(b.model(p).log_prob(x))           # noqa: E731
        return model.pixel_log_probs(x), model.log_prob(x), jax.grad(nll)(params)

    pix, lp, grads = jax.device_get(genjax_side(params, x))
    return Reference(jax.device_get(params), np.asarray(x), np.asarray(pix), np.asarray(lp),
                     grads, xla.jit(lambda p, s: b.model(p).log_prob(s)))


def peer_check(config, train_u8: np.ndarray, *, seed: int = 0, num_samples: int = 1,
               reference: Reference | None = None, layers: dict | None = None,
               tamper: Callable | None = None) -> dict:
    """genjax's per-pixel log-probabilities, log p(x) and gradients of the mean NLL
    (`genjax_reference`, or ``reference``) against the twin's, from the same perturbed
    weights on the same batch; and genjax's log p of ``num_samples`` images the twin
    samples against the log p its sampler accumulated. ``layers`` (replacement twin
    layers, see `make_torch_pixelcnn`) and ``tamper(torch_model)`` (called under no_grad
    after the weights are copied) exist for tests that break the twin. ``ok``: every
    error within `TOLERANCES`. Torch runs on one thread here (the numbers do not depend
    on it, and on a busy machine several threads stall)."""
    torch = _torch()
    ref = reference or genjax_reference(config, train_u8, seed=seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = torch_pixelcnn_from_genjax(config, train_u8.shape[1:], ref.params,
                                           layers=layers)
        if tamper is not None:
            with torch.no_grad():
                tamper(model)
        pix_t = model.pixel_log_probs(_nchw(ref.x))
        lp_t = pix_t.sum(1)
        model.zero_grad(set_to_none=True)
        (-lp_t.mean()).backward()
        with torch.no_grad():
            s_t, s_lp_t = model.sample(num_samples, torch.Generator().manual_seed(seed))
    finally:
        torch.set_num_threads(threads)
    paths = list(flat_params(ref.params))
    grads_t = torch_grads_as_genjax(model, paths)
    g_j = flat_params(ref.grads)
    grad_diff = {p: _max_rel(g_j[p], grads_t[p]) for p in paths}
    worst = max(grad_diff, key=grad_diff.get)
    s_lp_j = ref.log_prob_fn(ref.params, jnp.asarray(s_t.numpy().transpose(0, 2, 3, 1)))

    out = {
        "seed": seed, "batch_size": len(ref.x), "perturbation_std": PERTURB,
        "num_param_tensors": len(paths),
        "mean_log_prob_genjax": float(np.mean(ref.log_prob)),
        "mean_log_prob_torch": float(lp_t.detach().mean()),
        "pixel_log_probs_max_rel_diff": _max_rel(ref.pixel_log_probs,
                                                 pix_t.detach().numpy()),
        "log_prob_max_rel_diff": _max_rel(ref.log_prob, lp_t.detach().numpy()),
        "grad_max_rel_diff": grad_diff[worst],
        "grad_worst_tensor": ".".join(map(str, worst)),
        "sampler_num_images": num_samples,
        "sampler_log_prob_max_rel_diff": _max_rel(np.asarray(s_lp_j), s_lp_t.numpy()),
        "tolerances": TOLERANCES,
    }
    out["ok"] = bool(out["pixel_log_probs_max_rel_diff"] <= TOLERANCES["pixel_log_probs"]
                     and out["log_prob_max_rel_diff"] <= TOLERANCES["log_prob"]
                     and out["grad_max_rel_diff"] <= TOLERANCES["grad"]
                     and out["sampler_log_prob_max_rel_diff"]
                     <= TOLERANCES["sampler_log_prob"])
    return out


# ---------------------------------------------------------------------------- runners

def genjax_train_runner(config, b: Built, train_u8, steps: int):
    """run() -> steps: ``steps`` training steps in one compiled dispatch (the
    experiment's chunk) from a copy of ``b.state`` (the chunk donates its state); and
    the compile timings."""
    from genjax.train import make_train_step
    step = make_train_step(b.loss_fn, b.tx, b.lr_schedule)
    state = jax.tree_util.tree_map(jnp.copy, b.state)
    chunk, timings, _ = common.compiled_chunk(step, state, train_u8,
                                              batch_size=config.train.batch_size,
                                              steps=steps, seed=config.seed)

    def run():
        chunk()
        return steps

    run()                                    # warm-up: one chunk
    return run, timings


def genjax_sampler(b: Built, params, num: int):
    """run() -> num: ``num`` images from the compiled ``PixelCNN.sample`` (a fresh key
    each call); and its compile time (the first call). With several jax devices (and
    ``num`` a multiple of their count) each device draws its share with its own key
    (shard_map), as `benchmarks.nade_throughput` samples; else one device draws all."""
    from jax.sharding import PartitionSpec as P

    from genjax import xla
    from genjax.train import sharding
    mesh = sharding.data_mesh()
    ndev = mesh.size if num % mesh.size == 0 else 1
    if ndev > 1:
        def local(params, key):
            key = jax.random.fold_in(key, jax.lax.axis_index("data"))
            return b.model(params).sample(key, num // ndev)[0]

        # check_vma=False: the scan's carry starts replicated and becomes per-device once
        # it depends on the per-device key, which the varying-axes check would reject
        sample = xla.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(), P()),
                                       out_specs=P("data"), check_vma=False))
        params = sharding.replicate(params, mesh)
    else:
        sample = xla.jit(lambda p, k: b.model(p).sample(k, num)[0])
    count = {"i": 0}
    t = time.perf_counter()
    jax.block_until_ready(sample(params, jax.random.key(0)))
    compile_s = time.perf_counter() - t

    def run():
        count["i"] += 1
        jax.block_until_ready(sample(params, jax.random.key(count["i"])))
        return num

    return run, compile_s


def torch_train_runner(config, train_u8, params, steps: int, *, threads: int,
                       max_s: float = TORCH_BLOCK_CAP_S):
    """run() -> steps done: ``steps`` eager training steps (fewer when a block has taken
    ``max_s`` seconds) from genjax's ``params`` (mean NLL, backward, clip_grad_norm_,
    Adam at the schedule's learning rate) with ``threads`` intra-op threads, batches
    without replacement from a fresh randperm each epoch."""
    torch = _torch()
    model = torch_pixelcnn_from_genjax(config, train_u8.shape[1:], params)
    binarize = config.data.preprocess == "dynamic_binarize"
    if not binarize and config.data.preprocess != "none":
        raise ValueError(f"the torch peer handles preprocess 'dynamic_binarize' and 'none', "
                         f"got {config.data.preprocess!r}")
    data = torch.from_numpy(np.array(train_u8.transpose(0, 3, 1, 2)))

    def batch_loss(x):
        x = x.float()
        if binarize:
            x = torch.bernoulli(x / 255.0)
        return -model.log_prob(x).mean()

    run = torch_twin.adam_runner(config, model, data, batch_loss, steps, threads=threads,
                                 max_s=max_s)
    run(1)                                   # warm-up: one step
    return run


def torch_sampler(config, example_shape, params, num: int, *, threads: int,
                  max_s: float = TORCH_BLOCK_CAP_S):
    """run() -> images done: ``num`` images from the twin's ancestral loop under
    no_grad with ``threads`` intra-op threads; a call that has taken ``max_s`` seconds
    stops, and the pixels it drew count as that fraction of ``num`` images (every pixel
    costs one full forward pass)."""
    torch = _torch()
    model = torch_pixelcnn_from_genjax(config, example_shape, params)
    gen = torch.Generator().manual_seed(0)
    dim = math.prod(example_shape)
    torch.set_num_threads(threads)
    with torch.no_grad():                         # warm-up: one forward pass
        model.logits(torch.zeros(num, 1, *example_shape[:2]))

    def run():
        torch.set_num_threads(threads)
        with torch.no_grad():
            x, _ = model.sample(num, gen, max_s=max_s)
            float(x.sum())
        return num * model.sampled_pixels / dim

    return run


# -------------------------------------------------------------------------- benchmark

def _describe(config, shape) -> str:
    m = config.model
    what = ("Bernoulli pixels" if m.levels == 2 else f"{m.levels}-way softmax pixels")
    return (f"{m.arch} PixelCNN, {m.channels} channels, {m.layers} blocks of kernel "
            f"{m.kernel}, first kernel {m.first_kernel}, head {m.head}, {what}, on "
            f"{config.data.name} {tuple(shape)} ({config.data.preprocess})")


TRAIN_SIDES = ("genjax", "genjax_xla_defaults", "torch", "torch_1thread")
SAMPLE_SIDES = ("genjax", "torch", "torch_1thread")


def run_benchmark(*, sizes=("8x8", "28x28"), arch: str = "gated", steps=None, samples=None,
                  repeats: int = 3, quick: bool = False, xla_defaults_arm: bool = True,
                  pause_s: float = 0.05) -> dict:
    """Measures everything and returns the JSON record (without device/versions).
    ``steps`` / ``samples``: {size: training steps per block / images per call}."""
    torch = _torch()
    cores = common.core_count()
    torch.set_num_threads(cores)
    cap = QUICK_TORCH_BLOCK_CAP_S if quick else TORCH_BLOCK_CAP_S
    steps = steps or {s: (QUICK_STEPS if quick else STEPS[s]) for s in sizes}
    samples = samples or {s: (QUICK_SAMPLES if quick else SAMPLES[s]) for s in sizes}
    contenders, info = {}, {}
    for size in sizes:
        config = size_config(size, arch=arch, quick=quick)
        train_u8 = load_data(config, QUICK_CROP[size] if quick else None)
        shape = train_u8.shape[1:]
        b = build(config, shape)
        t = time.perf_counter()
        peer = peer_check(config, train_u8, seed=config.seed,
                          reference=genjax_reference(config, train_u8, seed=config.seed,
                                                     built=b))
        peer["seconds"] = time.perf_counter() - t
        if not peer["ok"]:
            raise SystemExit(f"error: the torch peer of the {size} model does not compute "
                             f"genjax's numbers (tolerances {TOLERANCES}): {peer}")
        host_params = jax.device_get(b.state.params)
        params = jax.tree_util.tree_map(jnp.asarray, host_params)
        n, ns = steps[size], samples[size]
        g_train, timings = genjax_train_runner(config, b, train_u8, n)
        g_sample, sample_compile_s = genjax_sampler(b, params, ns)
        mine = {"genjax_train": g_train}
        if xla_defaults_arm and common.before_arm_wanted():
            with common.xla_defaults():    # lowered (and traced) inside: loop_conv too
                mine["genjax_xla_defaults_train"], timings_defaults = genjax_train_runner(
                    config, b, train_u8, n)
            timings["xla_defaults_lower_and_compile_s"] = \
                timings_defaults["lower_and_compile_s"]
        mine.update({
            "torch_train": torch_train_runner(config, train_u8, host_params, n,
                                              threads=cores, max_s=cap),
            "torch_1thread_train": torch_train_runner(config, train_u8, host_params, n,
                                                      threads=1, max_s=cap),
            "genjax_sample": g_sample,
            "torch_sample": torch_sampler(config, shape, host_params, ns, threads=cores,
                                          max_s=cap),
            "torch_1thread_sample": torch_sampler(config, shape, host_params, ns, threads=1,
                                                  max_s=cap),
        })
        if cores == 1:                       # the 1-thread arms would repeat the others
            mine = {k: v for k, v in mine.items() if "1thread" not in k}
        contenders.update({f"{size}_{k}": v for k, v in mine.items()})
        m = config.model
        info[size] = {
            "preset": SIZES[size] or "default", "model": _describe(config, shape),
            "arch": m.arch, "levels": int(m.levels), "channels": int(m.channels),
            "layers": int(m.layers), "kernel": int(m.kernel),
            "first_kernel": int(m.first_kernel), "head": int(m.head),
            "dataset": config.data.name, "preprocess": config.data.preprocess,
            "example_shape": list(shape), "batch_size": int(config.train.batch_size),
            "num_params": int(sum(x.size for x in jax.tree_util.tree_leaves(host_params))),
            "optimizer": {k: config.optim[k] for k in ("name", "lr", "b1", "b2", "eps",
                                                       "grad_clip", "schedule",
                                                       "warmup_steps")},
            "steps_per_block": n, "samples_per_call": ns,
            "forward_passes_per_sampling_call": math.prod(shape),
            "genjax_compile": {**timings, "sampler_s": sample_compile_s},
            "peer_check": peer,
        }

    # each call returns the work it did (a torch block stops early past its time cap)
    done = {k: [] for k in contenders}
    fns = {k: (lambda k=k, fn=fn: done[k].append(fn())) for k, fn in contenders.items()}
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    # every runner warmed itself up when built (a chunk, a step, a forward pass; the
    # genjax sampler compiled with one call): a warm-up round would only cost time
    with common.CpuContention() as contention:
        times = common.interleaved(fns, repeats=repeats, warmup=0, pause_s=pause_s)
    torch.set_num_threads(cores)
    rates = {k: float(np.median([w / t for w, t in zip(done[k], times[k])]))
             for k in contenders}

    # the best round's rate too: on a shared machine the quietest round is the least
    # disturbed estimate of each contender (the medians are the headline numbers)
    best_rates = {k: float(max(w / t for w, t in zip(done[k], times[k]))) for k in contenders}

    def side(key, unit, per):
        out = {unit: rates[key], f"{unit}_best_round": best_rates[key],
               "block_s": common.summarize(times[key]), "work_per_block": done[key]}
        if per:
            out["examples_per_s"] = rates[key] * per
        return out

    record_sizes = {}
    for size, c in info.items():
        train = {s: side(f"{size}_{s}_train", "steps_per_s", c["batch_size"])
                 for s in TRAIN_SIDES if f"{size}_{s}_train" in rates}
        torch_arms = [s for s in train if s.startswith("torch")]
        best = max(torch_arms, key=lambda s: train[s]["steps_per_s"])
        g = train["genjax"]["steps_per_s"]
        sample = {s: side(f"{size}_{s}_sample", "images_per_s", 0)
                  for s in SAMPLE_SIDES if f"{size}_{s}_sample" in rates}
        best_s = max((s for s in sample if s != "genjax"),
                     key=lambda s: sample[s]["images_per_s"])
        gs = sample["genjax"]["images_per_s"]
        train_rec = {
            **train, "best_torch": best,
            "ratio_genjax_over_torch": g / train[best]["steps_per_s"],
            "ratio_genjax_over_each_arm": {s: g / train[s]["steps_per_s"]
                                           for s in train if s != "genjax"},
            "ratio_genjax_over_torch_best_rounds": train["genjax"]["steps_per_s_best_round"]
            / max(train[s]["steps_per_s_best_round"] for s in torch_arms),
        }
        record_sizes[size] = {
            **{k: v for k, v in c.items() if k != "peer_check"},
            "train": train_rec,
            "sampling": {
                **sample, "best_torch": best_s,
                "ratio_genjax_over_torch": gs / sample[best_s]["images_per_s"],
                "ratio_genjax_over_each_arm": {s: gs / sample[s]["images_per_s"]
                                               for s in sample if s != "genjax"},
                "ratio_genjax_over_torch_best_rounds":
                    sample["genjax"]["images_per_s_best_round"]
                    / max(sample[s]["images_per_s_best_round"] for s in sample
                          if s != "genjax"),
            },
            "peer_check": c["peer_check"],
        }
    targets = dict(TARGETS)
    if "8x8" in record_sizes:
        ratio = record_sizes["8x8"]["train"]["ratio_genjax_over_torch"]
        targets["train_8x8_speedup_vs_torch_met"] = bool(
            ratio >= TARGETS["train_8x8_speedup_vs_torch"])
        targets["train_8x8_ratio"] = ratio
    return {
        "benchmark": "pixelcnn_throughput",
        "quick": quick,
        "config": {"sizes": list(sizes), "arch": arch, "repeats": repeats,
                   "torch_threads": cores, "jax_backend": jax.default_backend(),
                   "jax_devices": len(jax.devices()),
                   "torch_block_cap_s": cap},
        "sizes": record_sizes,
        "load_average_before_timing": load_before,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": targets,
    }


def summary_text(r: dict) -> str:
    c = r["config"]
    lines = [f"PixelCNN ({c['arch']}), jax on {c['jax_devices']} {c['jax_backend']} "
             f"device(s), torch eager ({c['torch_threads']} threads, and 1); medians of "
             f"{c['repeats']} interleaved rounds",
             f"  {'size':6s} {'':8s} {'genjax':>9s} {'XLA dflt':>9s} {'torch':>9s} "
             f"{'torch 1t':>9s} {'genjax/best torch':>18s} {'(best rounds)':>14s}"]
    fmt = lambda v, k: f"{v[k]:9.2f}" if v is not None else f"{'-':>9s}"  # noqa: E731
    for size, v in r["sizes"].items():
        t, s = v["train"], v["sampling"]
        lines.append(f"  {size:6s} {'steps/s':8s} {fmt(t.get('genjax'), 'steps_per_s')} "
                     f"{fmt(t.get('genjax_xla_defaults'), 'steps_per_s')} "
                     f"{fmt(t.get('torch'), 'steps_per_s')} "
                     f"{fmt(t.get('torch_1thread'), 'steps_per_s')} "
                     f"{t['ratio_genjax_over_torch']:17.2f}x "
                     f"{t['ratio_genjax_over_torch_best_rounds']:13.2f}x")
        lines.append(f"  {'':6s} {'images/s':8s} {fmt(s.get('genjax'), 'images_per_s')} "
                     f"{'-':>9s} {fmt(s.get('torch'), 'images_per_s')} "
                     f"{fmt(s.get('torch_1thread'), 'images_per_s')} "
                     f"{s['ratio_genjax_over_torch']:17.2f}x "
                     f"{s['ratio_genjax_over_torch_best_rounds']:13.2f}x")
    for size, v in r["sizes"].items():
        pc, gc = v["peer_check"], v["genjax_compile"]
        lines.append(f"  {size}: {v['model']}, batch {v['batch_size']}; {v['steps_per_block']} "
                     f"steps / {v['samples_per_call']} images per block; genjax compile "
                     f"{gc['lower_and_compile_s']:.1f} s (train), {gc['sampler_s']:.1f} s "
                     "(sampler), apart")
        lines.append(f"    peer check: pixel log p within "
                     f"{pc['pixel_log_probs_max_rel_diff']:.1e}, log p within "
                     f"{pc['log_prob_max_rel_diff']:.1e}, gradients within "
                     f"{pc['grad_max_rel_diff']:.1e}, sampler log p within "
                     f"{pc['sampler_log_prob_max_rel_diff']:.1e} (relative)")
    tg = r["targets"]
    if "train_8x8_speedup_vs_torch_met" in tg:
        lines.append(f"  target: 8x8 training genjax / best torch >= "
                     f"{tg['train_8x8_speedup_vs_torch']}x: "
                     f"{'met' if tg['train_8x8_speedup_vs_torch_met'] else 'NOT met'} "
                     f"({tg['train_8x8_ratio']:.2f}x)")
    lines += common.busy_lines(r)
    return "\n".join(lines)


def default_cpu_devices(batches) -> int:
    """One jax CPU device per core, or the most devices up to that dividing every batch
    size."""
    n = common.core_count()
    while n > 1 and any(b % n for b in batches):
        n -= 1
    return n


def parse_args(argv=None):
    p = common.base_parser("benchmarks.pixelcnn_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved rounds (default 3; 1 with --quick)",
                           quick_help="tiny models on 5x5 / 6x6 crops: seconds, for "
                                      "smoke tests")
    p.add_argument("--sizes", default="8x8,28x28", help="comma-separated: 8x8, 28x28")
    p.add_argument("--arch", default="gated", choices=("gated", "plain"),
                   help="the PixelCNN architecture (default gated)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed block, every size (default 8x8: "
                        f"{STEPS['8x8']}, 28x28: {STEPS['28x28']}; {QUICK_STEPS} with --quick)")
    p.add_argument("--samples", type=int, default=None,
                   help="images per sampling call, every size (default 8x8: "
                        f"{SAMPLES['8x8']}, 28x28: {SAMPLES['28x28']}; {QUICK_SAMPLES} "
                        "with --quick)")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="jax CPU devices the training batch and the samples are split "
                        "over (default: one per core, or fewer to divide the batches)")
    p.add_argument("--no-xla-defaults-arm", action="store_true",
                   help="skip the genjax arm compiled with XLA's default options")
    args = common.parse_positive(p, argv, ("repeats", "steps", "samples", "cpu_devices"))
    sizes = tuple(s.strip() for s in args.sizes.split(",") if s.strip())
    bad = [s for s in sizes if s not in SIZES]
    if bad or not sizes:
        p.error(f"--sizes: unknown size(s) {bad}; expected some of {list(SIZES)}")
    args.sizes = sizes
    batches = [int(size_config(s, arch=args.arch, quick=args.quick).train.batch_size)
               for s in sizes]
    if args.cpu_devices is None:
        args.cpu_devices = default_cpu_devices(batches)
    elif any(b % args.cpu_devices for b in batches):
        p.error(f"--cpu-devices={args.cpu_devices} must divide the batch sizes {batches}")
    return args


def main(argv=None) -> dict:
    a = parse_args(argv)
    common.set_cpu_devices(a.cpu_devices)
    q = a.quick
    steps = {s: a.steps or (QUICK_STEPS if q else STEPS[s]) for s in a.sizes}
    samples = {s: a.samples or (QUICK_SAMPLES if q else SAMPLES[s]) for s in a.sizes}
    record = run_benchmark(sizes=a.sizes, arch=a.arch, steps=steps, samples=samples,
                           repeats=a.repeats or (1 if q else 3), quick=q,
                           xla_defaults_arm=not (a.no_xla_defaults_arm or q))
    return common.finish(a.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
