"""Train and evaluate an energy-based model, p(x) proportional to exp(-E(x)), by
contrastive divergence with short-run Langevin negatives from a replay buffer (or from
noise alone).

    python -m experiments.ebm --config=configs/ebm.py[:PRESET]
        [--workdir=runs/ebm/PRESET] [--config.sampler.buffer_size=0 ...]

    python -m experiments.ebm --config=configs/ebm.py:quick \\
        --sweep=loss.alpha=0.01,0.1 --sweep=seed=0,1      # 4 settings, one program

Presets: default (eight_gaussians), moons, checkerboard, spirals, mnist5k, short_run, gpu,
quick (see configs/ebm.py). After training:

  2-D points: the test log-likelihood of the model normalised on a grid over the sampler's
  box (sampler.low .. sampler.high per axis; the model is a density on that box), the true
  density's on the same points and KL(true || model) on the grid; for eval.num_samples
  samples of eval.eval_steps Langevin steps from noise (samples/...) and for as many
  replay-buffer entries, the persistent chains (buffer/...): mode coverage
  (eight_gaussians) and the histogram distance to the true density; density.png (data,
  true density, the EBM's density, buffer samples);
  images: samples of eval.eval_steps steps from noise (short-run), their classifier
  Fréchet distance, samples.png, replay_buffer.png and langevin_chain.png.

A run whose energies or samples diverge stops with the step and the metric named
(`genjax.train.loop`): lower sampler.step_size or optim.lr, or raise loss.alpha.
Writes checkpoints/ (the replay buffer included), tensorboard/, metrics.jsonl, config.json
and results.json.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import mcmc, viz, xla
from genjax.data import toy_density, transforms
from genjax.data.embedded import EIGHT_GAUSSIANS_STD, eight_gaussians_centres
from genjax.eval import gan_toy, grid_density, sample_quality
from genjax.models.score import EnergyConvNet, EnergyMLP, energy_score
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import sweep_spec, train
from genjax.train.ebm_step import make_ebm_step, replay_buffer, with_replay
from genjax.train.sweep import Program, SweepParts, entry_point
from genjax.train.writers import log
from genjax.viz import density


def validate(config):
    """Every field of the model, loss, sampler, eval and plots sections (the shared ones:
    `cfglib.validate_common`), before anything is built or compiled."""
    cfglib.int_tuple(config, "model.hidden", min_len=1, example="'(128, 128)'",
                     what="the energy MLP's hidden widths (2-D points)")
    cfglib.integer(config, "model.channels")
    cfglib.integer(config, "model.levels", maximum=4)
    cfglib.number(config, "model.data_noise", low=0)
    cfglib.number(config, "loss.alpha", low=0)
    s = config.sampler
    cfglib.number(config, "sampler.step_size", low=0, low_open=True)
    cfglib.number(config, "sampler.noise_scale", low=0, why="0 = sqrt(step_size)")
    cfglib.integer(config, "sampler.num_steps")
    cfglib.number(config, "sampler.clip_score", low=0, why="0 = no clipping")
    cfglib.number(config, "sampler.low")
    cfglib.number(config, "sampler.high", low=s.low, low_open=True,
                  why="the box's upper end, above sampler.low")
    cfglib.integer(config, "sampler.buffer_size", minimum=0, why="0 = no replay buffer")
    cfglib.in_range(config, "sampler.reinit", 0, 1, high_open=False)
    cfglib.integer(config, "eval.batch_size")
    cfglib.integer(config, "eval.num_samples", minimum=2)
    cfglib.integer(config, "eval.eval_steps")
    cfglib.integer(config, "eval.fd_samples", minimum=0, why="0 = skip")
    cfglib.integer(config, "eval.grid", minimum=10)
    cfglib.integer(config, "eval.classifier_steps")
    cfglib.string(config, "eval.classifier_dir")
    cfglib.integer(config, "plots.num_samples")
    cfglib.integer(config, "plots.chain_images")
    cfglib.integer(config, "plots.grid", minimum=10)


def validate_data(config, ds):
    """Checks that need the dataset: the preprocessing fits its kind, the data lie in the
    sampler's box, the counts exist."""
    want = "symmetric" if ds.kind == "image" else "none"
    cfglib.require(config.data.preprocess == want, "data.preprocess", config.data.preprocess,
                   f"{want!r} for {ds.kind} data ({config.data.name!r})")
    s = config.sampler
    if ds.kind == "image":
        side = ds.example_shape[0]
        cfglib.require(side % 2 ** config.model.levels == 0, "model.levels",
                       config.model.levels, f"at most as many halvings as {side} allows")
        cfglib.require(s.low <= -1, "sampler.low", s.low,
                       "at most -1: the box must hold the images' range [-1, 1]")
        cfglib.require(s.high >= 1, "sampler.high", s.high,
                       "at least 1: the box must hold the images' range [-1, 1]")
        cfglib.validate_fd(config, ds)
    else:
        lo, hi = float(np.min(ds.train)), float(np.max(ds.train))
        cfglib.require(s.low <= lo, "sampler.low", s.low,
                       f"at most {lo:.2f}: the box must hold the data (they span "
                       f"[{lo:.2f}, {hi:.2f}])")
        cfglib.require(s.high >= hi, "sampler.high", s.high,
                       f"at least {hi:.2f}: the box must hold the data (they span "
                       f"[{lo:.2f}, {hi:.2f}])")


def make_energy(config, ds):
    m, rngs = config.model, nnx.Rngs(config.seed)
    if ds.kind == "image":
        return EnergyConvNet(ds.example_shape, channels=m.channels, levels=m.levels,
                             rngs=rngs)
    return EnergyMLP(ds.example_shape[0], tuple(m.hidden), rngs=rngs)


def _sampler_kw(config) -> dict:
    s = config.sampler
    return dict(noise_scale=s.noise_scale or None, clip_score=s.clip_score or None,
                bounds=(s.low, s.high))


def build(config, ds):
    """(graphdef, state with the replay buffer, step, energy_of): energy_of(params) ->
    energy_fn(x [N, *E] as the energy sees it) -> [N] nats."""
    s, images = config.sampler, ds.kind == "image"
    graphdef, params = nnx.split(make_energy(config, ds))
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    hparams = dict(hparams, alpha=config.loss.alpha, langevin_step=s.step_size)
    shape = ds.example_shape

    def energy_of(params):
        return nnx.merge(graphdef, params)

    def init_fn(key, n):
        return jax.random.uniform(key, (n, *shape), minval=s.low, maxval=s.high)

    def positives(batch, key):
        k_data, k_noise = jax.random.split(key)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        if images and config.model.data_noise:
            x = x + config.model.data_noise * jax.random.normal(k_noise, x.shape)
        return x

    buffer = init_fn(jax.random.key(config.seed + 7), s.buffer_size) if s.buffer_size \
        else None
    state = with_replay(init_state(params, tx, hparams), buffer)
    step = make_ebm_step(energy_of=energy_of, tx=tx, init_fn=init_fn, positives=positives,
                         num_steps=s.num_steps, reinit=s.reinit,
                         persistent=bool(s.buffer_size), lr_schedule=lr_schedule,
                         **_sampler_kw(config))
    return graphdef, state, step, energy_of


def make_sampler(config, ds, energy_of):
    """sample(params, langevin_step, key, n, keep) -> (x [n, *E], path [keep?]):
    eval.eval_steps Langevin steps from uniform noise on the box, with the training
    dynamics; keep=True also returns the states after every tenth of the chain."""
    s, e = config.sampler, config.eval

    def sample(params, langevin_step, key, n, keep):
        k0, k1 = jax.random.split(key)
        x0 = jax.random.uniform(k0, (n, *ds.example_shape), minval=s.low, maxval=s.high)
        thin = max(1, e.eval_steps // 10)
        chain = mcmc.ula(k1, x0, score_fn=energy_score(energy_of(params)),
                         step_size=langevin_step, num_steps=e.eval_steps,
                         thin=thin, keep_samples=keep, **_sampler_kw(config))
        return chain.x, chain.samples

    return xla.jit(sample, static_argnums=(3, 4))


def box(config):
    s = config.sampler
    return (s.low, s.high, s.low, s.high)


def log_likelihood_metrics(config, ds, energy_of, params) -> dict:
    """Points: test/log_likelihood (nats per point) of the model normalised on the
    eval.grid x eval.grid grid over the box; toys also test/true_log_likelihood,
    test/gap_to_truth and test/kl_true_to_model (nats, on the grid)."""
    if ds.kind != "points" or ds.example_shape != (2,):
        return {}
    neg = xla.jit(lambda x: -energy_of(params)(x))
    ll = grid_density.grid_log_likelihood(neg, ds.test, extent=box(config),
                                          size=config.eval.grid)
    out = {"test/log_likelihood": float(np.mean(ll))}
    if config.data.name in toy_density.TOYS:
        truth = functools.partial(toy_density.log_density, config.data.name)
        out["test/true_log_likelihood"] = toy_density.expected_log_density(
            config.data.name, ds.test)
        out["test/gap_to_truth"] = out["test/true_log_likelihood"] - out["test/log_likelihood"]
        out["test/kl_true_to_model"] = grid_density.grid_kl(truth, neg, extent=box(config),
                                                            size=config.eval.grid)
    return out


def evaluate_fn(config, ds, energy_of):
    """evaluate(params) -> the log-likelihood metrics (points) or, for images, the mean
    energy of the test images (test/energy, nats): the number logged during training."""
    x_test = None
    if ds.kind == "image":
        x_test = np.asarray(transforms.to_symmetric(ds.test[:config.eval.batch_size]))
    energy = xla.jit(lambda p, x: energy_of(p)(x))     # one program for every evaluation

    def evaluate(params):
        if x_test is None:
            return {k.removeprefix("test/"): v for k, v in
                    log_likelihood_metrics(config, ds, energy_of, params).items()}
        return {"energy": float(jnp.mean(energy(params, x_test)))}

    return evaluate


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    graphdef, state, step, energy_of = build(config, ds)
    evaluate = evaluate_fn(config, ds, energy_of)
    state, summary = train(state, step, ds.train, cfg=config.train, seed=config.seed,
                           workdir=workdir, eval_fn=lambda state: evaluate(state.params))
    metrics = log_likelihood_metrics(config, ds, energy_of, state.params)
    metrics.update(report(config, workdir, ds, energy_of, state))
    return experiment.finish(workdir, config, metrics, summary=summary)


def report(config, workdir, ds, energy_of, state) -> dict:
    """Samples from noise and their metrics, and the figures (module docstring)."""
    e, p = config.eval, config.plots
    sample = make_sampler(config, ds, energy_of)
    key, lstep = jax.random.key(config.seed + 2), state.hparams["langevin_step"]
    n = max(e.num_samples, e.fd_samples, p.num_samples if ds.kind == "image" else 0)
    x = np.concatenate([np.asarray(sample(state.params, lstep, jax.random.fold_in(key, i),
                                          min(e.batch_size, n - i), False)[0])
                        for i in range(0, n, e.batch_size)])
    out = {"samples/finite_fraction": float(np.all(np.isfinite(
        x.reshape(len(x), -1)), -1).mean())}
    buf = np.asarray(replay_buffer(state)) if config.sampler.buffer_size else np.zeros(0)
    if ds.kind == "image":
        scale = max(2, 56 // ds.example_shape[0])
        unit = (x + 1) / 2
        viz.save_image_grid(os.path.join(workdir, "samples.png"), unit[:p.num_samples],
                            scale=scale)
        if len(buf):
            viz.save_image_grid(os.path.join(workdir, "replay_buffer.png"),
                                (buf[:p.num_samples] + 1) / 2, scale=scale)
        _, path = sample(state.params, lstep, jax.random.key(config.seed + 3),
                         p.chain_images, True)
        strip = ((np.asarray(path) + 1) / 2).swapaxes(0, 1)
        viz.save_image_grid(os.path.join(workdir, "langevin_chain.png"),
                            strip.reshape((-1, *ds.example_shape)), ncol=strip.shape[1],
                            scale=scale)
        if e.fd_samples:
            clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                                num_steps=e.classifier_steps)
            real = np.asarray(transforms.to_unit(ds.test[:e.fd_samples]))
            out["test/classifier_accuracy"] = clf.test_accuracy
            out["test/frechet_distance"] = clf.frechet_distance(real, unit[:e.fd_samples])
            out["test/fd_samples"] = e.fd_samples
            log(f"FD {out['test/frechet_distance']:.2f} over {e.fd_samples} short-run "
                "samples")
        return out
    x = x[:e.num_samples]
    name = config.data.name
    truth = (functools.partial(toy_density.log_density, name)
             if name in toy_density.TOYS else None)
    out.update(_point_sample_metrics(config, ds, x, "samples", truth))
    if len(buf):         # the persistent chains: the model's long-run samples
        out.update(_point_sample_metrics(config, ds, buf[:e.num_samples], "buffer", truth))
    if truth is not None:
        out["test/histogram_tv"] = grid_density.histogram_tv(ds.test[:len(x)], truth,
                                                             extent=box(config))
    neg = xla.jit(lambda q: -energy_of(state.params)(q))
    log_z = grid_density.grid_log_normaliser(neg, box(config), size=e.grid)
    shown = buf if len(buf) else x
    density.density_figure(
        os.path.join(workdir, "density.png"), log_prob=lambda q: np.asarray(neg(q)) - log_z,
        data=ds.train[:5000], samples=shown[:p.num_samples], size=p.grid,
        true_log_prob=truth,
        title=f"EBM on {name} ({config.sampler.num_steps} Langevin steps per update; "
              + ("samples: the replay buffer)" if len(buf) else
                 f"samples: {e.eval_steps} steps from noise)"))
    return out


def _point_sample_metrics(config, ds, x, prefix: str, truth) -> dict:
    """Mode coverage (eight_gaussians) and the histogram distance to the true density
    (toys) of 2-D samples x, under ``prefix``/."""
    out = {}
    if config.data.name == "eight_gaussians":
        m = gan_toy.mode_metrics(x, eight_gaussians_centres(), std=EIGHT_GAUSSIANS_STD)
        out.update({f"{prefix}/{k}": v for k, v in m.items()
                    if not k.startswith("mode_share")})
    if truth is not None:
        out[f"{prefix}/histogram_tv"] = grid_density.histogram_tv(x, truth,
                                                                  extent=box(config))
    return out


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep: the data, the step of ``config`` and, per setting,
    `build`'s state (buffer included) and its log-likelihood metrics (points) or mean test
    energy (images)."""
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    _, _, step, energy_of = build(config, ds)
    evaluate = evaluate_fn(config, ds, energy_of)
    return Program(init=lambda c: build(c, ds)[1], step_fn=step, train_data=ds.train,
                   evaluate=lambda c, params: {f"test/{k}": v
                                               for k, v in evaluate(params).items()})


# The seed, the optimiser's hyper-parameters, loss.alpha and sampler.step_size live in
# TrainState.hparams (or drive the init and keys): a sweep over them is one program.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields("loss.alpha", "sampler.step_size"),
                   validate=validate, prepare=prepare_sweep_program,
                   main_metric=("test/log_likelihood", "max"))


sweep = entry_point(SWEEP, "experiments.ebm")


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="ebm",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "ebm.py"),
            description="Energy-based model")
