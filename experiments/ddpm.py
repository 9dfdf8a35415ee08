"""Train and evaluate a DDPM.

    python -m experiments.ddpm --config=configs/ddpm.py[:quick|gpu|cifar10]
        [--workdir=runs/ddpm/PRESET] [--config.diffusion.prediction=v ...]
        [--sweep=optim.lr=3e-4,1e-3 --sweep=ema.decay=0.99,0.999 ...]  (genjax.train.sweep)

Trains a U-Net denoiser on the simplified noise objective with the shared loop (EMA of
the parameters in the train state), then, with the EMA parameters: the test-set
variational bound in bits/dim, samples from the ancestral (T-step) and DDIM samplers,
and the classifier Fréchet distance of each sampler's samples against the test images.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples_ancestral.png, samples_ddim.png, denoising_trajectory.png (x_T ... x_0, one row
per image) and results.json.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import diffusion, losses, viz, xla
from genjax.data import require_image_sides, transforms
from genjax.diffusion import forward, reverse, samplers
from genjax.eval import map_dataset, map_dataset_stacked, sample_quality
from genjax.nn.unet import UNet
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.ema import (average_in_params, ema_params, ema_step,
                              step_with_average_in_params, with_ema)
from genjax.train.sweep import Program, SweepParts, entry_point
from genjax.train.writers import log

PREPROCESS = ("symmetric", "dequantize")


def validate(config):
    """Every field of the model, diffusion, ema, eval and plots sections (the shared ones:
    `cfglib.validate_common`), before anything is built or compiled."""
    d = config.diffusion
    cfglib.one_of(config, "diffusion.schedule", diffusion.schedules.KINDS)
    cfglib.one_of(config, "diffusion.prediction", forward.PREDICTIONS)
    cfglib.one_of(config, "diffusion.variance", reverse.VARIANCES)
    cfglib.one_of(config, "data.preprocess", PREPROCESS)
    cfglib.boolean(config, "diffusion.clip")
    cfglib.integer(config, "diffusion.num_steps", minimum=2)
    for f in ("model.num_res_blocks", "model.groups", "eval.batch_size",
              "eval.classifier_steps", "plots.num_samples", "plots.trajectory_images",
              "plots.trajectory_frames"):
        cfglib.integer(config, f)
    channels = cfglib.integer(config, "model.channels", minimum=2)
    cfglib.require(channels % 2 == 0, "model.channels", channels,
                   "an even number (the sinusoidal time embedding has sin and cos halves)")
    cfglib.int_tuple(config, "model.channel_mults", example="'(1, 2, 2)'",
                     what="width multipliers, one per level")
    cfglib.int_tuple(config, "model.attention_resolutions", min_len=0, distinct=True,
                     example="'(14,)'", what="image sides with self-attention")
    cfglib.in_range(config, "model.dropout", 0, 1)
    cfglib.in_range(config, "ema.decay", 0, 1)
    cfglib.integer(config, "eval.pc_corrector_steps", minimum=0,
                   why="Langevin corrector steps after each ancestral step")
    cfglib.number(config, "eval.pc_snr", low=0, low_open=True)
    for f in ("eval.bound_examples", "eval.fd_samples", "eval.ancestral_fd_samples",
              "eval.pc_fd_samples"):
        cfglib.integer(config, f, minimum=0, why="0 = all" if f == "eval.bound_examples"
                       else "0 = skip")
    cfglib.integer(config, "eval.bound_t", maximum=d.num_steps - 1,
                   why="strata of the bound's step sum; diffusion.num_steps - 1 = exact")
    cfglib.integer(config, "eval.ddim_steps", maximum=d.num_steps,
                   why="at most diffusion.num_steps")
    cfglib.in_range(config, "eval.ddim_eta", 0, 1, high_open=False,
                    why="0 = deterministic DDIM, 1 = ancestral-like")
    cfglib.string(config, "eval.classifier_dir")


def validate_data(config, ds):
    """Checks that need the dataset (after `experiment.prepare`, before building): the
    attention resolutions are sides of the U-Net's levels, the evaluated counts exist."""
    sides, side = [], ds.example_shape[0]
    for _ in config.model.channel_mults:
        sides.append(side)
        side //= 2
    bad = [r for r in config.model.attention_resolutions if r not in sides]
    cfglib.require(not bad, "model.attention_resolutions",
                   config.model.attention_resolutions,
                   f"sides of the U-Net's levels on {config.data.name!r}: "
                   + ", ".join(map(str, sides)) + " (or () for none)")
    cfglib.at_most(config, "eval.bound_examples", len(ds.test),
                   f"the test images of {config.data.name!r} (0 = all)")
    cfglib.validate_fd(config, ds, ("eval.fd_samples", "eval.ancestral_fd_samples",
                                    "eval.pc_fd_samples"))


def _check_unet_sides(config, ds):
    levels = len(config.model.channel_mults)
    require_image_sides(ds, 2 ** (levels - 1), f"the U-Net with {levels} levels",
                        "resize or pad the images, or set --config.model.channel_mults "
                        "to fewer levels")


def build(config, example_shape):
    """(graphdef, state with EMA, step, schedule). The loss runs on uint8 batches."""
    m, d = config.model, config.diffusion
    net = UNet(example_shape, channels=m.channels, channel_mults=tuple(m.channel_mults),
               num_res_blocks=m.num_res_blocks,
               attention_resolutions=tuple(m.attention_resolutions), dropout=m.dropout,
               groups=m.groups, rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(net)
    schedule = diffusion.make_schedule(d.schedule, d.num_steps)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = with_ema(init_state(params, tx, dict(hparams, ema_decay=config.ema.decay)))

    def loss_fn(params, batch, key, hp):
        k_data, k_loss, k_drop = jax.random.split(key, 3)
        x0 = transforms.preprocess(k_data, batch, config.data.preprocess)
        if config.data.preprocess == "dequantize":
            x0 = 2.0 * x0 - 1.0
        unet = nnx.merge(graphdef, params)
        return losses.ddpm.noise_loss(x0, k_loss, model_fn=lambda x, t: unet(x, t, key=k_drop),
                                      schedule=schedule, prediction=d.prediction)

    step = ema_step(make_train_step(loss_fn, tx, lr_schedule))
    return graphdef, state, step, schedule


def make_evaluate(config, ds, graphdef, schedule):
    """(evaluate, x_test): evaluate(params, seed=config.seed) -> the test-set variational
    bound of results.json (without the "test/" prefix: bound_bpd and its prior, kl_steps
    and decoder terms, in bits/dim) of any U-Net parameters of `build`, the untrained ones
    included, on x_test, the first eval.bound_examples test images (uint8). The bound's
    keys follow ``seed``; one compiled program serves every call.
    evaluate.stacked(params [S, ...], seeds [S]) -> S such dicts, vmapped over the
    settings of a sweep (each as evaluate(params[s], seeds[s]) up to float rounding)."""
    d, e = config.diffusion, config.eval
    x_test = np.asarray(ds.test[:e.bound_examples or None])
    dims = int(np.prod(ds.example_shape))

    def bound(params, u8, key):                     # per-image bits/dim on 8-bit data
        unet = nnx.merge(graphdef, params)
        t = losses.ddpm.vlb_terms(transforms.to_symmetric(u8), key, model_fn=unet,
                                  schedule=schedule, prediction=d.prediction,
                                  variance=d.variance, num_t=e.bound_t)
        return {k: losses.ddpm.bits_per_dim(v, dims) for k, v in t.items()}

    def evaluate(params, seed=config.seed):
        out = map_dataset(bound, x_test, jax.random.key(seed + 1),
                          batch_size=e.batch_size, params=params)
        return {f"{k}_bpd": float(v.mean()) for k, v in out.items()}

    def stacked(params, seeds):         # S settings at once: params [S, ...], S seeds
        keys = jnp.stack([jax.random.key(int(s) + 1) for s in seeds])
        out = map_dataset_stacked(bound, x_test, keys, batch_size=e.batch_size,
                                  params=params)
        return [{f"{k}_bpd": float(v[i].mean()) for k, v in out.items()}
                for i in range(len(seeds))]

    evaluate.stacked = stacked
    return evaluate, x_test


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ds = experiment.prepare(config, workdir)
    _check_unet_sides(config, ds)
    validate_data(config, ds)
    graphdef, state, step, schedule = build(config, ds.example_shape)
    evaluate_params, x_test = make_evaluate(config, ds, graphdef, schedule)

    def evaluate(state):
        return evaluate_params(ema_params(state))

    state, summary = train(state, step, ds.train, cfg=config.train, seed=config.seed,
                           workdir=workdir, eval_fn=evaluate)
    t0 = time.perf_counter()
    metrics = {f"test/{k}": v for k, v in evaluate(state).items()}
    log(f"test bound {metrics['test/bound_bpd']:.4f} bits/dim on {len(x_test)} images "
        f"({time.perf_counter() - t0:.0f} s)")
    metrics.update(report(config, workdir, ds, graphdef, ema_params(state), schedule))
    return experiment.finish(workdir, config, metrics, summary=summary)


def make_samplers(config, graphdef, params, schedule, example_shape):
    """{"ancestral": f, "ddim": f, "pc": f} with f(key, n) -> images [n, *E] in [0, 1]
    (jitted once per n); "pc" is predictor-corrector sampling with the U-Net read as a
    score (`genjax.diffusion.score`: eval.pc_corrector_steps Langevin steps at
    signal-to-noise eval.pc_snr after each ancestral step)."""
    d, e = config.diffusion, config.eval
    common = dict(prediction=d.prediction, clip=d.clip)

    def run(name, params, key, n):
        unet = nnx.merge(graphdef, params)
        shape = (n, *example_shape)
        if name == "ancestral":
            x = samplers.ancestral(key, unet, schedule, shape, variance=d.variance, **common)
        elif name == "pc":
            x = diffusion.score.predictor_corrector(
                key, unet, schedule, shape, variance=d.variance,
                corrector_steps=e.pc_corrector_steps, snr=e.pc_snr, **common)
        else:
            x = samplers.ddim(key, unet, schedule, shape, num_steps=e.ddim_steps,
                              eta=e.ddim_eta, **common)
        return (x + 1) / 2

    jitted = xla.jit(run, static_argnums=(0, 3))
    return {name: functools.partial(jitted, name, params)
            for name in ("ancestral", "ddim", "pc")}


def _draw(fn, key, n, batch):
    return np.concatenate([np.asarray(fn(jax.random.fold_in(key, i), min(batch, n - i)))
                           for i in range(0, n, batch)]) if n else np.zeros((0,))


def report(config, workdir, ds, graphdef, params, schedule) -> dict:
    """Sample grids, the denoising trajectory and the Fréchet distance of each sampler
    (its grid shows the first of the images its FD uses)."""
    d, e, p = config.diffusion, config.eval, config.plots
    fns = make_samplers(config, graphdef, params, schedule, ds.example_shape)
    unet = nnx.merge(graphdef, params)
    key = jax.random.key(config.seed + 2)
    counts = {"ancestral": e.ancestral_fd_samples, "ddim": e.fd_samples,
              "pc": e.pc_fd_samples}
    clf = None
    if any(counts.values()):
        clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                            num_steps=e.classifier_steps)
    out = {} if clf is None else {"test/classifier_accuracy": clf.test_accuracy}
    for name, fn in fns.items():         # one draw per sampler: the grid is its first images
        if name == "pc" and not counts[name]:
            continue                         # T steps and the correctors: only when asked
        n = max(p.num_samples, counts[name])
        t0 = time.perf_counter()
        x = _draw(fn, key, n, max(p.num_samples, 2 * e.batch_size))
        dt = time.perf_counter() - t0
        viz.grid.save_image_grid(os.path.join(workdir, f"samples_{name}.png"),
                                 x[:p.num_samples])
        log(f"{name}: {n} samples in {dt:.1f} s (compile included)")
        out[f"sampling/{name}_images_per_s"] = n / dt
        if counts[name]:
            m = counts[name]
            real = np.asarray(transforms.to_unit(ds.test[:m]))
            out[f"test/frechet_distance_{name}"] = clf.frechet_distance(real, x[:m])
            out[f"test/fd_samples_{name}"] = m
            log(f"{name}: FD {out[f'test/frechet_distance_{name}']:.2f} over {m} samples")
    traj_n = p.trajectory_images
    _, path = samplers.ancestral(key, unet, schedule, (traj_n, *ds.example_shape),
                                 prediction=d.prediction, variance=d.variance, clip=d.clip,
                                 return_path=True)
    frames = np.linspace(0, d.num_steps, p.trajectory_frames).round().astype(int)
    strip = np.asarray((path[frames] + 1) / 2).swapaxes(0, 1).reshape(
        (traj_n * len(frames), *ds.example_shape))
    viz.grid.save_image_grid(os.path.join(workdir, "denoising_trajectory.png"), strip,
                             ncol=len(frames))
    return out


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state and `make_evaluate`'s test bound of its
    EMA parameters (the settings evaluated together, vmapped)."""
    ds = experiment.prepare(config, workdir)
    _check_unet_sides(config, ds)
    validate_data(config, ds)
    graphdef, _, step, schedule = build(config, ds.example_shape)
    ev, _ = make_evaluate(config, ds, graphdef, schedule)

    def evaluate(setting_config, params):
        return {f"test/{k}": v for k, v in ev(params["ema"], seed=setting_config.seed).items()}

    def evaluate_stacked(setting_configs, params):
        return [{f"test/{k}": v for k, v in m.items()}
                for m in ev.stacked(params["ema"], [c.seed for c in setting_configs])]

    return Program(init=lambda c: average_in_params(build(c, ds.example_shape)[1]),
                   step_fn=step_with_average_in_params(step), train_data=ds.train,
                   evaluate=evaluate, evaluate_stacked=evaluate_stacked)


# The seed, the optimiser's lr, weight_decay and grad_clip and ema.decay live in
# TrainState.hparams (or drive the init and keys): a sweep over them is one program; any
# other field (the U-Net, the diffusion, the schedule's warmup) is static.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields("ema.decay"),
                   validate=validate, prepare=prepare_sweep_program,
                   main_metric=("test/bound_bpd", "min"))


sweep = entry_point(SWEEP, "experiments.ddpm")


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="ddpm",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "ddpm.py"),
            description="DDPM")
