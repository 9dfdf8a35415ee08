"""A sweep of the default VAE in one compiled program against the same settings trained
one after another, with genjax and with the PyTorch peer.

    python -m benchmarks.sweep_throughput [--out=benchmarks/results/sweep_throughput.json]
        [--steps=2000] [--rounds=4] [--settings=16 | --lrs=.. --betas=..]
        [--torch-threads=N] [--quick]
    python -m benchmarks.sweep_throughput --gpu [--settings=64]      # the GPU claim

The model, data and step are `benchmarks.vae_throughput`'s (configs/vae.py default:
784-400-20 MLP VAE, dynamically binarised mnist5k, batch 128, Adam); the settings are a
grid of learning rates x beta (``--settings=16``: 4 x 4, lr 2.5e-4 .. 2e-3 and beta
0.5 .. 4, both spaced geometrically; ``--settings=64``: 8 x 8 over the same ranges). The
arms, each training every setting for ``--steps`` timed steps:

* sweep: the settings stacked in one TrainState and trained by
  `genjax.train.sweep_loop.make_sweep_chunk` (the compiled chunk of ``--sweep``'s
  `train_sweep`: ``jax.vmap`` of the step inside one ``lax.scan``), one dispatch of all
  settings per block;
* genjax_sequential: one single-run chunk per setting (`genjax.train.loop.make_chunk`
  through `benchmarks.common.compiled_chunk`, as `python -m experiments.vae` runs them),
  the settings one after another;
* torch_sequential: `vae_throughput.torch_runner` per setting (eager PyTorch,
  ``torch.optim.Adam`` with the setting's lr, the loss with the setting's beta), one after
  another.

Steady state: every chunk is compiled ahead of time (``lower`` + ``compile``, reported
apart), each arm then trains one untimed warm-up block, and the ``--rounds`` timed blocks
of ``--steps / --rounds`` steps per setting run round-robin (sweep, genjax_sequential,
torch_sequential, sweep, ...), so a busy phase of the shared machine hits every arm alike.
Throughput is settings x steps / s over the median block; the ratios and the targets
(sweep >= 1.2x the sequential genjax runs and >= 2x the sequential PyTorch runs on the
2-core CPU) are judged on it. The sweep and the sequential genjax runs train the same
settings from the same initial weights, data order and keys, so their losses in the last
block agree to float32 rounding (``sweep_matches_sequential``).

``--gpu``: the accelerator claim, 64 settings (``--settings``) in one program in at most
2x the wall time of one setting: arms ``sweep`` and ``one_setting`` (the first setting as
a single run), interleaved the same way; the JSON holds the ratio of their median block
times and the device. It runs on a CPU too (the smoke test does, with tiny sizes), but the
target is only judged on a GPU.

Peer check (recorded, and it must pass): `vae_throughput.peer_check` at the default
setting (the same loss, gradients and one Adam step from the same weights, batch and
noise), and the same check at every setting of the grid (the setting's lr in both Adams,
its beta in both losses; the parameters after Adam's first step are judged by the share
that moved differently, see `PEER_BOUNDS`).

On a busy shared CPU PyTorch's OpenMP threads stall at every barrier (a step took ~0.4 s
instead of ~8 ms with 2 threads on an oversubscribed 2-core machine): ``--torch-threads=1``
is then the fairer peer; the JSON records the threads and how busy the machine was.
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
from benchmarks import vae_throughput as vt
from experiments import vae as vae_experiment
from genjax import data as gdata
from genjax.train import sweep_spec
from genjax.train.sweep_loop import make_sweep_chunk

DEFAULT_OUT = os.path.join("benchmarks", "results", "sweep_throughput.json")
TARGETS = {"sweep_over_genjax_sequential": 1.2, "sweep_over_torch_sequential": 2.0,
           "gpu_sweep_over_one_setting_wall": 2.0}
LR_RANGE, BETA_RANGE = (2.5e-4, 2e-3), (0.5, 4.0)
QUICK_GRID = ([2e-3], [0.5, 2.0])        # --quick: 2 settings, both unlike the default
# The peer check's bounds. Adam's first step is about lr * sign(g), so a gradient at
# float32 rounding level whose sign differs moves a parameter by up to 2 lr: the step is
# judged by the share of parameters whose step differs by more than 1% of lr (a handful
# of the 0.65 M; a wrong lr or beta on one side moves nearly all of them).
PEER_BOUNDS = {"loss_rel_diff": 1e-5, "grad_max_rel_diff": 1e-4,
               "params_after_adam_step_frac_differing": 1e-4}



# ------------------------------------------------------------------------------ settings

def grid(num_settings: int = 16, lrs=None, betas=None) -> list[dict]:
    """The sweep's settings [{"optim.lr", "loss.beta"}], lr-major. Without explicit lists
    ``num_settings`` must be a square n * n: n learning rates and n betas, geometrically
    spaced over LR_RANGE and BETA_RANGE (n = 1: the config's lr 1e-3 and beta 1)."""
    if lrs is None or betas is None:
        n = math.isqrt(num_settings)
        if n * n != num_settings:
            raise ValueError(f"--settings={num_settings} is not a square (n lrs x n betas); "
                             "give --lrs and --betas for another grid")
        if n == 1:
            geo_lr, geo_beta = [1e-3], [1.0]
        else:
            geo_lr = np.geomspace(*LR_RANGE, n).tolist()
            geo_beta = np.geomspace(*BETA_RANGE, n).tolist()
        lrs = geo_lr if lrs is None else lrs
        betas = geo_beta if betas is None else betas
    return [{"optim.lr": float(lr), "loss.beta": float(b)} for lr in lrs for b in betas]


def setting_configs(base, settings) -> list:
    """Each setting applied to the (locked) default config, as ``--sweep`` does."""
    return [sweep_spec.apply(base, s) for s in settings]


# ------------------------------------------------------------------------- genjax arms

def _stack(states):
    return jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *states)


def sweep_runner(step_fn, configs, train_u8: np.ndarray, steps: int):
    """The settings' states (`experiments.vae.build`, as `prepare_sweep_program`'s init)
    stacked and trained by `make_sweep_chunk`, compiled ahead of time for ``steps`` steps.
    Returns (run, timings): run() trains one chunk of every setting and returns the
    metrics [steps, S] on the host (FloatingPointError if a setting diverged)."""
    states = _stack([vae_experiment.build(c, train_u8.shape[1:])[1] for c in configs])
    num = len(configs)
    chunk = make_sweep_chunk(step_fn, num_examples=len(train_u8),
                             batch_size=int(configs[0].train.batch_size))
    data = jax.device_put(train_u8)
    seed_keys = jax.vmap(jax.random.key)(jnp.asarray([int(c.seed) for c in configs]))
    alive = jnp.ones((num,), bool)
    t = time.perf_counter()
    lowered = chunk.lower(states, alive, data, seed_keys, steps)
    t_lower = time.perf_counter() - t
    t = time.perf_counter()
    compiled = lowered.compile()
    t_compile = time.perf_counter() - t
    holder = {"states": states, "alive": alive}

    def run():
        holder["states"], holder["alive"], metrics, finite = compiled(
            holder["states"], holder["alive"], data, seed_keys)
        metrics, finite = jax.device_get((metrics, finite))
        if not np.all(finite):
            bad = sorted(set(np.flatnonzero(~np.all(finite, axis=0)).tolist()))
            raise FloatingPointError(f"sweep settings {bad} diverged in the benchmark")
        return metrics

    return run, {"lower_s": t_lower, "compile_s": t_compile,
                 "lower_and_compile_s": t_lower + t_compile}


def sequential_genjax_runners(step_fn, configs, train_u8: np.ndarray, steps: int):
    """One single-run chunk per setting (`common.compiled_chunk`: each compiles its own,
    as separate runs would). Returns (runs, timings summed over the settings)."""
    runs, total = [], {"lower_s": 0.0, "compile_s": 0.0, "lower_and_compile_s": 0.0}
    for c in configs:
        state = vae_experiment.build(c, train_u8.shape[1:])[1]
        run, timings, _ = common.compiled_chunk(step_fn, state, train_u8,
                                                batch_size=c.train.batch_size,
                                                steps=steps, seed=c.seed)
        runs.append(run)
        total = {k: total[k] + timings[k] for k in total}
    return runs, total


# --------------------------------------------------------------------------- torch arm


def sequential_torch_runners(configs, train_u8, steps, layers, device):
    return [vt.torch_runner(c, train_u8, steps, layers, device=device) for c in configs]


def peer_checks(base, configs, train_u8) -> dict:
    """`vt.peer_check` at the default setting and at every setting of the grid."""
    default = vt.peer_check(base, train_u8)
    rows = []
    for c in configs:
        r = vt.peer_check(c, train_u8)
        rows.append({"lr": float(c.optim.lr), "beta": float(c.loss.beta), **r})
    for r in [default, *rows]:
        r["loss_rel_diff"] = r["loss_abs_diff"] / abs(r["loss_genjax"])
        r["bounds"] = dict(PEER_BOUNDS)
        r["passed"] = bool(all(r[k] < bound for k, bound in r["bounds"].items()))
    return {"default_setting": default, "settings": rows,
            "passed": bool(default["passed"] and all(r["passed"] for r in rows))}


# ---------------------------------------------------------------------------- benchmark

def _progress(text: str) -> None:
    print(f"[sweep_throughput] {time.strftime('%H:%M:%S')} {text}", file=sys.stderr,
          flush=True)


def _threads(torch) -> dict:
    return {"torch_num_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
            "jax_local_devices": jax.local_device_count()}


def _arm(times, setting_steps_per_block, compile_times=None) -> dict:
    med = float(np.median(times))
    out = {"setting_steps_per_s": setting_steps_per_block / med,
           "block_s": common.summarize(times), "timed_wall_s": float(np.sum(times))}
    if compile_times is not None:
        out.update(compile_times)
    return out


def run_benchmark(*, steps: int = 2000, rounds: int = 4, num_settings: int = 16,
                  lrs=None, betas=None, gpu: bool = False, quick: bool = False,
                  pause_s: float = 0.05, torch_on: str = "auto",
                  torch_threads: int | None = None) -> dict:
    """Measures everything and returns the JSON record (without device/versions)."""
    t_start = time.perf_counter()
    torch = vt._torch()
    cores = common.core_count()
    torch.set_num_threads(torch_threads or cores)
    dev = vt.torch_device(torch_on)
    if steps % rounds:
        raise ValueError(f"--steps={steps} is not a multiple of --rounds={rounds}")
    block = steps // rounds
    base = vt.model_config()
    settings = grid(num_settings, lrs, betas)
    configs = setting_configs(base, settings)
    for c in configs:
        vae_experiment.validate(c)
    num = len(settings)
    ds = gdata.load(base.data.name)
    train_u8 = np.asarray(ds.train)
    layers = vt.dense_layers(base, math.prod(ds.example_shape))

    _progress(f"peer checks; then compiling {num} settings' chunks of {block} steps")
    peer = peer_checks(base, configs[-1:] if quick else configs, train_u8)
    _, _, _, step_fn = vt.genjax_setup(base, train_u8.shape[1:])
    run_sweep, sweep_compile = sweep_runner(step_fn, configs, train_u8, block)
    if gpu:
        one, one_compile = sequential_genjax_runners(step_fn, configs[:1], train_u8, block)
        contenders = {"sweep": run_sweep, "one_setting": one[0]}
        compiles = {"sweep": sweep_compile, "one_setting": one_compile}
        per_block = {"sweep": num * block, "one_setting": block}
    else:
        g_runs, g_compile = sequential_genjax_runners(step_fn, configs, train_u8, block)
        t_runs = sequential_torch_runners(configs, train_u8, block, layers, dev)
        last = {}

        def genjax_sequential():
            last["genjax"] = [run() for run in g_runs]

        def sweep():
            last["sweep"] = run_sweep()

        contenders = {"sweep": sweep, "genjax_sequential": genjax_sequential,
                      "torch_sequential": lambda: [run() for run in t_runs]}
        compiles = {"sweep": sweep_compile, "genjax_sequential": g_compile}
        per_block = {k: num * block for k in contenders}

    _progress(f"timing {', '.join(contenders)}: 1 warm-up + {rounds} rounds")
    with common.CpuContention() as contention:
        times = common.interleaved(contenders, repeats=rounds, warmup=1, pause_s=pause_s)
    arms = {k: _arm(times[k], per_block[k], compiles.get(k)) for k in contenders}

    record = {
        "benchmark": "sweep_throughput",
        "mode": "gpu_wall_time" if gpu else "sweep_vs_sequential",
        "quick": quick,
        "config": {
            "model": "VAE mlp 784-400-20, Bernoulli decoder, analytic KL "
                     "(configs/vae.py default)",
            "dataset": base.data.name, "num_train_examples": len(train_u8),
            "preprocess": base.data.preprocess, "batch_size": int(base.train.batch_size),
            "layers": [list(l) for l in layers],
            "optimizer": {k: base.optim[k] for k in ("name", "b1", "b2", "eps")},
            "num_settings": num, "settings": settings,
            "timed_steps_per_setting": steps, "rounds": rounds,
            "steps_per_block": block, "warmup_blocks": 1,
            "jax_backend": jax.default_backend(), "torch_device": dev,
            "threads": _threads(torch),
        },
        "throughput_unit": "settings x steps / s, median over the timed rounds",
        "steady_state": "every chunk compiled ahead of time (lower + compile, reported as "
                        "compile_s / lower_and_compile_s and excluded); one untimed "
                        "warm-up block per arm; then the timed blocks round-robin",
        "arms": arms,
        "peer_check": peer,
        "other_processes_cpu_fraction": contention.fraction,
    }
    if gpu:
        wall = arms["sweep"]["block_s"]["median_s"] / arms["one_setting"]["block_s"]["median_s"]
        record["ratio_sweep_over_one_setting_wall"] = wall
        record["targets"] = {
            "gpu_sweep_over_one_setting_wall": TARGETS["gpu_sweep_over_one_setting_wall"],
            "applies": jax.default_backend() == "gpu",
            "gpu_sweep_over_one_setting_wall_met":
                bool(wall <= TARGETS["gpu_sweep_over_one_setting_wall"]),
        }
    else:
        sps = {k: arms[k]["setting_steps_per_s"] for k in arms}
        r_g = sps["sweep"] / sps["genjax_sequential"]
        r_t = sps["sweep"] / sps["torch_sequential"]
        record["ratio_sweep_over_genjax_sequential"] = r_g
        record["ratio_sweep_over_torch_sequential"] = r_t
        record["ratio_genjax_sequential_over_torch_sequential"] = (
            sps["genjax_sequential"] / sps["torch_sequential"])
        # The same settings from the same weights, data order and keys: the last block's
        # mean loss of each setting, sweep against its single run.
        sweep_loss = np.mean(last["sweep"]["loss"], axis=0)                         # [S]
        seq_loss = np.array([np.mean(m["loss"]) for m in last["genjax"]])           # [S]
        rel = float(np.max(np.abs(sweep_loss - seq_loss) / np.abs(seq_loss)))
        record["sweep_matches_sequential"] = {
            "last_block_loss_max_rel_diff": rel,
            "last_block_loss_sweep": sweep_loss.tolist(),
            "last_block_loss_sequential": seq_loss.tolist()}
        record["targets"] = {
            "sweep_over_genjax_sequential": TARGETS["sweep_over_genjax_sequential"],
            "sweep_over_torch_sequential": TARGETS["sweep_over_torch_sequential"],
            "sweep_over_genjax_sequential_met":
                bool(r_g >= TARGETS["sweep_over_genjax_sequential"]),
            "sweep_over_torch_sequential_met":
                bool(r_t >= TARGETS["sweep_over_torch_sequential"]),
        }
    record["wall_s_total"] = time.perf_counter() - t_start
    return record


def summary_text(r: dict) -> str:
    c, a, tg = r["config"], r["arms"], r["targets"]
    ok = lambda met: "met" if met else "NOT met"          # noqa: E731
    lines = [f"VAE 784-400-20 sweep of {c['num_settings']} settings (lr x beta), batch "
             f"{c['batch_size']}, jax on {c['jax_backend']}, torch on {c['torch_device']}: "
             f"medians of {c['rounds']} interleaved blocks of {c['steps_per_block']} steps "
             f"per setting"]
    for k, arm in a.items():
        extra = (f"  (lower + compile {arm['lower_and_compile_s']:.1f} s, apart)"
                 if "lower_and_compile_s" in arm else "")
        lines.append(f"  {k:<18}{arm['setting_steps_per_s']:9.1f} settings x steps/s  "
                     f"block {arm['block_s']['median_s']:.2f} s{extra}")
    if r["mode"] == "gpu_wall_time":
        lines.append(f"  {c['num_settings']} settings / one setting wall time = "
                     f"{r['ratio_sweep_over_one_setting_wall']:.2f}x (target <= "
                     f"{tg['gpu_sweep_over_one_setting_wall']}x on a GPU: "
                     + (ok(tg['gpu_sweep_over_one_setting_wall_met']) if tg["applies"]
                        else "not judged off a GPU") + ")")
    else:
        lines += [
            f"  sweep / genjax sequential = {r['ratio_sweep_over_genjax_sequential']:.2f}x "
            f"(target {tg['sweep_over_genjax_sequential']}x: "
            f"{ok(tg['sweep_over_genjax_sequential_met'])})",
            f"  sweep / torch sequential  = {r['ratio_sweep_over_torch_sequential']:.2f}x "
            f"(target {tg['sweep_over_torch_sequential']}x: "
            f"{ok(tg['sweep_over_torch_sequential_met'])})",
            f"  sweep vs sequential genjax, last-block loss: max rel diff "
            f"{r['sweep_matches_sequential']['last_block_loss_max_rel_diff']:.1e}"]
    p = r["peer_check"]
    lines.append(f"  peer check ({len(p['settings'])} settings + default): "
                 f"{'passed' if p['passed'] else 'FAILED'}; total wall {r['wall_s_total']:.0f} s")
    lines += common.busy_lines(r)
    return "\n".join(lines)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = common.base_parser("benchmarks.sweep_throughput", __doc__, DEFAULT_OUT,
                           repeats_help="timed rounds per arm (default 4; 2 with --quick)")
    p.add_argument("--rounds", dest="repeats", type=int, help="the same as --repeats")
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per setting and arm, split over the rounds (default "
                        "2000; 20 with --quick)")
    p.add_argument("--settings", type=int, default=None,
                   help="grid size n*n: n lrs x n betas (default 16; 64 with --gpu; with "
                        "--quick 2 settings: lr 2e-3 x beta 0.5, 2)")
    p.add_argument("--lrs", type=_floats, default=None, help="learning rates, e.g. 1e-3,2e-3")
    p.add_argument("--betas", type=_floats, default=None, help="betas, e.g. 0.5,1,2")
    p.add_argument("--gpu", action="store_true",
                   help="the GPU claim: the sweep against one setting's wall time")
    p.add_argument("--torch-device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where the PyTorch peer runs (auto: the GPU when jax also uses one)")
    p.add_argument("--torch-threads", type=int, default=None,
                   help="PyTorch's intra-op threads (default: the cores; 1 is fairer on a "
                        "busy shared CPU, where 2 OpenMP threads stall at every barrier)")
    p.add_argument("--note", default="", help="a remark stored in the JSON")
    args = common.parse_positive(p, argv, ("steps", "repeats", "settings", "torch_threads"))
    if (args.lrs is None) != (args.betas is None):
        p.error("give both --lrs and --betas, or neither")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    steps = args.steps or (20 if args.quick else 2000)
    rounds = args.repeats or (2 if args.quick else 4)
    settings = args.settings or (64 if args.gpu else 16)
    lrs, betas = args.lrs, args.betas
    if args.quick and args.settings is None and lrs is None:
        lrs, betas = QUICK_GRID
    try:
        record = run_benchmark(steps=steps, rounds=rounds, num_settings=settings,
                               lrs=lrs, betas=betas, gpu=args.gpu,
                               quick=args.quick, torch_on=args.torch_device,
                               torch_threads=args.torch_threads)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if args.note:
        record["note"] = args.note
    return common.finish(args.out, record, summary_text)


if __name__ == "__main__":
    main(sys.argv[1:])
