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
  ``torch.bernoulli`` binarisation, ``torch.set_num_threads(<cores>)``.

Throughput blocks of ``--steps`` steps of each side and the matmul-peak probes run
round-robin (``--repeats`` rounds) and every number is a median over rounds, so a busy
phase of a shared machine slows all of them alike.

FLOPs: only matmuls are counted (`benchmarks.common.dense_training_dots`): per dense
layer 2*B*in*out forward, the same for the weight gradient, and the same for the input
gradient except in the first layer (the data needs no gradient). For the 784-400-40 /
20-400-784 layers and B = 128 that is 419,840,000 FLOPs per step; bias adds,
activations, sampling, binarisation and Adam are not counted. The achieved rate is
compared with two ceilings measured in the same run with jax: the large-matmul peak
(best of [n, n] @ [n, n], n in 1024, 2048) and the rate of exactly this step's matmuls
(same shapes and transposes, looped inside one compiled program).

The JSON also holds a peer check: with the genjax initial weights copied into the torch
model and the same binarised batch and noise, both compute the same loss, gradients and
one-step Adam update.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import common
from configs import vae as vae_config
from genjax import data as gdata
from genjax import losses
from genjax.data import transforms
from genjax.models.vae import VAE
from genjax.train import init_state, make_optimizer, make_train_step
from genjax.train.loop import make_chunk

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
    """The experiment's model, optimiser and step (experiments/vae.py, ELBO branch).
    Returns (graphdef, params, tx, hparams, loss_fn, step_fn)."""
    m = config.model
    model = VAE(example_shape, latent_dim=m.latent_dim, hidden=tuple(m.hidden), arch=m.arch,
                likelihood=m.likelihood, rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    hparams = dict(hparams, beta=config.loss.beta)

    def loss_fn(params, batch, key, hp):
        vae = nnx.merge(graphdef, params)
        k_data, k_loss = jax.random.split(key)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        return losses.elbo(x, k_loss, encode=vae.encode, decode=vae.decode,
                           likelihood=m.likelihood, beta=hp["beta"], kl=config.loss.kl)

    return graphdef, params, tx, hparams, loss_fn, make_train_step(loss_fn, tx, lr_schedule)


def genjax_runner(config, train_u8: np.ndarray, steps: int):
    """Compiles the training chunk of ``steps`` steps. Returns (run, timings): run()
    trains one chunk and fetches its metrics as the loop does; timings holds lower_s and
    compile_s."""
    _, params, tx, hparams, _, step_fn = genjax_setup(config, train_u8.shape[1:])
    state = init_state(params, tx, hparams)
    data = jax.device_put(train_u8)
    seed_key = jax.random.key(config.seed)
    chunk = make_chunk(step_fn, num_examples=len(train_u8),
                       batch_size=int(config.train.batch_size), batch_sharding=None)
    t = time.perf_counter()
    lowered = chunk.lower(state, data, seed_key, steps)
    t_lower = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    t_compile = time.perf_counter() - t
    holder = {"state": state}

    def run():
        holder["state"], metrics = compiled(holder["state"], data, seed_key)
        metrics = jax.device_get(metrics)
        if not np.all(np.isfinite(metrics["loss"])):
            raise FloatingPointError("genjax loss became non-finite in the benchmark")
        return metrics

    return run, {"lower_s": t_lower, "compile_s": t_compile,
                 "lower_and_compile_s": t_lower + t_compile}


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

        def loss(self, x, eps=None):
            """x: [B, D] in {0, 1}; eps: [B, Z] standard normal (drawn when None).
            mean_B[BCE summed over pixels + KL(q || N(0, I))], nats."""
            mean, log_var = self.enc2(F.relu(self.enc1(x))).chunk(2, dim=-1)   # [B, Z]
            if eps is None:
                eps = torch.randn_like(mean)
            z = mean + torch.exp(0.5 * log_var) * eps                          # [B, Z]
            logits = self.dec2(F.relu(self.dec1(z)))                           # [B, D]
            rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(-1)
            kl = 0.5 * (torch.exp(log_var) + mean ** 2 - 1.0 - log_var).sum(-1)
            return (rec + kl).mean()

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


def torch_adam(model, optim):
    torch = _torch()
    return torch.optim.Adam(model.parameters(), lr=optim.lr, betas=(optim.b1, optim.b2),
                            eps=optim.eps)


def torch_runner(config, train_u8: np.ndarray, steps: int, layers):
    """Returns run(): ``steps`` eager training steps, batches drawn without replacement
    from a fresh randperm each epoch, returning the last loss as a float."""
    torch = _torch()
    torch.manual_seed(config.seed)
    data = torch.from_numpy(np.array(train_u8).reshape(len(train_u8), -1))  # writeable copy
    model = make_torch_vae(layers)
    opt = torch_adam(model, config.optim)
    batch, n = int(config.train.batch_size), len(train_u8)
    holder = {"perm": torch.randperm(n), "pos": 0}

    def run():
        for _ in range(steps):
            if holder["pos"] + batch > n:
                holder["perm"], holder["pos"] = torch.randperm(n), 0
            idx = holder["perm"][holder["pos"]:holder["pos"] + batch]
            holder["pos"] += batch
            x = torch.bernoulli(data[idx].float().div_(255.0))
            loss = model.loss(x)
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
    _, params, tx, hparams, loss_fn, step_fn = genjax_setup(config, train_u8.shape[1:])
    layers = dense_layers(config, math.prod(train_u8.shape[1:]))
    model = torch_vae_from_genjax(params, layers)

    key = jax.random.key(seed)
    # the draws loss_fn makes: binarisation with k_data, reparameterisation noise with k_loss
    k_data, k_loss = jax.random.split(key)
    x = transforms.preprocess(k_data, batch, config.data.preprocess).reshape(b, -1)
    eps = jax.random.normal(k_loss, (b, config.model.latent_dim))

    hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()}

    @jax.jit
    def genjax_side(params, batch, key):
        (loss, _), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch, key, hp)
        state, _ = step_fn(init_state(params, tx, hp), batch, key)
        return loss, grads, state.params

    loss_j, grads, new_params = genjax_side(params, batch, key)

    x_t, eps_t = torch.from_numpy(np.array(x)), torch.from_numpy(np.array(eps))
    opt = torch_adam(model, config.optim)
    loss_t = model.loss(x_t, eps_t)
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

    return {
        "loss_genjax": float(loss_j),
        "loss_torch": float(loss_t.detach()),
        "loss_abs_diff": abs(float(loss_j) - float(loss_t.detach())),
        "grad_max_rel_diff": max_rel(_linear_params(grads), grads_t),
        "params_after_adam_step_max_rel_diff": max_rel(_linear_params(new_params), new_t),
    }


# ---------------------------------------------------------------------------- benchmark

def run_benchmark(*, steps: int = 200, repeats: int = 10, quick: bool = False,
                  pause_s: float = 0.05) -> dict:
    """Measures everything and returns the JSON record (without device/versions)."""
    torch = _torch()
    cores = common.core_count()
    torch.set_num_threads(cores)
    config = model_config()
    ds = gdata.load(config.data.name)
    train_u8 = np.asarray(ds.train)
    batch = int(config.train.batch_size)
    layers = dense_layers(config, math.prod(ds.example_shape))
    dots = common.dense_training_dots(batch, layers)
    flops_per_step = sum(d.flops for d in dots)

    peer = peer_check(config, train_u8)
    run_genjax, compile_times = genjax_runner(config, train_u8, steps)
    run_torch = torch_runner(config, train_u8, steps, layers)
    sizes = (1024,) if quick else (1024, 2048)
    contenders = {"genjax": run_genjax, "torch": run_torch}
    matmul_flops = {}
    for n in sizes:
        contenders[f"matmul_{n}"], matmul_flops[f"matmul_{n}"] = common.matmul_timer(n)
    contenders["step_matmuls"], matmul_flops["step_matmuls"] = common.dots_timer(
        dots, iters=5 if quick else 50)
    with common.CpuContention() as contention:
        times = common.interleaved(contenders, repeats=repeats, warmup=1, pause_s=pause_s)
    med = {k: float(np.median(v)) for k, v in times.items()}

    g_sps, t_sps = steps / med["genjax"], steps / med["torch"]
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
        },
        "genjax": {**compile_times, "steps_per_s": g_sps, "examples_per_s": g_sps * batch,
                   "achieved_flops": g_flops, "block_s": common.summarize(times["genjax"])},
        "torch": {"steps_per_s": t_sps, "examples_per_s": t_sps * batch,
                  "achieved_flops": t_flops, "block_s": common.summarize(times["torch"])},
        "ratio_genjax_over_torch": ratio,
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
    g, t, pk, fr, tg = (r["genjax"], r["torch"], r["matmul_peak_flops"],
                        r["fraction_of_peak"], r["targets"])
    ok = lambda met: "met" if met else "NOT met"          # noqa: E731
    return "\n".join([
        f"VAE 784-400-20, {r['config']['dataset']}, batch {r['config']['batch_size']}, "
        f"{r['config']['steps_per_dispatch']} steps/block, median of "
        f"{r['config']['repeats']} interleaved blocks",
        f"  genjax  {g['examples_per_s']:10.0f} examples/s  {g['steps_per_s']:7.1f} steps/s"
        f"  {g['achieved_flops'] / 1e9:6.1f} GFLOP/s   (compile {g['compile_s']:.2f} s, "
        f"lower {g['lower_s']:.2f} s)",
        f"  torch   {t['examples_per_s']:10.0f} examples/s  {t['steps_per_s']:7.1f} steps/s"
        f"  {t['achieved_flops'] / 1e9:6.1f} GFLOP/s",
        f"  genjax / torch = {r['ratio_genjax_over_torch']:.2f}x "
        f"(target {tg['speedup_vs_torch']}x: {ok(tg['speedup_vs_torch_met'])})",
        f"  matmul peak: large {pk['large'] / 1e9:.1f} GFLOP/s, this step's matmuls "
        f"{pk['step_shaped'] / 1e9:.1f} GFLOP/s; genjax reaches {fr['large_matmul']:.0%} / "
        f"{fr['step_matmuls']:.0%} of them (target {tg['fraction_of_peak']:.0%} of large: "
        f"{ok(tg['fraction_of_peak_met'])})",
        f"  peer check: loss {r['peer_check']['loss_genjax']:.4f} (genjax) vs "
        f"{r['peer_check']['loss_torch']:.4f} (torch)",
    ] + ([f"  WARNING: other processes used {busy:.0%} of the CPUs during the timing; "
          "torch's OpenMP threads suffer most from that, so rerun on an idle machine"]
         if (busy := r["other_processes_cpu_fraction"]) is not None and busy > 0.1 else []))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.vae_throughput",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=DEFAULT_OUT, help="JSON output path")
    p.add_argument("--steps", type=int, default=None,
                   help="training steps per timed block (default 200; 10 with --quick)")
    p.add_argument("--repeats", type=int, default=None,
                   help="interleaved timed blocks per contender (default 10; 2 with --quick)")
    p.add_argument("--quick", action="store_true", help="a few seconds, for smoke tests")
    args = p.parse_args(argv)
    for name in ("steps", "repeats"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name} must be a positive integer, got {value}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    steps = args.steps or (10 if args.quick else 200)
    repeats = args.repeats or (2 if args.quick else 10)
    record = run_benchmark(steps=steps, repeats=repeats, quick=args.quick)
    path = common.write_json(args.out, record)
    print(summary_text(record))
    print(f"wrote {path}")
    return record


if __name__ == "__main__":
    main(sys.argv[1:])
