"""Train and evaluate a noise-conditional score network (NCSN): denoising or sliced score
matching over a geometric ladder of noise levels, annealed Langevin sampling.

    python -m experiments.score --config=configs/score.py[:PRESET]
        [--workdir=runs/score/PRESET] [--config.model.objective=ssm ...]

    python -m experiments.score --config=configs/score.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1      # 4 settings, one program

Presets: default (U-Net on mnist5k), eight_gaussians, moons, checkerboard, spirals,
ssm_moons, gpu, quick (see configs/score.py). Trains with the shared loop (an EMA of the
parameters in the train state), then, with the EMA parameters: the test-set objective
per noise level, annealed Langevin samples, and

  2-D points: mode coverage (eight_gaussians: the GAN toy's protocol), the total-variation
  distance between the samples' histogram and the true density's cell masses (with the
  test split's own distance, the floor that counting noise sets), and score_field.png
  (data, the true score of the smoothed data, the learned score, samples);
  images: the classifier Fréchet distance of eval.fd_samples samples, samples.png and
  langevin_chain.png (one row per chain: the state at the end of every level).

Writes checkpoints/, tensorboard/, metrics.jsonl, config.json and results.json.
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import mcmc, viz, xla
from genjax.data import toy_density, transforms
from genjax.data.embedded import EIGHT_GAUSSIANS_STD, eight_gaussians_centres
from genjax.eval import gan_toy, grid_density, map_dataset, sample_quality
from genjax.losses import score as score_loss
from genjax.models.score import ScoreMLP, ScoreUNet
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.ema import (average_in_params, ema_params, ema_step,
                              step_with_average_in_params, with_ema)
from genjax.train.sweep import Program, SweepParts, entry_point
from genjax.train.writers import log
from genjax.viz import score_field

OBJECTIVES = ("dsm", "ssm")


def validate(config):
    """Every field of the model, noise, sampler, ema, eval and plots sections (the shared
    ones: `cfglib.validate_common`), before anything is built or compiled."""
    cfglib.one_of(config, "model.objective", OBJECTIVES)
    cfglib.one_of(config, "model.projection", ("rademacher", "gaussian"))
    cfglib.integer(config, "model.num_projections")
    cfglib.int_tuple(config, "model.hidden", min_len=1, example="'(128, 128)'",
                     what="the score MLP's hidden widths (2-D points)")
    cfglib.integer(config, "model.embed", minimum=2)
    cfglib.require(config.model.embed % 2 == 0, "model.embed", config.model.embed,
                   "an even number (the level embedding has sin and cos halves)")
    channels = cfglib.integer(config, "model.channels", minimum=2)
    cfglib.require(channels % 2 == 0, "model.channels", channels,
                   "an even number (the level embedding has sin and cos halves)")
    cfglib.int_tuple(config, "model.channel_mults", example="'(1, 2)'",
                     what="width multipliers, one per U-Net level")
    cfglib.int_tuple(config, "model.attention_resolutions", min_len=0, distinct=True,
                     example="'(14,)'", what="image sides with self-attention")
    cfglib.integer(config, "model.num_res_blocks")
    cfglib.integer(config, "model.groups")
    cfglib.require(channels % config.model.groups == 0, "model.groups", config.model.groups,
                   f"a divisor of model.channels={channels} (group normalisation)")
    cfglib.in_range(config, "model.dropout", 0, 1)
    n = config.noise
    cfglib.number(config, "noise.sigma_min", low=0, low_open=True)
    cfglib.number(config, "noise.sigma_max", low=n.sigma_min, low_open=True,
                  why="the largest noise level, above noise.sigma_min")
    cfglib.integer(config, "noise.num_levels", minimum=2)
    cfglib.number(config, "sampler.step_size", low=0, low_open=True)
    cfglib.integer(config, "sampler.steps_per_level")
    cfglib.boolean(config, "sampler.denoise")
    cfglib.in_range(config, "ema.decay", 0, 1)
    cfglib.integer(config, "eval.batch_size")
    cfglib.integer(config, "eval.num_samples", minimum=2)
    cfglib.integer(config, "eval.fd_samples", minimum=0, why="0 = skip")
    cfglib.integer(config, "eval.dsm_examples", minimum=0, why="0 = all")
    cfglib.integer(config, "eval.classifier_steps")
    cfglib.string(config, "eval.classifier_dir")
    cfglib.integer(config, "plots.num_samples")
    cfglib.integer(config, "plots.chain_images")
    cfglib.integer(config, "plots.arrows", minimum=2)


def validate_data(config, ds):
    """Checks that need the dataset: the preprocessing fits its kind, the U-Net fits the
    image sides, the counts exist."""
    want = "unit" if ds.kind == "image" else "none"
    cfglib.require(config.data.preprocess == want, "data.preprocess", config.data.preprocess,
                   f"{want!r} for {ds.kind} data ({config.data.name!r})")
    if ds.kind == "image":
        levels = len(config.model.channel_mults)
        h, w = ds.example_shape[:2]
        cfglib.require(h % 2 ** (levels - 1) == 0 and w % 2 ** (levels - 1) == 0,
                       "model.channel_mults", config.model.channel_mults,
                       f"at most as many levels as {h}x{w} images halve evenly")
        sides = [h // 2 ** i for i in range(levels)]
        bad = [r for r in config.model.attention_resolutions if r not in sides]
        cfglib.require(not bad, "model.attention_resolutions",
                       config.model.attention_resolutions,
                       "sides of the U-Net's levels: " + ", ".join(map(str, sides)))
        cfglib.validate_fd(config, ds)
    cfglib.at_most(config, "eval.dsm_examples", len(ds.test),
                   f"the test examples of {config.data.name!r} (0 = all)")


def sigmas_of(config) -> np.ndarray:
    n = config.noise
    return score_loss.geometric_sigmas(n.sigma_max, n.sigma_min, n.num_levels)


def make_net(config, ds):
    m, rngs = config.model, nnx.Rngs(config.seed)
    if ds.kind == "image":
        return ScoreUNet(ds.example_shape, channels=m.channels,
                         channel_mults=tuple(m.channel_mults),
                         num_res_blocks=m.num_res_blocks,
                         attention_resolutions=tuple(m.attention_resolutions),
                         dropout=m.dropout, groups=m.groups, rngs=rngs)
    return ScoreMLP(ds.example_shape[0], tuple(m.hidden), embed=m.embed, rngs=rngs)


def build(config, ds):
    """(graphdef, state with EMA, step, score_of): score_of(params, key=None) ->
    score_fn(x [B, *E], level [B] or []) -> [B, *E] (the key drives the U-Net's dropout)."""
    m = config.model
    graphdef, params = nnx.split(make_net(config, ds))
    sigmas = jnp.asarray(sigmas_of(config))
    images = ds.kind == "image"
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = with_ema(init_state(params, tx, dict(hparams, ema_decay=config.ema.decay)))

    def score_of(params, key=None):
        net = nnx.merge(graphdef, params)
        if images:
            return lambda x, level: net(x, level, sigmas, key=key)
        return lambda x, level: net(x, level, sigmas)

    def loss_fn(params, batch, key, hp):
        del hp                                          # lr / weight decay act in the step
        k_data, k_loss, k_drop, k_level = jax.random.split(key, 4)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        score_fn = score_of(params, k_drop if images and m.dropout else None)
        if m.objective == "dsm":
            return score_loss.denoising_score_matching(x, k_loss, score_fn=score_fn,
                                                       sigmas=sigmas)
        level = jax.random.randint(k_level, (), 0, len(sigmas))
        k_noise, k_proj = jax.random.split(k_loss)
        noisy = x + sigmas[level] * jax.random.normal(k_noise, x.shape)
        loss, metrics = score_loss.sliced_score_matching(
            noisy, k_proj, score_fn=lambda y: score_fn(y, level),
            num_projections=m.num_projections, projection=m.projection)
        loss = sigmas[level] ** 2 * loss
        return loss, dict(metrics, ssm_weighted=loss)

    step = ema_step(make_train_step(loss_fn, tx, lr_schedule))
    return graphdef, state, step, score_of


def make_evaluate(config, ds, score_of):
    """evaluate(params, seed=config.seed) -> {"dsm": the test-set denoising objective
    (mean over levels), "dsm/level_i": per level} on eval.dsm_examples test examples,
    with keys fixed by the seed. One compiled program serves every call."""
    x_test = ds.test[:config.eval.dsm_examples or len(ds.test)]
    sigmas = jnp.asarray(sigmas_of(config))

    def per_example(params, u, key):
        x = transforms.preprocess(key, u, config.data.preprocess)
        keys = jax.random.split(key, x.shape[0])

        def one(xi, ki):                    # one example (the levels' terms, [L])
            return score_loss.dsm_per_level(xi[None], ki, score_fn=score_of(params),
                                            sigmas=sigmas)

        return {"per_level": jax.vmap(one)(x, keys)}                    # [B, L]

    def evaluate(params, seed=config.seed):
        out = map_dataset(per_example, x_test, jax.random.key(seed + 1),
                          batch_size=config.eval.batch_size, params=params)
        per = np.asarray(out["per_level"]).mean(0)
        return {"dsm": float(per.mean()),
                **{f"dsm/level_{i}": float(v) for i, v in enumerate(per)}}

    return evaluate


def make_sampler(config, ds, score_of):
    """sample(params, key, n, keep_levels) -> (samples [n, *E], chain [L, n, *E] or
    None): annealed Langevin from uniform noise on [0, 1] (images) or N(0, sigma_max^2 I)
    (points); images clipped to [0, 1]. Jitted once per (n, keep_levels)."""
    s = config.sampler
    sigmas = jnp.asarray(sigmas_of(config))
    images = ds.kind == "image"

    def sample(params, key, n, keep_levels):
        k0, k1 = jax.random.split(key)
        shape = (n, *ds.example_shape)
        x0 = (jax.random.uniform(k0, shape) if images
              else sigmas[0] * jax.random.normal(k0, shape))
        chain = mcmc.annealed_langevin(k1, x0, score_fn=score_of(params), sigmas=sigmas,
                                       step_size=s.step_size,
                                       steps_per_level=s.steps_per_level,
                                       denoise=s.denoise, keep_levels=keep_levels)
        x, path = chain.x, chain.samples
        if images:
            x = jnp.clip(x, 0.0, 1.0)
            path = None if path is None else jnp.clip(path, 0.0, 1.0)
        return x, path

    return xla.jit(sample, static_argnums=(2, 3))


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    graphdef, state, step, score_of = build(config, ds)
    evaluate = make_evaluate(config, ds, score_of)
    state, summary = train(state, step, ds.train, cfg=config.train, seed=config.seed,
                           workdir=workdir,
                           eval_fn=lambda state: evaluate(ema_params(state)))
    params = ema_params(state)
    metrics = {f"test/{k}": v for k, v in evaluate(params).items()}
    metrics.update(report(config, workdir, ds, score_of, params))
    return experiment.finish(workdir, config, metrics, summary=summary)


def _draw(sample, params, key, n: int, batch: int) -> np.ndarray:
    return np.concatenate([np.asarray(sample(params, jax.random.fold_in(key, i),
                                             min(batch, n - i), False)[0])
                           for i in range(0, n, batch)])


def report(config, workdir, ds, score_of, params) -> dict:
    """Samples and their metrics, and the figures (see the module docstring)."""
    e, p = config.eval, config.plots
    sample = make_sampler(config, ds, score_of)
    key = jax.random.key(config.seed + 2)
    t0 = time.perf_counter()
    n = max(e.num_samples, e.fd_samples if ds.kind == "image" else 0, p.num_samples)
    x = _draw(sample, params, key, n, max(e.batch_size, p.num_samples))
    dt = time.perf_counter() - t0
    out = {"sampling/samples_per_s": n / dt,
           "sampling/score_evals_per_sample": config.noise.num_levels
           * config.sampler.steps_per_level + int(config.sampler.denoise)}
    log(f"annealed Langevin: {n} samples in {dt:.1f} s (compile included)")
    if ds.kind == "image":
        out.update(_image_report(config, workdir, ds, sample, params, x))
    else:
        out.update(_points_report(config, workdir, ds, score_of, params, x))
    return out


def _image_report(config, workdir, ds, sample, params, x) -> dict:
    e, p = config.eval, config.plots
    scale = max(2, 56 // ds.example_shape[0])
    viz.save_image_grid(os.path.join(workdir, "samples.png"), x[:p.num_samples], scale=scale)
    _, path = sample(params, jax.random.key(config.seed + 3), p.chain_images, True)
    strip = np.asarray(path).swapaxes(0, 1).reshape((-1, *ds.example_shape))
    viz.save_image_grid(os.path.join(workdir, "langevin_chain.png"), strip,
                        ncol=config.noise.num_levels, scale=scale)
    out = {}
    if e.fd_samples:
        clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                            num_steps=e.classifier_steps)
        real = np.asarray(transforms.to_unit(ds.test[:e.fd_samples]))
        out["test/classifier_accuracy"] = clf.test_accuracy
        out["test/frechet_distance"] = clf.frechet_distance(real, x[:e.fd_samples])
        out["test/fd_samples"] = e.fd_samples
        log(f"FD {out['test/frechet_distance']:.2f} over {e.fd_samples} samples")
    return out


def _points_report(config, workdir, ds, score_of, params, x) -> dict:
    e, name = config.eval, config.data.name
    x = x[:e.num_samples]
    out = {"samples/finite_fraction": float(np.all(np.isfinite(x), -1).mean())}
    if name == "eight_gaussians":
        m = gan_toy.mode_metrics(x, eight_gaussians_centres(), std=EIGHT_GAUSSIANS_STD)
        out.update({f"samples/{k}": v for k, v in m.items()
                    if not k.startswith("mode_share")})
    truth = None
    if name in toy_density.TOYS:
        truth = functools.partial(toy_density.log_density, name)
        box = _box(ds.train)
        out["samples/histogram_tv"] = grid_density.histogram_tv(x, truth, extent=box)
        out["test/histogram_tv"] = grid_density.histogram_tv(
            ds.test[:len(x)], truth, extent=box)       # the floor: true samples, same N
    sigmas = sigmas_of(config)
    level = int(np.argmin(np.abs(sigmas - 0.1 * float(np.std(ds.train)))))
    fn = xla.jit(lambda q: score_of(params)(q, jnp.int32(level)))
    score_field.score_field_figure(
        os.path.join(workdir, "score_field.png"), data=ds.train[:5000], samples=x,
        score_fn=fn, sigma=float(sigmas[level]), true_log_prob=truth,
        arrows=config.plots.arrows,
        title=f"NCSN ({config.model.objective}) on {name}")
    return out


def _box(points, margin: float = 0.25):
    lo, hi = np.min(points, 0), np.max(points, 0)
    pad = margin * (hi - lo)
    return (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]),
            float(hi[1] + pad[1]))


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep: the data, the step of ``config`` and, per setting,
    `build`'s state and the test-set objective of its EMA parameters."""
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    graphdef, _, step, score_of = build(config, ds)
    evaluate = make_evaluate(config, ds, score_of)
    return Program(init=lambda c: average_in_params(build(c, ds)[1]),
                   step_fn=step_with_average_in_params(step), train_data=ds.train,
                   evaluate=lambda c, params: {
                       f"test/{k}": v for k, v in evaluate(params["ema"], seed=c.seed).items()})


# The seed, the optimiser's lr, weight_decay and grad_clip and ema.decay live in
# TrainState.hparams (or drive the init and keys): a sweep over them is one program.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields("ema.decay"), validate=validate,
                   prepare=prepare_sweep_program, main_metric=("test/dsm", "min"))


sweep = entry_point(SWEEP, "experiments.score")


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="score",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "score.py"),
            description="Score-based model (NCSN)")
