"""Train and evaluate an autoregressive model: FVBN, NADE, MADE or RNADE.

    python -m experiments.nade --config=configs/nade.py[:PRESET]
        [--workdir=runs/nade/PRESET] [--config.model.hidden='(250,)' ...]

Presets: default (NADE), fvbn, made, made_ensemble, rnade, rnade_digits, quick (see
configs/nade.py).

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples.png (exact ancestral samples; images) or density.png (2-D points: data, density,
samples), and results.json with the exact test log-likelihood in nats per example (and
bits per dimension for binary or dequantised images), the same on a fixed binarisation
of training examples, and the compiled sampler's throughput.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, NamedTuple

import jax
import numpy as np
from flax import nnx

from genjax import eval as geval
from genjax import viz
from genjax.data import transforms
from genjax.losses import autoregressive as ar
from genjax.models.fvbn import FVBN
from genjax.models.made import MADE, ORDERINGS
from genjax.models.nade import NADE
from genjax.models.rnade import RNADE, quantile_init
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, train
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


def _bits_per_dim(config, log_likelihood: float, dim: int):
    """Bits per dimension of the discrete data, or None: binary data as it is; dequantised
    8-bit data with the -D log 256 change of variables (a bound on the discrete
    log-likelihood)."""
    mode = config.data.preprocess
    if mode == "dynamic_binarize":
        return -log_likelihood / (dim * math.log(2))
    if mode == "dequantize":
        return -(log_likelihood - dim * math.log(256)) / (dim * math.log(2))
    return None


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates the exact test log-likelihood, writes
    the figure and results.json; returns the final metrics."""
    validate(config)
    kinds = ("image",) if config.model.name in BINARY_MODELS else ("image", "points")
    ds = experiment.prepare(config, workdir, kinds=kinds)
    validate_data(config, ds)
    b = build(config, ds.example_shape, ds.train)
    mode, e = config.data.preprocess, config.eval

    x_test = experiment.fixed_view(ds.test, mode)
    if e.num_examples:
        x_test = x_test[:e.num_examples]

    def per_example(params, x, key):          # one function: one compiled program
        return b.log_prob_fn(params, x)

    def evaluate(state, data=None):
        return geval.evaluate_dataset(per_example, x_test if data is None else data,
                                      jax.random.key(config.seed + 1), batch_size=e.batch_size,
                                      params=state.params)

    state, summary = train(b.state, make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                           ds.train, cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=evaluate)
    dim = math.prod(ds.example_shape)
    metrics = {f"test/{k}": v for k, v in evaluate(state).items()}
    metrics["test/nll"] = -metrics["test/log_likelihood"]
    bpd = _bits_per_dim(config, metrics["test/log_likelihood"], dim)
    if bpd is not None:
        metrics["test/bits_per_dim"] = bpd
    if e.train_examples:
        x_train = experiment.fixed_view(ds.train[:e.train_examples], mode, seed=1)
        metrics.update({f"train/{k}": v for k, v in evaluate(state, x_train).items()})
    metrics.update(report(config, workdir, ds, b, state.params))
    return experiment.finish(workdir, config, metrics, summary=summary)


def report(config, workdir, ds, b: Built, params) -> dict:
    """The samples figure (samples.png for images, density.png for 2-D points) and the
    compiled sampler's throughput (samples per second, compile excluded)."""
    p = config.plots
    sample = jax.jit(lambda k: b.sample_fn(params, k, p.num_samples))
    key = jax.random.key(config.seed + 2)
    jax.block_until_ready(sample(key))
    t = time.perf_counter()
    samples = np.asarray(jax.block_until_ready(sample(key)))
    rate = p.num_samples / (time.perf_counter() - t)
    if ds.kind == "points" and ds.example_shape != (2,):
        pass                                 # density.png draws 2-D points only
    elif ds.kind == "points":
        log_prob = jax.jit(lambda x: b.log_prob_fn(params, x)["log_likelihood"])
        density.density_figure(
            os.path.join(workdir, "density.png"), log_prob=log_prob, data=ds.train[:5000],
            samples=samples, size=p.grid,
            title=f"{config.model.name} on {config.data.name}")
    else:
        scale = max(2, 56 // ds.example_shape[0])          # 8x8 digits drawn 7x larger
        viz.save_image_grid(os.path.join(workdir, "samples.png"), np.clip(samples, 0, 1),
                            scale=scale)
    return {"sampling/samples_per_s": rate}


if __name__ == "__main__":
    cli.run(train_and_evaluate, experiment="nade",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "nade.py"),
            description="Autoregressive-model")
