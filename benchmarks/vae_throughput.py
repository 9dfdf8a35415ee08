"""Training throughput of the 784-400-20 VAE: genjax's compiled loop against PyTorch eager.

    python -m benchmarks.vae_throughput [--out=benchmarks/results/vae_throughput.json]
        [--steps=200] [--repeats=10] [--quick]

Both sides train the model of ``configs/vae.py`` (MLP 784-400-(20+20) encoder, 20-400-784
Bernoulli decoder, closed-form KL, Adam with the config's lr/b1/b2/eps) on dynamically
binarised mnist5k (4,000 training digits held on the device), batch 128:

* genjax: the experiment's own step (``make_train_step`` on ``losses.elbo``) run through
  ``genjax.train.loop.make_chunk``, the scan-of-steps dispatch the training loop uses,
  ``--steps`` steps per dispatch. Compile time (AOT ``lower`` + ``compile``) is reported
  apart from the steady state.
* torch: a straightforward eager implementation of the same model, loss and optimiser
  (``torch.optim.Adam``), batches from a per-epoch ``randperm`` of the same uint8 data,
  ``torch.bernoulli`` binarisation, ``torch.set_num_threads(<cores>)``. The targets are
  judged against it; the same with ``Adam(fused=True)`` is reported alongside.

Throughput blocks of ``--steps`` steps of each side and the matmul-peak probes run
round-robin (``--repeats`` rounds) and every number is a median over rounds, so a busy
phase of a shared machine slows all of them alike. The JSON records the share of the CPUs
that other processes used meanwhile (``other_processes_cpu_fraction``): with one core
taken, torch's OpenMP threads stall at every barrier and its numbers collapse, so only a
run near 0 is a fair comparison.

FLOPs: only matmuls are counted (`benchmarks.common.dense_training_dots`): per dense
layer 2*B*in*out forward, the same for the weight gradient, and the same for the input
gradient except in the first layer (the data needs no gradient). For the 784-400-40 /
20-400-784 layers and B = 128 that is 419,840,000 FLOPs per step; bias adds,
activations, sampling, binarisation and Adam are not counted. The achieved rate is
compared with two ceilings measured in the same run with jax: the large-matmul peak
(best of [n, n] @ [n, n], n in 1024, 2048) and the rate of exactly this step's 11 matmuls
(same shapes and transposes, looped inside one compiled program; they are independent
there, so XLA may overlap them, which makes it a ceiling for the step).

The JSON also holds a peer check: with the genjax initial weights copied into the torch
model and the same binarised batch and noise, both compute the same loss, gradients and
one-step Adam update.
"""

from __future__ import annotations

import math
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import common
from configs import vae as vae_config
from genjax import data as gdata
from experiments import vae as vae_experiment
from genjax.data import transforms
from genjax.train import make_train_step

DEFAULT_OUT = os.path.join("benchmarks", "results", "vae_throughput.json")
TARGETS = {"speedup_vs_torch": 1.5, "fraction_of_peak": 0.7}


def model_config():
    """The default preset of configs/vae.py (784-400-20 MLP VAE on mnist5k, batch 128)."""
    return vae_config.get_config()


def dense_layers(config, data_dim: int) -> list[tuple[int, int]]:
    """(in, out) of every dense layer: encoder data->hidden->2Z, decoder Z->hidden->data."""
    z, hidden = config.model.latent_dim, list(config.model.hidden)
    enc = [data_dim, *hidden, 2 * z]
    dec = [z, *reversed(hidden), data_dim]
    return list(zip(enc[:-1], enc[1:])) + list(zip(dec[:-1], dec[1:]))


# ------------------------------------------------------------------------------ genjax

def genjax_setup(config, example_shape):
    """The experiment's model, optimiser and step (`experiments.vae.build`).
    Returns (graphdef, state, loss_fn, step_fn)."""
    graphdef, state, tx, lr_schedule, loss_fn = vae_experiment.build(config, example_shape)
    return graphdef, state, loss_fn, make_train_step(loss_fn, tx, lr_schedule)


def genjax_runner(config, train_u8: np.ndarray, steps: int):
    """Compiles the training chunk of ``steps`` steps. Returns (run, timings): run()
    trains one chunk and fetches its metrics as the loop does; timings holds lower_s and
    compile_s."""
    _, state, _, step_fn = genjax_setup(config, train_u8.shape[1:])
    run, timings, _ = common.compiled_chunk(step_fn, state, train_u8,
                                            batch_size=config.train.batch_size, steps=steps,
                                            seed=config.seed)
    return run, timings


# ------------------------------------------------------------------------------- torch

def _torch():
    import torch
    return torch


def make_torch_vae(layers):
    """The same VAE in PyTorch: Linear+ReLU encoder to [mean | log_var], reparameterised
    sample, Linear+ReLU decoder to Bernoulli logits. ``layers`` as in `dense_layers`
    (one hidden layer each way)."""
    torch = _torch()
    nn, F = torch.nn, torch.nn.functional
    (d_in, h_enc), (_, two_z), (z_dim, h_dec), (_, d_out) = layers

    class TorchVAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc1, self.enc2 = nn.Linear(d_in, h_enc), nn.Linear(h_enc, two_z)
            self.dec1, self.dec2 = nn.Linear(z_dim, h_dec), nn.Linear(h_dec, d_out)

        def loss(self, x, eps=None, beta=1.0):
            """x: [B, D] in {0, 1}; eps: [B, Z] standard normal (drawn when None).
            mean_B[BCE summed over pixels + beta * KL(q || N(0, I))], nats."""
            mean, log_var = self.enc2(F.relu(self.enc1(x))).chunk(2, dim=-1)   # [B, Z]
            if eps is None:
                eps = torch.randn_like(mean)
            z = mean + torch.exp(0.5 * log_var) * eps                          # [B, Z]
            logits = self.dec2(F.relu(self.dec1(z)))                           # [B, D]
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            kl = 0.5 * (torch.exp(log_var) + mean ** 2 - 1.0 - log_var).sum(-1)
            return (rec + beta * kl).mean()

    return TorchVAE()


def _linear_params(params):
    """The genjax VAE's dense layers in order: [(kernel [in, out], bias [out])]."""
    out = []
    for part in ("encoder", "decoder"):
        for layer in params[part]["layers"].values():
            out.append((np.asarray(layer["kernel"][...]), np.asarray(layer["bias"][...])))
    return out


def torch_vae_from_genjax(params, layers):
    """A TorchVAE holding exactly the genjax parameters (kernels transposed)."""
    torch = _torch()
    model = make_torch_vae(layers)
    mods = [model.enc1, model.enc2, model.dec1, model.dec2]
    with torch.no_grad():
        for mod, (kernel, bias) in zip(mods, _linear_params(params), strict=True):
            mod.weight.copy_(torch.from_numpy(kernel.T.copy()))
            mod.bias.copy_(torch.from_numpy(bias.copy()))
    return model


def torch_adam(model, optim, *, fused: bool = False):
    """torch.optim.Adam with the config's lr, betas and eps. The default (fused=False) is
    the for-loop implementation a straightforward script gets on the CPU; fused=True is
    PyTorch's fused CPU kernel, reported alongside as the stronger peer."""
    torch = _torch()
    return torch.optim.Adam(model.parameters(), lr=optim.lr, betas=(optim.b1, optim.b2),
                            eps=optim.eps, fused=fused or None)


def torch_runner(config, train_u8: np.ndarray, steps: int, layers, *,
                 fused_adam: bool = False, device: str = "cpu"):
    """Returns run(): ``steps`` eager training steps, batches drawn without replacement
    from a fresh randperm each epoch, returning the last loss as a float (which also waits
    for a GPU to finish). ``device``: "cpu" or "cuda" (data, model and optimiser there)."""
    torch = _torch()
    torch.manual_seed(config.seed)
    data = torch.from_numpy(np.array(train_u8).reshape(len(train_u8), -1)).to(device)
    model = make_torch_vae(layers).to(device)
    opt = torch_adam(model, config.optim, fused=fused_adam)
    batch, n = int(config.train.batch_size), len(train_u8)
    beta = float(config.loss.beta)
    holder = {"perm": torch.randperm(n, device=device), "pos": 0}

    def run():
        for _ in range(steps):
            if holder["pos"] + batch > n:
                holder["perm"], holder["pos"] = torch.randperm(n, device=device), 0
            idx = holder["perm"][holder["pos"]:holder["pos"] + batch]
            holder["pos"] += batch
            x = torch.bernoulli(data[idx].float().div_(255.0))
            loss = model.loss(x, beta=beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        loss = float(loss.detach())
        if not math.isfinite(loss):
            raise FloatingPointError("torch loss became non-finite in the benchmark")
        return loss

    return run


# -------------------------------------------------------------------------- peer check

def peer_check(config=None, train_u8: np.ndarray | None = None, *, seed: int = 0) -> dict:
    """Runs both implementations from the same genjax initial weights on one batch of
    ``train_u8`` with the same binarisation and the same reparameterisation noise, and
    returns the two losses and the largest relative differences of the gradients and of
    the parameters after one Adam step (relative to each tensor's largest magnitude)."""
    torch = _torch()
    config = config or model_config()
    if train_u8 is None:
        train_u8 = np.asarray(gdata.load(config.data.name).train)
    b = int(config.train.batch_size)
    batch = jnp.asarray(train_u8[:b])
    _, state0, loss_fn, step_fn = genjax_setup(config, train_u8.shape[1:])
    params = state0.params
    layers = dense_layers(config, math.prod(train_u8.shape[1:]))
    model = torch_vae_from_genjax(params, layers)

    key = jax.random.key(seed)
    # the draws loss_fn makes: binarisation with k_data, reparameterisation noise with k_loss
    k_data, k_loss = jax.random.split(key)
    x = transforms.preprocess(k_data, batch, config.data.preprocess).reshape(b, -1)
    eps = jax.random.normal(k_loss, (b, config.model.latent_dim))

    @jax.jit
    def genjax_side(state, batch, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, key, state.hparams)
        state, _ = step_fn(state, batch, key)
        return loss, grads, state.params

    loss_j, grads, new_params = genjax_side(state0, batch, key)

    x_t, eps_t = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(eps))
    opt = torch_adam(model, config.optim)
    loss_t = model.loss(x_t, eps_t, beta=float(config.loss.beta))
    opt.zero_grad()
    loss_t.backward()
    mods = [model.enc1, model.enc2, model.dec1, model.dec2]
    grads_t = [(m.weight.grad.numpy().T, m.bias.grad.numpy()) for m in mods]
    opt.step()
    new_t = [(m.weight.detach().numpy().T, m.bias.detach().numpy()) for m in mods]

    def max_rel(pairs_a, pairs_b):
        worst = 0.0
        for ta, tb in zip(pairs_a, pairs_b, strict=True):
            for a, c in zip(ta, tb, strict=True):
                worst = max(worst, float(np.max(np.abs(a - c)) / (np.max(np.abs(a)) + 1e-30)))
        return worst

    # Adam's first step moves a parameter by about lr * sign(g): where |g| is at float32
    # rounding level the two sides' signs may differ (a move of up to 2 lr), so also count
    # the parameters whose step differs by more than 1% of lr: a wrong lr or gradient on
    # one side shows in nearly all of them.
    lr = float(config.optim.lr)
    moved = [np.abs(a - c) > 0.01 * lr for ta, tb in zip(_linear_params(new_params), new_t)
             for a, c in zip(ta, tb, strict=True)]
    return {
        "loss_genjax": float(loss_j),
        "loss_torch": float(loss_t.detach()),
        "loss_abs_diff": abs(float(loss_j) - float(loss_t.detach())),
        "grad_max_rel_diff": max_rel(_linear_params(grads), grads_t),
        "params_after_adam_step_max_rel_diff": max_rel(_linear_params(new_params), new_t),
        "params_after_adam_step_frac_differing":
            float(sum(m.sum() for m in moved) / sum(m.size for m in moved)),
    }


# ---------------------------------------------------------------------------- benchmark

def torch_device(requested: str) -> str:
    """"auto" -> "cuda" when PyTorch sees a GPU and jax runs on one, else "cpu"."""
    torch = _torch()
    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise SystemExit("error: --torch-device=cuda but PyTorch sees no GPU")
        return requested
    return "cuda" if torch.cuda.is_available() and jax.default_backend() == "gpu" else "cpu"


def run_benchmark(*, steps: int = 200, repeats: int = 10, quick: bool = False,
                  pause_s: float = 0.05, torch_on: str = "auto",
                  batch_size: int | None = None) -> dict:
    """Measures everything and returns the JSON record (without device/versions).
    ``batch_size`` overrides the config's 128 (e.g. to fill a GPU)."""
    torch = _torch()
    cores = common.core_count()
    torch.set_num_threads(cores)
    dev = torch_device(torch_on)
    config = model_config()
    if batch_size:
        config.train.batch_size = batch_size
    ds = gdata.load(config.data.name)
    train_u8 = np.asarray(ds.train)
    batch = int(config.train.batch_size)
    if batch > len(train_u8):
        raise SystemExit(f"error: --batch-size={batch} is more than the {len(train_u8)} "
                         f"training examples of {config.data.name}")
    layers = dense_layers(config, math.prod(ds.example_shape))
    dots = common.dense_training_dots(batch, layers)
    flops_per_step = sum(d.flops for d in dots)

    peer = peer_check(config, train_u8)
    run_genjax, compile_times = genjax_runner(config, train_u8, steps)
    sizes = ((1024,) if quick else (1024, 2048, 4096, 8192) if jax.default_backend() == "gpu"
             else (1024, 2048))
    contenders = {"genjax": run_genjax,
                  "torch": torch_runner(config, train_u8, steps, layers, device=dev),
                  "torch_fused_adam": torch_runner(config, train_u8, steps, layers,
                                                   fused_adam=True, device=dev)}
    matmul_flops = {}
    for n in sizes:
        contenders[f"matmul_{n}"], matmul_flops[f"matmul_{n}"] = common.matmul_timer(n)
    contenders["step_matmuls"], matmul_flops["step_matmuls"] = common.dots_timer(
        dots, iters=5 if quick else 50)
    with common.CpuContention() as contention:
        times = common.interleaved(contenders, repeats=repeats, warmup=1, pause_s=pause_s)
    med = {k: float(np.median(v)) for k, v in times.items()}

    g_sps, t_sps, f_sps = (steps / med[k] for k in ("genjax", "torch", "torch_fused_adam"))
    rates = {k: matmul_flops[k] / med[k] for k in matmul_flops}
    peak_large = max(rates[f"matmul_{n}"] for n in sizes)
    peak_step = rates["step_matmuls"]
    g_flops, t_flops = flops_per_step * g_sps, flops_per_step * t_sps
    ratio = g_sps / t_sps
    fraction = {"large_matmul": g_flops / peak_large, "step_matmuls": g_flops / peak_step}
    return {
        "benchmark": "vae_throughput",
        "quick": quick,
        "config": {
            "model": "VAE mlp 784-400-20, Bernoulli decoder, analytic KL",
            "dataset": config.data.name, "num_train_examples": len(train_u8),
            "preprocess": config.data.preprocess, "batch_size": batch,
            "layers": [list(l) for l in layers], "latent_dim": config.model.latent_dim,
            "optimizer": {k: config.optim[k] for k in ("name", "lr", "b1", "b2", "eps")},
            "steps_per_dispatch": steps, "repeats": repeats, "torch_threads": cores,
            "jax_backend": jax.default_backend(), "torch_device": dev,
        },
        "genjax": {**compile_times, "steps_per_s": g_sps, "examples_per_s": g_sps * batch,
                   "achieved_flops": g_flops, "block_s": common.summarize(times["genjax"])},
        "torch": {"steps_per_s": t_sps, "examples_per_s": t_sps * batch,
                  "achieved_flops": t_flops, "block_s": common.summarize(times["torch"])},
        "torch_fused_adam": {"steps_per_s": f_sps, "examples_per_s": f_sps * batch,
                             "achieved_flops": flops_per_step * f_sps,
                             "block_s": common.summarize(times["torch_fused_adam"])},
        "ratio_genjax_over_torch": ratio,
        "ratio_genjax_over_torch_fused_adam": g_sps / f_sps,
        "flops_per_step": flops_per_step,
        "flops_counted": "matmuls only: per dense layer 2*B*in*out forward + 2*B*in*out "
                         "weight gradient + 2*B*in*out input gradient (none for the first "
                         "layer); elementwise work, sampling and Adam not counted",
        "step_matmuls": [{"name": d.name, "flops": d.flops} for d in dots],
        "achieved_flops": g_flops,
        "matmul_peak_flops": {"large": peak_large, "step_shaped": peak_step,
                              "by_probe": rates},
        "fraction_of_peak": fraction,
        "torch_fraction_of_peak": {"large_matmul": t_flops / peak_large,
                                   "step_matmuls": t_flops / peak_step},
        "peer_check": peer,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": {
            "speedup_vs_torch": TARGETS["speedup_vs_torch"],
            "fraction_of_peak": TARGETS["fraction_of_peak"],
            "speedup_vs_torch_met": bool(ratio >= TARGETS["speedup_vs_torch"]),
            "fraction_of_peak_met": bool(fraction["large_matmul"]
                                         >= TARGETS["fraction_of_peak"]),
        },
    }


def summary_text(r: dict) -> str:
    pk, fr, tg, c = r["matmul_peak_flops"], r["fraction_of_peak"], r["targets"], r["config"]
    ok = lambda met: "met" if met else "NOT met"          # noqa: E731

    def row(label, side):
        return (f"  {label:<19}{side['examples_per_s']:9.0f} examples/s "
                f"{side['steps_per_s']:7.1f} steps/s {side['achieved_flops'] / 1e9:6.1f} GFLOP/s")

    lines = [
        f"VAE 784-400-20 on {c['dataset']}, batch {c['batch_size']} (jax on {c['jax_backend']}, torch on "
        f"{c['torch_device']}): medians of "
        f"{c['repeats']} interleaved blocks of {c['steps_per_dispatch']} steps",
        row("genjax", r["genjax"])
        + f"  (lower + compile {r['genjax']['lower_and_compile_s']:.2f} s, apart)",
        row("torch", r["torch"]),
        row("torch, fused Adam", r["torch_fused_adam"]),
        f"  genjax / torch = {r['ratio_genjax_over_torch']:.2f}x (target "
        f"{tg['speedup_vs_torch']}x: {ok(tg['speedup_vs_torch_met'])}); genjax / torch with "
        f"fused Adam = {r['ratio_genjax_over_torch_fused_adam']:.2f}x",
        f"  float32 matmul peak {pk['large'] / 1e9:.1f} GFLOP/s (large), "
        f"{pk['step_shaped'] / 1e9:.1f} GFLOP/s (this step's shapes): genjax at "
        f"{fr['large_matmul']:.0%} / {fr['step_matmuls']:.0%} (target "
        f"{tg['fraction_of_peak']:.0%} of large: {ok(tg['fraction_of_peak_met'])})",
        f"  peer check: initial loss {r['peer_check']['loss_genjax']:.4f} (genjax) vs "
        f"{r['peer_check']['loss_torch']:.4f} (torch)",
    ]
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    p = common.base_parser("benchmarks.vae_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved timed blocks per contender (default 10; "
                                        "2 with --quick)")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed block (default 200; 10 with --quick)")
    p.add_argument("--torch-device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the PyTorch peer runs (auto: the GPU when jax also uses one)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="override the config's batch size of 128 (at most the 4,000 "
                        "training digits; e.g. 2048 on a GPU)")
    return common.parse_positive(p, argv, ("steps", "repeats", "batch_size"))


def main(argv=None) -> dict:
    args = parse_args(argv)
    steps = args.steps or (10 if args.quick else 200)
    repeats = args.repeats or (2 if args.quick else 10)
    record = run_benchmark(steps=steps, repeats=repeats, quick=args.quick,
                           torch_on=args.torch_device, batch_size=args.batch_size)
    return common.finish(args.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
