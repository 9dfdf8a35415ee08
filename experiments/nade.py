"""Train and evaluate an autoregressive model: FVBN, NADE, MADE or RNADE.

    python -m experiments.nade --config=configs/nade.py[:PRESET]
        [--workdir=runs/nade/PRESET] [--config.model.hidden='(250,)' ...]

    python -m experiments.nade --config=configs/nade.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1      # 4 settings, one program

Presets: default (NADE), fvbn, made, made_ensemble, rnade, rnade_digits, quick (see
configs/nade.py). A sweep (`genjax.train.sweep`) trains the settings that differ in the
seed and optim.lr / weight_decay / grad_clip in one compiled program (MADE: one per seed,
its masks follow the seed); every other field gives a program per value. Each setting
writes <setting>/results.json with the metrics below, ranked by test/log_likelihood.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples.png (exact ancestral samples; images) or density.png (2-D points: data, density,
samples), and results.json with the exact test log-likelihood in nats per example (and
bits per dimension for binary or dequantised images), the same on a fixed binarisation
of training examples, and the compiled sampler's throughput.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, NamedTuple

import jax
import numpy as np
from flax import nnx

from genjax import viz, xla
from genjax.data import transforms
from genjax.eval import exact_likelihood, throughput
from genjax.losses import autoregressive as ar
from genjax.models.fvbn import FVBN
from genjax.models.made import MADE, ORDERINGS
from genjax.models.nade import NADE
from genjax.models.rnade import RNADE, quantile_init
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.sweep import Program, SweepParts, run_sweep
from genjax.viz import density

MODELS = ("nade", "fvbn", "made", "rnade")
BINARY_MODELS = ("nade", "fvbn", "made")


def validate(config):
    """Every field of the model, eval and plots sections (the shared ones:
    `cfglib.validate_common`), before anything is built or compiled."""
    m = config.model
    cfglib.one_of(config, "model.name", MODELS)
    cfglib.one_of(config, "model.ordering", ORDERINGS)
    cfglib.boolean(config, "model.init_bias_from_data")
    cfglib.integer(config, "model.context", minimum=0, why="0 = every previous pixel")
    for f in ("model.num_masks", "model.components", "eval.batch_size", "plots.num_samples"):
        cfglib.integer(config, f)
    cfglib.integer(config, "plots.grid", minimum=2)
    for f in ("eval.num_examples", "eval.train_examples"):
        cfglib.integer(config, f, minimum=0, why="0 = all" if f == "eval.num_examples"
                       else "0 = skip")
    one = m.name in ("nade", "rnade")
    cfglib.int_tuple(config, "model.hidden", min_len=1, max_len=1 if one else None,
                     example="'(500,)'", what=f"one hidden layer width for {m.name}" if one
                     else f"the hidden layer widths of {m.name}")
    cfglib.require(m.context == 0 or m.name == "fvbn", "model.context", m.context,
                   f"0 for {m.name} (the AR(k) truncation is FVBN's)")
    cfglib.require(m.num_masks == 1 or m.name == "made", "model.num_masks", m.num_masks,
                   f"1 for {m.name} (several masks are MADE's)")
    cfglib.require(m.name in BINARY_MODELS or config.data.preprocess in ("none", "dequantize",
                                                                          "unit"),
                   "data.preprocess", config.data.preprocess,
                   "'none' (points) or 'dequantize' (images) for the real-valued RNADE")
    cfglib.require(m.name not in BINARY_MODELS or config.data.preprocess == "dynamic_binarize",
                   "data.preprocess", config.data.preprocess,
                   f"'dynamic_binarize' for the binary {m.name} (or --config.model.name=rnade)")


def validate_data(config, ds):
    """Checks that need the dataset: the model and the data kind agree, the evaluated
    example counts exist."""
    if config.model.name in BINARY_MODELS:
        cfglib.require(ds.kind == "image", "data.name", config.data.name,
                       f"an image dataset for the binary {config.model.name} (e.g. mnist5k)")
    elif ds.kind == "points":
        cfglib.require(config.data.preprocess == "none", "data.preprocess",
                       config.data.preprocess, "'none' for 2-D points")
    else:
        cfglib.require(config.data.preprocess in ("dequantize", "unit"), "data.preprocess",
                       config.data.preprocess, "'dequantize' or 'unit' for images")
    cfglib.at_most(config, "eval.num_examples", len(ds.test),
                   f"the test examples of {config.data.name!r} (0 = all)")
    cfglib.at_most(config, "eval.train_examples", len(ds.train),
                   f"the training examples of {config.data.name!r} (0 = skip)")
    dim = 1
    for s in ds.example_shape:
        dim *= s
    cfglib.at_most(config, "model.context", dim - 1,
                   f"D - 1 for the {dim} dimensions of {config.data.name!r} (0 = all)")


def _logit(p, eps=1e-3):
    p = np.clip(p, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def make_model(config, example_shape, train_data=None):
    """The config's model. ``train_data`` (the stored training split) sets the initial
    output biases when model.init_bias_from_data: the log-odds of the mean pixel
    intensities (the marginals of dynamically binarised data), or for RNADE the
    component means and scales from the quantiles of the preprocessed data."""
    m, rngs = config.model, nnx.Rngs(config.seed)
    use_data = m.init_bias_from_data and train_data is not None
    if m.name == "rnade":
        mean0 = scale0 = None
        if use_data:
            x = experiment.fixed_view(np.asarray(train_data), config.data.preprocess, seed=1)
            mean0, scale0 = quantile_init(x, m.components)
        return RNADE(example_shape, hidden=m.hidden[0], num_components=m.components,
                     mean_init=mean0, log_scale_init=scale0, rngs=rngs)
    bias = None
    if use_data:
        bias = _logit(np.asarray(train_data, np.float64).reshape(len(train_data), -1).mean(0)
                      / 255.0)
    if m.name == "nade":
        return NADE(example_shape, hidden=m.hidden[0], bias_init=bias, rngs=rngs)
    if m.name == "fvbn":
        return FVBN(example_shape, context=m.context, bias_init=bias)
    return MADE(example_shape, hidden=tuple(m.hidden), ordering=m.ordering,
                num_masks=m.num_masks, mask_seed=config.seed, bias_init=bias, rngs=rngs)


class Built(NamedTuple):
    """What `build` returns (shared with benchmarks/nade_throughput.py).

    loss_fn(params, batch, key, hparams) -> (loss, metrics) on a stored (uint8) batch;
    log_prob_fn(params, x) -> {name: [B]} exact log-likelihoods in nats of preprocessed
    x [B, *E] ("log_likelihood"; MADE with several masks also "log_likelihood_mask0");
    sample_fn(params, key, num) -> [num, *E] ancestral samples; model(params) -> module."""
    graphdef: object
    consts: object
    state: object
    tx: object
    lr_schedule: Callable
    loss_fn: Callable
    log_prob_fn: Callable
    sample_fn: Callable
    model: Callable


def build(config, example_shape, train_data=None) -> Built:
    m = config.model
    graphdef, params, consts = nnx.split(make_model(config, example_shape, train_data),
                                         nnx.Param, ...)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, hparams)
    # the hand-written NADE gradient keeps per-device partial sums (see nade_log_likelihood)
    groups = jax.device_count()
    model_of = lambda params: nnx.merge(graphdef, params, consts)    # noqa: E731

    def train_log_prob(model, x, key):
        if m.name == "nade":
            return model.log_prob(x, groups=groups)
        if m.name == "made" and m.num_masks > 1:        # order-agnostic: a mask per step
            return model.log_prob(x, jax.random.randint(key, (), 0, m.num_masks))
        return model.log_prob(x)

    def loss_fn(params, batch, key, hp):
        del hp                                          # lr / weight decay act in the step
        k_data, k_mask = jax.random.split(key)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        return ar.nll_loss(train_log_prob(model_of(params), x, k_mask))

    def log_prob_fn(params, x):
        model = model_of(params)
        if m.name == "made" and m.num_masks > 1:
            return {"log_likelihood": model.log_prob_ensemble(x),
                    "log_likelihood_mask0": model.log_prob(x, 0)}
        return {"log_likelihood": model.log_prob(x)}

    def sample_fn(params, key, num):
        return model_of(params).sample(key, num)[0]

    return Built(graphdef, consts, state, tx, lr_schedule, loss_fn, log_prob_fn, sample_fn,
                 model_of)


def make_evaluate(config, ds, b: Built):
    """`genjax.eval.exact_likelihood.make_evaluate` of the model's exact log-likelihoods
    (`Built.log_prob_fn`)."""
    return exact_likelihood.make_evaluate(config, ds, b.log_prob_fn)


final_metrics = exact_likelihood.final_metrics


def _kinds(config):
    return ("image",) if config.model.name in BINARY_MODELS else ("image", "points")


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates the exact test log-likelihood, writes
    the figure and results.json; returns the final metrics."""
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=_kinds(config))
    validate_data(config, ds)
    b = build(config, ds.example_shape, ds.train)
    evaluate = make_evaluate(config, ds, b)
    state, summary = train(b.state, make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                           ds.train, cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=lambda state: evaluate(state.params))
    metrics = final_metrics(config, ds, evaluate, state.params, config.seed)
    metrics.update(report(config, workdir, ds, b, state.params))
    return experiment.finish(workdir, config, metrics, summary=summary)


def report(config, workdir, ds, b: Built, params) -> dict:
    """The samples figure (samples.png for images, density.png for 2-D points) and the
    compiled sampler's throughput (samples per second, compile excluded)."""
    p = config.plots
    samples, rate = throughput.timed_samples(
        lambda k: b.sample_fn(params, k, p.num_samples), jax.random.key(config.seed + 2),
        p.num_samples)
    if ds.kind == "points" and ds.example_shape != (2,):
        pass                                 # density.png draws 2-D points only
    elif ds.kind == "points":
        log_prob = xla.jit(lambda x: b.log_prob_fn(params, x)["log_likelihood"])
        density.density_figure(
            os.path.join(workdir, "density.png"), log_prob=log_prob, data=ds.train[:5000],
            samples=samples, size=p.grid,
            title=f"{config.model.name} on {config.data.name}")
    else:
        scale = max(2, 56 // ds.example_shape[0])          # 8x8 digits drawn 7x larger
        viz.save_image_grid(os.path.join(workdir, "samples.png"), np.clip(samples, 0, 1),
                            scale=scale)
    return {"sampling/samples_per_s": rate}


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state (its seed's weights and, with
    model.init_bias_from_data, the output biases from this program's training data, as in
    its single run) and `final_metrics` through one compiled evaluation."""
    ds = experiment.prepare(config, workdir, kinds=_kinds(config))
    validate_data(config, ds)
    b = build(config, ds.example_shape, ds.train)
    evaluate = make_evaluate(config, ds, b)     # settings differ in dynamic fields only

    return Program(init=lambda c: build(c, ds.example_shape, ds.train).state,
                   step_fn=make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                   train_data=ds.train,
                   evaluate=lambda c, params: final_metrics(c, ds, evaluate, params,
                                                            c.seed))


# The seed (weights, data order, step keys) and the optimiser's lr / weight_decay /
# grad_clip live in TrainState.hparams or the init: a sweep over them is one program. The
# models have no hyper-parameter of their own in hparams, so every other field is static.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields(), validate=validate,
                   prepare=prepare_sweep_program,
                   main_metric=("test/log_likelihood", "max"))


def _masks_follow_seed(config, axes) -> bool:
    """MADE draws its connectivity masks from the seed (`made_masks`); they are fixed
    arrays of the program, not trained parameters, so a seed sweep of MADE needs one
    program per seed to equal its single runs."""
    swept = {sweep_spec.parse_axis(t).field for t in axes}
    return config.model.name == "made" or "model.name" in swept


def sweep(config, workdir: str, axes, *, samples: int = 0, sweep_seed: int = 0,
          **options) -> dict:
    """The ``--sweep`` entry point: `genjax.train.sweep.run_sweep` with the autoregressive
    models' parts (MADE: one program per seed, `_masks_follow_seed`). ``options`` (e.g.
    the cli's further sweep flags) go to run_sweep as they are."""
    parts = SWEEP
    if _masks_follow_seed(config, axes):
        parts = dataclasses.replace(SWEEP, dynamic=SWEEP.dynamic - {"seed"})
    return run_sweep(config, workdir, axes, parts=parts, samples=samples,
                     sweep_seed=sweep_seed, **options)


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="nade",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "nade.py"),
            description="Autoregressive-model")
