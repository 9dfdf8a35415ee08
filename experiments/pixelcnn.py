"""Train and evaluate a PixelCNN (gated or plain) with an exact log-likelihood.

    python -m experiments.pixelcnn --config=configs/pixelcnn.py[:PRESET]
        [--workdir=runs/pixelcnn/PRESET] [--config.model.layers=8 ...]

    python -m experiments.pixelcnn --config=configs/pixelcnn.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1      # 4 settings, one program

Presets: default (binarised mnist5k), plain, digits (8-bit, bits/dim), gpu, quick (see
configs/pixelcnn.py). A sweep over the seed and optim.lr / weight_decay / grad_clip is one
compiled program; every model field gives a program per value. Each setting writes
<setting>/results.json, ranked by test/log_likelihood.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples.png (exact ancestral samples, one compiled scan over the pixels),
completions.png (held-out digits, one per row: the input with only its top
eval.completion_rows rows given, five completions sampled from the model's exact
conditional, the truth; `genjax.eval.completion`) and results.json: the
exact test log-likelihood in nats per example and bits per dimension, the same on a fixed
view of training examples, test/completion_log_likelihood (log p(bottom rows | top rows)
of the true test digits, nats, exact) and the compiled sampler's throughput.
"""

from __future__ import annotations

import os
from typing import Callable, NamedTuple

import jax
import numpy as np
from flax import nnx

from genjax import viz, xla
from genjax.data import transforms
from genjax.eval import completion, exact_likelihood, throughput
from genjax.losses import autoregressive as ar
from genjax.models.pixelcnn import ARCHS, PixelCNN
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.sweep import Program, SweepParts, entry_point

LEVELS = {"dynamic_binarize": 2, "none": 256}


def validate(config):
    """Every field of the model, eval and plots sections, before anything is built."""
    m = config.model
    cfglib.one_of(config, "model.arch", ARCHS)
    for f in ("model.channels", "model.layers", "model.head", "eval.batch_size",
              "plots.num_samples"):
        cfglib.integer(config, f)
    for f in ("model.kernel", "model.first_kernel"):
        k = cfglib.integer(config, f, minimum=3)
        cfglib.require(k % 2 == 1, f, k, "an odd kernel size >= 3 (centred on the pixel)")
    cfglib.require(m.levels in (2, 256) and not isinstance(m.levels, bool), "model.levels",
                   m.levels, "2 (binary pixels) or 256 (8-bit pixel values)")
    cfglib.boolean(config, "model.init_bias_from_data")
    cfglib.integer(config, "eval.num_examples", minimum=0, why="0 = all")
    cfglib.integer(config, "eval.train_examples", minimum=0, why="0 = skip")
    cfglib.integer(config, "eval.completion_rows", minimum=0, why="0 = skip")
    want = {2: "dynamic_binarize", 256: "none"}[m.levels]
    cfglib.require(config.data.preprocess == want, "data.preprocess", config.data.preprocess,
                   f"{want!r} for model.levels={m.levels} (binary pixels: "
                   "'dynamic_binarize' with levels 2; 8-bit values: 'none' with levels 256)")


def validate_data(config, ds):
    """Checks that need the dataset: grayscale images, example counts, completion rows."""
    cfglib.require(len(ds.example_shape) == 3 and ds.example_shape[2] == 1, "data.name",
                   config.data.name, "a grayscale image dataset [H, W, 1] (e.g. mnist5k, "
                   "digits): the masks are spatial only")
    cfglib.at_most(config, "eval.num_examples", len(ds.test),
                   f"the test examples of {config.data.name!r} (0 = all)")
    cfglib.at_most(config, "eval.train_examples", len(ds.train),
                   f"the training examples of {config.data.name!r} (0 = skip)")
    cfglib.at_most(config, "eval.completion_rows", ds.example_shape[0] - 1,
                   f"the image height minus one ({ds.example_shape[0] - 1}; 0 = skip)")


def _initial_bias(config, train_data):
    """The output bias that makes the untrained model's conditionals the training data's
    per-pixel marginals: log-odds of the mean intensity (binary; dynamic binarisation
    draws pixels with those means) or the log of each pixel's smoothed value histogram
    (8-bit, [D, 256])."""
    x = np.asarray(train_data, np.float64).reshape(len(train_data), -1)
    if config.model.levels == 2:
        p = np.clip(x.mean(0) / 255.0, 1e-3, 1 - 1e-3)
        return np.log(p) - np.log1p(-p)
    counts = np.stack([np.bincount(col.astype(np.int64), minlength=256) for col in x.T])
    return np.log((counts + 0.5) / (counts.sum(1, keepdims=True) + 128.0))


def make_model(config, example_shape, train_data=None) -> PixelCNN:
    m = config.model
    bias = (_initial_bias(config, train_data)
            if m.init_bias_from_data and train_data is not None else None)
    return PixelCNN(example_shape, arch=m.arch, channels=m.channels, layers=m.layers,
                    kernel=m.kernel, first_kernel=m.first_kernel, head=m.head,
                    levels=m.levels, bias_init=bias, rngs=nnx.Rngs(config.seed))


class Built(NamedTuple):
    """loss_fn(params, batch, key, hparams) -> (loss, metrics) on a stored uint8 batch;
    log_prob_fn(params, x) -> {"log_likelihood": [B]} nats of preprocessed x;
    sample_fn(params, key, num) -> [num, H, W, 1] values 0..levels-1; model(params)."""
    state: object
    tx: object
    lr_schedule: Callable
    loss_fn: Callable
    log_prob_fn: Callable
    sample_fn: Callable
    model: Callable


def build(config, example_shape, train_data=None) -> Built:
    graphdef, params, consts = nnx.split(make_model(config, example_shape, train_data),
                                         nnx.Param, ...)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    model_of = lambda params: nnx.merge(graphdef, params, consts)    # noqa: E731

    def loss_fn(params, batch, key, hp):
        del hp                                          # lr / weight decay act in the step
        x = transforms.preprocess(key, batch, config.data.preprocess)
        return ar.nll_loss(model_of(params).log_prob(x))

    def log_prob_fn(params, x):
        return {"log_likelihood": model_of(params).log_prob(x)}

    def sample_fn(params, key, num):
        return model_of(params).sample(key, num)[0]

    return Built(init_state(params, tx, hparams), tx, lr_schedule, loss_fn, log_prob_fn,
                 sample_fn, model_of)


given_rows = completion.given_rows      # the completion mask: the top rows given


def completion_metric(config, ds, b: Built, params) -> dict:
    """test/completion_log_likelihood: the mean over the evaluated test examples of
    log p(rows below | top eval.completion_rows rows) of the true digits, nats (exact;
    `genjax.eval.completion.completion_log_likelihood`)."""
    rows = config.eval.completion_rows
    if not rows:
        return {}
    x = experiment.fixed_view(ds.test, config.data.preprocess)
    if config.eval.num_examples:
        x = x[:config.eval.num_examples]
    out = completion.completion_log_likelihood(
        lambda p, xb, mask: b.model(p).conditional_log_prob(xb, mask), params, x,
        given_rows(ds.example_shape, rows), key=jax.random.key(config.seed + 3),
        batch_size=config.eval.batch_size)
    return {f"test/{k}": v for k, v in out.items()}


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates the exact test log-likelihood, writes
    the figures and results.json; returns the final metrics."""
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=("image",))
    validate_data(config, ds)
    b = build(config, ds.example_shape, ds.train)
    evaluate = exact_likelihood.make_evaluate(config, ds, b.log_prob_fn)
    state, summary = train(b.state, make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                           ds.train, cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=lambda state: evaluate(state.params))
    metrics = final_metrics(config, ds, evaluate, b, state.params, config.seed)
    metrics.update(report(config, workdir, ds, b, state.params))
    return experiment.finish(workdir, config, metrics, summary=summary)


def final_metrics(config, ds, evaluate, b: Built, params, seed) -> dict:
    metrics = exact_likelihood.final_metrics(config, ds, evaluate, params, seed,
                                             discrete=config.model.levels > 2)
    metrics.update(completion_metric(config, ds, b, params))
    return metrics


def report(config, workdir, ds, b: Built, params) -> dict:
    """samples.png, completions.png and the compiled sampler's throughput (samples per
    second, compile excluded)."""
    n, scale = config.plots.num_samples, max(2, 56 // ds.example_shape[0])
    top = config.model.levels - 1
    samples, rate = throughput.timed_samples(
        lambda k: b.sample_fn(params, k, n), jax.random.key(config.seed + 2), n)
    viz.save_image_grid(os.path.join(workdir, "samples.png"), samples / top, scale=scale)
    rows = config.eval.completion_rows
    if rows:
        truth = experiment.fixed_view(ds.test[:8], config.data.preprocess)    # [8, H, W, 1]
        mask = given_rows(ds.example_shape, rows)
        fill = xla.jit(lambda k, given: b.model(params).complete(k, given, mask)[0])
        done = completion.complete_examples(fill, truth, 5, jax.random.key(config.seed + 4))
        completion.completion_figure(os.path.join(workdir, "completions.png"), truth / top,
                                     done / top, mask, scale=scale)
    return {"sampling/samples_per_s": rate}


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep: the data, the step of ``config`` and, per
    setting, `build`'s state and `final_metrics` through one compiled evaluation."""
    ds = experiment.prepare(config, workdir, kinds=("image",))
    validate_data(config, ds)
    b = build(config, ds.example_shape, ds.train)
    evaluate = exact_likelihood.make_evaluate(config, ds, b.log_prob_fn)
    return Program(init=lambda c: build(c, ds.example_shape, ds.train).state,
                   step_fn=make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                   train_data=ds.train,
                   evaluate=lambda c, params: final_metrics(c, ds, evaluate, b, params,
                                                            c.seed))


# The seed (weights, data order, step keys) and the optimiser's lr / weight_decay /
# grad_clip live in TrainState.hparams or the init: a sweep over them is one program.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields(), validate=validate,
                   prepare=prepare_sweep_program,
                   main_metric=("test/log_likelihood", "max"))


sweep = entry_point(SWEEP, "experiments.pixelcnn")


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="pixelcnn",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs",
                                     "pixelcnn.py"),
            description="PixelCNN")
