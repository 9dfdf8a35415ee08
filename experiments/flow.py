"""Train and evaluate a normalizing flow: RealNVP, Glow, MAF or IAF, with affine or
rational-quadratic spline transformers, by exact maximum likelihood.

    python -m experiments.flow --config=configs/flow.py[:PRESET]
        [--workdir=runs/flow/PRESET] [--config.model.transformer=spline ...]

    python -m experiments.flow --config=configs/flow.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1      # 4 settings, one program

Presets: default (multi-scale RealNVP on the 8x8 digits), glow, maf, nsf, mnist5k,
moons, spline_checkerboard, maf_spirals, gpu, quick (see configs/flow.py). Images are
uniformly dequantised and logit-transformed (`genjax.losses.flow`), every Jacobian
counted: test bits/dim are on the 8-bit scale, comparable to RNADE and the DDPM bound.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples.png (images: samples at plots.temperature) or density.png (2-D points: data, the
true density, the flow's density, samples), and results.json with the exact test
log-likelihood in nats per example (images: test/bits_per_dim too; toys:
test/true_log_likelihood, the true density's on the same points) and the compiled
sampler's throughput. A sweep writes <setting>/results.json, ranked by
test/log_likelihood.
"""

from __future__ import annotations

import math
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import eval as geval
from genjax import viz, xla
from genjax.data import toy_density, transforms
from genjax.eval import throughput
from genjax.losses import flow as flow_loss
from genjax.models import flow as fm
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.sweep import Program, SweepParts, entry_point
from genjax.viz import density


def validate(config):
    """Every field of the model, eval and plots sections (the shared ones:
    `cfglib.validate_common`), before anything is built or compiled."""
    cfglib.one_of(config, "model.name", fm.NAMES)
    cfglib.one_of(config, "model.transformer", fm.TRANSFORMERS)
    cfglib.integer(config, "model.layers")
    cfglib.integer(config, "model.levels", maximum=4)
    cfglib.int_tuple(config, "model.hidden", min_len=1, example="'(64,)'",
                     what="the conditioner's hidden widths (MLP) or channels (conv)")
    cfglib.number(config, "model.max_log_scale", low=0, low_open=True,
                  why="the affine log-scale bound; 0 would make every scale 1")
    cfglib.integer(config, "model.num_bins", minimum=2)
    cfglib.number(config, "model.tail_bound", low=0, low_open=True)
    cfglib.number(config, "model.logit_alpha", 0.0, 0.5, low_open=True, high_open=True)
    cfglib.integer(config, "model.init_examples")
    cfglib.integer(config, "eval.batch_size")
    cfglib.integer(config, "eval.num_examples", minimum=0, why="0 = all")
    cfglib.integer(config, "eval.train_examples", minimum=0, why="0 = skip")
    cfglib.integer(config, "plots.num_samples")
    cfglib.integer(config, "plots.grid", minimum=2)
    cfglib.number(config, "plots.temperature", low=0, low_open=True)
    cfglib.require(config.data.preprocess in ("dequantize", "none"), "data.preprocess",
                   config.data.preprocess, "'dequantize' (images) or 'none' (2-D points)")


def validate_data(config, ds):
    """Checks that need the dataset: the preprocessing fits its kind, the image sides fit
    the multi-scale levels, the counts exist, images are 8-bit."""
    want = "dequantize" if ds.kind == "image" else "none"
    cfglib.require(config.data.preprocess == want, "data.preprocess", config.data.preprocess,
                   f"{want!r} for {ds.kind} data ({config.data.name!r})")
    if ds.kind == "image":
        flow_loss.check_images_u8(ds.train[:1000])
        if _multiscale(config, ds):
            div = 2 ** (config.model.levels - (config.model.name == "realnvp"))
            h, w = ds.example_shape[:2]
            cfglib.require(h % div == 0 and w % div == 0, "model.levels", config.model.levels,
                           f"at most {int(math.log2(math.gcd(h, w, 64)))} levels for "
                           f"{h}x{w} images (the sides must divide by 2 per squeeze)")
    cfglib.at_most(config, "eval.num_examples", len(ds.test),
                   f"the test examples of {config.data.name!r} (0 = all)")
    cfglib.at_most(config, "eval.train_examples", len(ds.train),
                   f"the training examples of {config.data.name!r} (0 = skip)")
    cfglib.at_most(config, "model.init_examples", len(ds.train),
                   f"the training examples of {config.data.name!r}")


def _multiscale(config, ds) -> bool:
    return ds.kind == "image" and config.model.name in ("realnvp", "glow")


def make_model(config, ds):
    """The config's flow, with actnorm initialised from model.init_examples training
    examples (dequantised and logit-transformed with a fixed key, as the loss sees them)."""
    m, rngs = config.model, nnx.Rngs(config.seed)
    kw = dict(name=m.name, transformer=m.transformer, max_log_scale=m.max_log_scale,
              num_bins=m.num_bins, tail_bound=m.tail_bound, rngs=rngs)
    if _multiscale(config, ds):
        model = fm.MultiScaleFlow(ds.example_shape, levels=m.levels, steps=m.layers,
                                  hidden=m.hidden[0], **kw)
    else:
        model = fm.VectorFlow(ds.example_shape, num_layers=m.layers, hidden=tuple(m.hidden),
                              **kw)
    if m.name != "glow":
        return model                  # only Glow has actnorm layers to initialise
    x = np.asarray(ds.train[:m.init_examples])
    if ds.kind == "image":
        u = transforms.dequantize_uniform(jax.random.key(1), x)
        x = flow_loss.logit_transform(u, alpha=m.logit_alpha)[0]
    model.initialize(jnp.asarray(x, jnp.float32))
    return model


class Built(NamedTuple):
    """What `build` returns (shared with benchmarks/flow_throughput.py).

    loss_fn(params, batch, key, hparams) -> (loss, metrics) on a stored batch (uint8
    images or float32 points); log_prob_fn(params, batch, key) -> [B] log-likelihood in
    nats (images: of the dequantised pixels on the 8-bit scale, with the key's
    dequantisation); sample_fn(params, key, num) -> [num, *E] (images: pixel intensities
    in [0, 1]); model(params) -> module."""
    graphdef: object
    consts: object
    state: object
    tx: object
    lr_schedule: Callable
    loss_fn: Callable
    log_prob_fn: Callable
    sample_fn: Callable
    model: Callable


def build(config, ds) -> Built:
    alpha, images = config.model.logit_alpha, ds.kind == "image"
    graphdef, params, consts = nnx.split(make_model(config, ds), nnx.Param, ...)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, hparams)
    model_of = lambda params: nnx.merge(graphdef, params, consts)    # noqa: E731

    def log_prob_fn(params, batch, key):
        model = model_of(params)
        if not images:
            return model.log_prob(jnp.asarray(batch, jnp.float32))
        u = transforms.dequantize_uniform(key, batch)
        return flow_loss.dequantized_log_likelihood(u, log_prob_fn=model.log_prob,
                                                    alpha=alpha)

    def loss_fn(params, batch, key, hp):
        del hp                                          # lr / weight decay act in the step
        nats = -log_prob_fn(params, batch, key)         # [B]
        loss = jnp.mean(nats)
        metrics = {"nats": loss}
        if images:
            metrics["bits_per_dim"] = loss / (math.prod(ds.example_shape) * math.log(2))
        return loss, metrics

    def sample_fn(params, key, num):
        y = model_of(params).sample(key, num, config.plots.temperature)
        if not images:
            return y
        return jnp.clip((jax.nn.sigmoid(y) - alpha) / (1 - 2 * alpha), 0.0, 1.0)

    return Built(graphdef, consts, state, tx, lr_schedule, loss_fn, log_prob_fn, sample_fn,
                 model_of)


def make_evaluate(config, ds, b: Built):
    """evaluate(params, data=None, seed=config.seed) -> {"log_likelihood": mean nats}: the
    exact log-likelihood of eval.num_examples test examples, or of ``data`` (images: one
    dequantisation per example, fixed by the seed). One jitted function takes the
    parameters as an argument, so every evaluation, and every setting of a sweep, reuses
    its program."""
    x_test = ds.test[:config.eval.num_examples or len(ds.test)]

    def per_example(params, x, key):
        return {"log_likelihood": b.log_prob_fn(params, x, key)}

    def evaluate(params, data=None, seed=config.seed):
        return geval.evaluate_dataset(per_example, x_test if data is None else data,
                                      jax.random.key(seed + 1),
                                      batch_size=config.eval.batch_size, params=params)

    return evaluate


def final_metrics(config, ds, evaluate, params, seed) -> dict:
    """test/log_likelihood and test/nll (nats per example); images: test/bits_per_dim on
    the 8-bit scale; 2-D toys: test/true_log_likelihood (the true density's mean
    log-density of the same test points) and test/gap_to_truth; with
    eval.train_examples, the same on that many training examples (train/...), to show
    overfitting."""
    splits = {"test": None}
    if config.eval.train_examples:
        splits["train"] = ds.train[:config.eval.train_examples]
    metrics = {}
    for split, data in splits.items():
        ll = evaluate(params, data, seed=seed)["log_likelihood"]
        metrics[f"{split}/log_likelihood"], metrics[f"{split}/nll"] = ll, -ll
        if ds.kind == "image":
            metrics[f"{split}/bits_per_dim"] = -ll / (math.prod(ds.example_shape)
                                                      * math.log(2))
    if ds.kind == "points" and config.data.name in toy_density.TOYS:
        x_test = ds.test[:config.eval.num_examples or len(ds.test)]
        metrics["test/true_log_likelihood"] = toy_density.expected_log_density(
            config.data.name, x_test)
        metrics["test/gap_to_truth"] = (metrics["test/true_log_likelihood"]
                                        - metrics["test/log_likelihood"])
    return metrics


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates the exact test log-likelihood, writes
    the figure and results.json; returns the final metrics."""
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    b = build(config, ds)
    evaluate = make_evaluate(config, ds, b)
    state, summary = train(b.state, make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                           ds.train, cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=lambda state: evaluate(state.params))
    metrics = final_metrics(config, ds, evaluate, state.params, config.seed)
    metrics.update(report(config, workdir, ds, b, state.params))
    return experiment.finish(workdir, config, metrics, summary=summary)


def report(config, workdir, ds, b: Built, params) -> dict:
    """samples.png (images) or density.png (2-D points: data, true density, the flow's
    density, samples) and the compiled sampler's throughput (samples/s, compile
    excluded)."""
    p = config.plots
    samples, rate = throughput.timed_samples(
        lambda k: b.sample_fn(params, k, p.num_samples), jax.random.key(config.seed + 2),
        p.num_samples)
    if ds.kind == "points" and ds.example_shape == (2,):
        log_prob = xla.jit(lambda x: b.log_prob_fn(params, x, None))
        truth = None
        if config.data.name in toy_density.TOYS:
            truth = lambda x: toy_density.log_density(config.data.name, x)   # noqa: E731
        density.density_figure(
            os.path.join(workdir, "density.png"), log_prob=log_prob, data=ds.train[:5000],
            samples=samples, size=p.grid, true_log_prob=truth,
            title=f"{config.model.name} ({config.model.transformer}) on {config.data.name}")
    elif ds.kind == "image":
        scale = max(2, 56 // ds.example_shape[0])          # 8x8 digits drawn 7x larger
        viz.save_image_grid(os.path.join(workdir, "samples.png"), samples, scale=scale)
    return {"sampling/samples_per_s": rate}


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state (its seed's weights, actnorm initialised
    from the data as in its single run) and `final_metrics`."""
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    b = build(config, ds)
    evaluate = make_evaluate(config, ds, b)     # settings differ in dynamic fields only
    return Program(init=lambda c: build(c, ds).state,
                   step_fn=make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                   train_data=ds.train,
                   evaluate=lambda c, params: final_metrics(c, ds, evaluate, params, c.seed))


# The seed (weights, data order, step keys) and the optimiser's lr / weight_decay /
# grad_clip live in TrainState.hparams or the init; the fixed parts of the flows (masks,
# MADE connectivity, the 1x1 convolutions' permutations) do not depend on the seed, so a
# sweep over those is one program; every other field is static.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields(), validate=validate,
                   prepare=prepare_sweep_program,
                   main_metric=("test/log_likelihood", "max"))


sweep = entry_point(SWEEP, "experiments.flow")


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="flow",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "flow.py"),
            description="Normalizing-flow")
