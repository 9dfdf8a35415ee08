"""NADE throughput at D = 784, H = 500: the O(HD) log-likelihood against the naive O(HD^2)
one, the compiled ancestral sampler, and PyTorch implementations of the same model.

    python -m benchmarks.nade_throughput [--out=benchmarks/results/nade_throughput.json]
        [--batch-size=128] [--repeats=7] [--cpu-devices=N] [--quick]

Every contender evaluates log p(x) of the same B real mnist5k test digits (binarised once,
seed 0) under the same weights (configs/nade.py's default NADE, output biases at the data
marginals); throughput is examples per second, medians of ``--repeats`` interleaved rounds
(`benchmarks.common.interleaved`), with the share of the CPUs that other processes used
meanwhile recorded.

genjax (jax, one jitted call per batch):
  * ``genjax``: `nade_log_likelihood`, one lax.scan over the 784 dimensions with a
    [B, 500] running pre-activation, O(HD) per example. On a CPU the batch is split over
    ``--cpu-devices`` jax CPU devices (default: one per core) with jax.sharding, as the
    training loop does; XLA runs a scan's small element-wise steps on one core, so a
    device per core is how a scan uses the whole CPU. ``genjax_one_device`` is the same
    call unsharded, for reference.
  * ``genjax_naive``: `nade_log_likelihood_naive`, h_i recomputed from x_<i for every i:
    784 [B, 784] x [784, 500] products (lax.map), O(HD^2), same sharding.
  * ``genjax_sampling``: `NADE.sample`, exact ancestral sampling in one lax.scan; B images
    per call, split over the devices with shard_map (each device draws its share with its
    own key).
  * ``genjax_grad`` / ``genjax_grad_autodiff``: the gradient of the mean log-likelihood
    with the hand-written O(HD) backward pass, and with jax autodiff through the scan.

PyTorch (eager, ``torch.set_num_threads(<cores>)``, inference mode):
  * ``torch_loop``: the straightforward NADE, a Python loop over the 784 dimensions
    updating the [B, 500] running sum (the paper's algorithm, vectorised over the batch).
  * ``torch_cumsum``: the loop-free form, torch.cumsum of x_j W[:, j] over j on a
    [B, 784, 500] tensor.
  * ``torch_sampling``: ancestral sampling with the Python loop over dimensions.
  The speed target is judged against the faster of torch_loop and torch_cumsum.

A peer check runs first: both torch forms compute the genjax log-likelihoods of the same
batch from the same weights.
"""

from __future__ import annotations

import os
import sys

import numpy as np

from benchmarks import common

DEFAULT_OUT = os.path.join("benchmarks", "results", "nade_throughput.json")
TARGETS = {"fast_over_naive": 20.0, "speedup_vs_torch": 1.5}


def _torch():
    import torch     # only the benchmark imports torch; genjax never does
    return torch


# ------------------------------------------------------------------------------ setup

def setup(batch_size: int):
    """The default NADE of configs/nade.py (H = 500) on mnist5k, and a batch of B test
    digits binarised once. Returns (config, params {W, c, V, b} as numpy, x [B, 784])."""
    from configs import nade as nade_config
    from experiments import nade as nade_experiment
    from genjax import data as gdata
    from genjax.train import experiment

    config = nade_config.get_config()
    ds = gdata.load(config.data.name)
    model = nade_experiment.make_model(config, ds.example_shape, ds.train)
    x = experiment.fixed_view(ds.test, config.data.preprocess)
    reps = -(-batch_size // len(x))
    x = np.concatenate([x] * reps)[:batch_size].reshape(batch_size, -1)
    params = {k: np.asarray(getattr(model, k)[...]) for k in ("W", "c", "V", "b")}
    return model, params, np.asarray(x, np.float32)


def genjax_contenders(model, params, x, *, grad: bool = True):
    """{name: (run, examples per call)} for the jax contenders, and the log-likelihoods of
    the batch (for the peer check). Each run() blocks until its result is ready."""
    import jax
    import jax.numpy as jnp
    from flax import nnx
    from jax.sharding import PartitionSpec as P

    from genjax.losses import autoregressive as ar
    from genjax.train import sharding

    mesh = sharding.data_mesh()
    ndev = mesh.size
    bsz = len(x)
    if bsz % ndev:
        raise SystemExit(f"error: --batch-size={bsz} must be a multiple of the {ndev} devices")
    p_rep = sharding.replicate({k: jnp.asarray(v) for k, v in params.items()}, mesh)
    x_sh = jax.device_put(jnp.asarray(x), sharding.batch_sharded(mesh))
    x_one = jax.device_put(jnp.asarray(x), jax.devices()[0])
    p_one = jax.device_put({k: jnp.asarray(v) for k, v in params.items()}, jax.devices()[0])

    fast = jax.jit(lambda p, v: ar.nade_log_likelihood(v, **p))
    naive = jax.jit(lambda p, v: ar.nade_log_likelihood_naive(v, **p))

    graphdef, state = nnx.split(model)
    state = sharding.replicate(state, mesh)

    def local_sample(state, key):
        key = jax.random.fold_in(key, jax.lax.axis_index("data"))
        return nnx.merge(graphdef, state).sample(key, bsz // ndev)[0]

    # check_vma=False: the scan's carry starts replicated and becomes per-device once it
    # depends on the per-device key, which the varying-axes check would reject
    sample = jax.jit(jax.shard_map(local_sample, mesh=mesh, in_specs=(P(), P()),
                                   out_specs=P("data"), check_vma=False))
    keys = {"i": 0}

    def run_sample():
        keys["i"] += 1
        return jax.block_until_ready(sample(state, jax.random.key(keys["i"])))

    out = {
        "genjax": (lambda: jax.block_until_ready(fast(p_rep, x_sh)), bsz),
        "genjax_one_device": (lambda: jax.block_until_ready(fast(p_one, x_one)), bsz),
        "genjax_naive": (lambda: jax.block_until_ready(naive(p_rep, x_sh)), bsz),
        "genjax_sampling": (run_sample, bsz),
    }
    if grad:
        groups = ndev

        def mean_ll(p, v, fn):
            return jnp.mean(fn(v, **p))

        g_fast = jax.jit(jax.grad(lambda p, v: mean_ll(
            p, v, lambda v, **q: ar.nade_log_likelihood(v, **q, groups=groups))))
        g_auto = jax.jit(jax.grad(lambda p, v: jnp.mean(ar.bernoulli_log_likelihood(
            v, ar.nade_logits(v, **p)))))
        out["genjax_grad"] = (lambda: jax.block_until_ready(g_fast(p_rep, x_sh)), bsz)
        out["genjax_grad_autodiff"] = (lambda: jax.block_until_ready(g_auto(p_rep, x_sh)),
                                       bsz)
    lls = {"genjax": np.asarray(fast(p_rep, x_sh)),
           "genjax_naive": np.asarray(naive(p_rep, x_sh))}
    for _, (run, _) in out.items():      # compile everything before timing
        run()
    return out, lls, ndev


# ------------------------------------------------------------------------------ torch

def torch_nade(params, device="cpu"):
    """Returns (loop_ll, cumsum_ll, sample) over the genjax weights, as torch tensors:
    W [H, D], c [H], V [D, H], b [D]."""
    torch = _torch()
    import torch.nn.functional as F
    W, c, V, b = (torch.from_numpy(np.array(params[k])).to(device) for k in "WcVb")
    Wt = W.T.contiguous()                                                # [D, H]

    def loop_ll(x):                                        # x [B, D] float {0, 1}
        a = c.expand(x.shape[0], -1)
        logits = []
        for i in range(x.shape[1]):
            logits.append(torch.sigmoid(a) @ V[i] + b[i])                 # [B]
            a = a + x[:, i:i + 1] * Wt[i]
        logits = torch.stack(logits, 1)
        return (x * logits - F.softplus(logits)).sum(-1)

    def cumsum_ll(x):
        contrib = x[:, :, None] * Wt                                      # [B, D, H]
        a = torch.cumsum(contrib, 1).sub_(contrib).add_(c)                # exclusive sum
        logits = (torch.sigmoid_(a) * V).sum(-1) + b                      # [B, D]
        return (x * logits - F.softplus(logits)).sum(-1)

    def sample(num, generator=None):
        a = c.expand(num, -1)
        out = torch.empty(num, V.shape[0], device=device)
        for i in range(V.shape[0]):
            p = torch.sigmoid(torch.sigmoid(a) @ V[i] + b[i])
            xi = torch.bernoulli(p, generator=generator)
            out[:, i] = xi
            a = a + xi[:, None] * Wt[i]
        return out

    return loop_ll, cumsum_ll, sample


def torch_contenders(params, x, device="cpu"):
    torch = _torch()
    loop_ll, cumsum_ll, sample = torch_nade(params, device)
    xt = torch.from_numpy(x).to(device)
    bsz = len(x)

    def timed(fn):
        def run():
            with torch.inference_mode():
                return float(fn().sum())          # a host read: waits for the device
        return run

    gen = torch.Generator(device=device).manual_seed(0)
    out = {"torch_loop": (timed(lambda: loop_ll(xt)), bsz),
           "torch_cumsum": (timed(lambda: cumsum_ll(xt)), bsz),
           "torch_sampling": (timed(lambda: sample(bsz, gen)), bsz)}
    with torch.inference_mode():
        lls = {"torch_loop": loop_ll(xt).cpu().numpy(),
               "torch_cumsum": cumsum_ll(xt).cpu().numpy()}
    return out, lls


# -------------------------------------------------------------------------- benchmark

def run_benchmark(*, batch_size: int = 128, repeats: int = 7, quick: bool = False,
                  grad: bool = True, pause_s: float = 0.05) -> dict:
    import jax
    torch = _torch()
    cores = common.core_count()
    torch.set_num_threads(cores)
    model, params, x = setup(batch_size)
    d, h = params["V"].shape
    jx, lls, ndev = genjax_contenders(model, params, x, grad=grad)
    tx, t_lls = torch_contenders(params, x)
    lls.update(t_lls)
    peer = {f"{k}_max_abs_diff_vs_genjax": float(np.max(np.abs(v - lls["genjax"])))
            for k, v in lls.items() if k != "genjax"}
    peer["mean_log_likelihood_genjax"] = float(np.mean(lls["genjax"]))

    contenders = {**jx, **tx}
    # the slow ones run once per round, the fast ones several times (similar block times)
    calls = {k: 1 for k in contenders}
    for k in ("genjax", "genjax_one_device", "genjax_sampling"):
        calls[k] = 2 if quick else 8
    fns = {k: (lambda run=run, n=calls[k]: [run() for _ in range(n)])
           for k, (run, _) in contenders.items()}
    with common.CpuContention() as contention:
        times = common.interleaved(fns, repeats=repeats, warmup=1, pause_s=pause_s)
    rate = {k: calls[k] * contenders[k][1] / float(np.median(v)) for k, v in times.items()}

    best_torch = max(("torch_loop", "torch_cumsum"), key=rate.get)
    fast_over_naive = rate["genjax"] / rate["genjax_naive"]
    vs_torch = rate["genjax"] / rate[best_torch]
    record = {
        "benchmark": "nade_throughput",
        "quick": quick,
        "config": {
            "model": f"NADE D={d} H={h} (configs/nade.py default), output biases at the "
                     "mnist5k pixel marginals",
            "dim": d, "hidden": h, "batch_size": batch_size,
            "data": "mnist5k test digits binarised once (seed 0)",
            "repeats": repeats, "calls_per_round": calls, "jax_devices": ndev,
            "jax_backend": jax.default_backend(), "torch_threads": cores,
        },
        "examples_per_s": rate,
        "block_s": {k: common.summarize(v) for k, v in times.items()},
        "log_likelihood": {
            "genjax_examples_per_s": rate["genjax"],
            "genjax_one_device_examples_per_s": rate["genjax_one_device"],
            "naive_examples_per_s": rate["genjax_naive"],
            "fast_over_naive": fast_over_naive,
            "torch_loop_examples_per_s": rate["torch_loop"],
            "torch_cumsum_examples_per_s": rate["torch_cumsum"],
            "best_torch": best_torch,
            "genjax_over_best_torch": vs_torch,
            "genjax_one_device_over_best_torch": rate["genjax_one_device"] / rate[best_torch],
        },
        "sampling": {
            "genjax_images_per_s": rate["genjax_sampling"],
            "torch_images_per_s": rate["torch_sampling"],
            "genjax_over_torch": rate["genjax_sampling"] / rate["torch_sampling"],
        },
        "peer_check": peer,
        "other_processes_cpu_fraction": contention.fraction,
        "targets": {
            **TARGETS,
            "fast_over_naive_met": bool(fast_over_naive >= TARGETS["fast_over_naive"]),
            "speedup_vs_torch_met": bool(vs_torch >= TARGETS["speedup_vs_torch"]),
        },
    }
    if grad:
        record["gradient"] = {
            "hand_written_examples_per_s": rate["genjax_grad"],
            "autodiff_examples_per_s": rate["genjax_grad_autodiff"],
            "hand_written_over_autodiff": rate["genjax_grad"] / rate["genjax_grad_autodiff"],
        }
    return record


def summary_text(r: dict) -> str:
    ll, s, t, c = r["log_likelihood"], r["sampling"], r["targets"], r["config"]
    ok = lambda met: "met" if met else "NOT met"          # noqa: E731
    lines = [
        f"NADE D={c['dim']} H={c['hidden']}, batch {c['batch_size']}, jax on "
        f"{c['jax_devices']} {c['jax_backend']} device(s); medians of {c['repeats']} rounds",
        f"  log p(x)  genjax O(HD)   {ll['genjax_examples_per_s']:9.0f} examples/s "
        f"(one device: {ll['genjax_one_device_examples_per_s']:.0f})",
        f"            genjax naive   {ll['naive_examples_per_s']:9.0f} examples/s  -> "
        f"O(HD) / naive = {ll['fast_over_naive']:.1f}x (target "
        f"{t['fast_over_naive']:.0f}x: {ok(t['fast_over_naive_met'])})",
        f"            torch loop     {ll['torch_loop_examples_per_s']:9.0f} examples/s",
        f"            torch cumsum   {ll['torch_cumsum_examples_per_s']:9.0f} examples/s  -> "
        f"genjax / {ll['best_torch']} = {ll['genjax_over_best_torch']:.2f}x (target "
        f"{t['speedup_vs_torch']}x: {ok(t['speedup_vs_torch_met'])})",
        f"  sampling  genjax {s['genjax_images_per_s']:.0f} images/s, torch "
        f"{s['torch_images_per_s']:.0f} images/s ({s['genjax_over_torch']:.2f}x)",
    ]
    if "gradient" in r:
        g = r["gradient"]
        lines.append(f"  gradient  hand-written {g['hand_written_examples_per_s']:.0f} "
                     f"examples/s, autodiff {g['autodiff_examples_per_s']:.0f} "
                     f"({g['hand_written_over_autodiff']:.2f}x)")
    lines.append(f"  peer check: torch_loop vs genjax max |diff| "
                 f"{r['peer_check']['torch_loop_max_abs_diff_vs_genjax']:.2e} nats")
    lines += common.busy_lines(r)
    return "\n".join(lines)


def parse_args(argv=None):
    p = common.base_parser("benchmarks.nade_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="interleaved rounds (default 7; 2 with --quick)")
    p.add_argument("--batch-size", type=int, default=128, help="examples per call")
    p.add_argument("--cpu-devices", type=int, default=None,
                   help="jax CPU devices to split the batch over (default: one per core)")
    p.add_argument("--no-grad", action="store_true", help="skip the gradient timings")
    return common.parse_positive(p, argv, ("batch_size", "repeats", "cpu_devices"))


def main(argv=None) -> dict:
    args = parse_args(argv)
    common.set_cpu_devices(args.cpu_devices or common.core_count())
    repeats = args.repeats or (2 if args.quick else 7)
    batch = args.batch_size
    record = run_benchmark(batch_size=batch, repeats=repeats, quick=args.quick,
                           grad=not args.no_grad)
    return common.finish(args.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
