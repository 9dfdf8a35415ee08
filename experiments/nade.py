"""Train and evaluate an autoregressive model: FVBN, NADE, MADE or RNADE.

    python -m experiments.nade --config=configs/nade.py[:PRESET]
        [--workdir=runs/nade/PRESET] [--config.model.hidden='(250,)' ...]

    python -m experiments.nade --config=configs/nade.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1      # 4 settings, one program

Presets: default (NADE), fvbn, made, made_ensemble, rnade, rnade_digits, quick, and the
class-conditional cnade, cmade, cquick (see configs/nade.py). A sweep (`genjax.train.sweep`) trains the settings that differ in the
seed and optim.lr / weight_decay / grad_clip in one compiled program (MADE: one per seed,
its masks follow the seed); every other field gives a program per value. Each setting
writes <setting>/results.json with the metrics below, ranked by test/log_likelihood.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples.png (exact ancestral samples; images) or density.png (2-D points: data, density,
samples), and results.json with the exact test log-likelihood in nats per example (and
bits per dimension for binary or dequantised images), the same on a fixed binarisation
of training examples, and the compiled sampler's throughput.

Completion (eval.completion_rows > 0; FVBN, NADE, MADE in the natural order): the top
rows of each test image given, the rest is the model's exact conditional.
test/completion_log_likelihood is log p(true bottom rows | top rows) in nats per image,
exact (`genjax.eval.completion`); completions.png shows, per row, a test digit's masked
input, six completions drawn from that conditional and the truth.

Class-conditional models (model.conditional, presets cnade / cmade / cquick): trained on
(image, label) batches, p(x | y) with the label as an extra input of every conditional.
With K classes their own likelihood log p(x) = log sum_y p(y) p(x | y) is exact (p(y):
the training split's class frequencies), and it is test/log_likelihood (and bits/dim,
train/, the sweep's ranking): comparable with the unconditional models'. Also:
test/cond_log_likelihood (log p(x | y), each test image with its own label),
test/label_accuracy and test/label_log_posterior (the model as its own Bayes classifier,
argmax_y p(y | x)); with completion rows test/completion_log_likelihood (the label
summed out with its posterior given the top rows) and
test/completion_log_likelihood_given_label (log p(bottom | top, y)), and the completions
of completions.png are drawn given the true label. eval.cond_samples class-conditional
samples (cond_samples / K per class) are scored with the shared classifier
(`genjax.eval.conditional`): test/cond_accuracy, test/fd, test/fd_per_class,
test/accuracy/<y>, test/fd/<y>, test/classifier_accuracy; class_rows.png shows ten per
class, one row per class.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import conditioning, viz, xla
from genjax.data import transforms
from genjax.eval import completion, exact_likelihood, sample_quality, throughput
from genjax.eval.conditional import conditional_quality
from genjax.eval.likelihood import map_dataset
from genjax.losses import autoregressive as ar
from genjax.models.fvbn import FVBN
from genjax.models.made import MADE, ORDERINGS
from genjax.models.nade import NADE
from genjax.models.rnade import RNADE, quantile_init
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.sweep import Program, SweepParts, run_sweep
from genjax.viz import density
from genjax.viz.conditional import class_rows

MODELS = ("nade", "fvbn", "made", "rnade")
BINARY_MODELS = ("nade", "fvbn", "made")
CONDITIONAL_MODELS = ("nade", "made")
COMPLETIONS_PER_DIGIT = 6


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
    conditional = cfglib.boolean(config, "model.conditional")
    cfglib.require(not conditional or m.name in CONDITIONAL_MODELS, "model.conditional",
                   conditional, f"False for {m.name} (the class-conditional models: "
                   + ", ".join(CONDITIONAL_MODELS) + ")")
    rows = cfglib.integer(config, "eval.completion_rows", minimum=0, why="0 = skip")
    cfglib.require(not rows or m.name in BINARY_MODELS, "eval.completion_rows", rows,
                   f"0 for the real-valued {m.name} (completion: the binary "
                   + ", ".join(BINARY_MODELS) + ")")
    cfglib.require(not rows or m.name != "made" or (m.ordering == "natural"
                                                    and m.num_masks == 1),
                   "eval.completion_rows", rows,
                   f"0 for MADE with model.ordering={m.ordering!r} and model.num_masks="
                   f"{m.num_masks}: the completion is exact only when the given top rows "
                   "come first (model.ordering='natural', model.num_masks=1)")
    cfglib.integer(config, "eval.cond_samples", minimum=0, why="0 = skip")
    cfglib.integer(config, "eval.classifier_steps")
    cfglib.string(config, "eval.classifier_dir")


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
    if config.eval.completion_rows:
        cfglib.at_most(config, "eval.completion_rows", ds.example_shape[0] - 1,
                       f"the image height minus one ({ds.example_shape[0] - 1}; 0 = skip)")
    if cfglib.validate_conditional(config, ds):
        cfglib.validate_fd(config, ds, fields=("eval.cond_samples",))


def num_classes_of(config, ds) -> int:
    """K of a class-conditional model (the dataset's number of labels); 0 otherwise."""
    return int(ds.num_classes) if config.model.conditional else 0


def _logit(p, eps=1e-3):
    p = np.clip(p, eps, 1.0 - eps)
    return np.log(p) - np.log1p(-p)


def make_model(config, example_shape, train_data=None, num_classes: int = 0):
    """The config's model. ``train_data`` (the stored training split) sets the initial
    output biases when model.init_bias_from_data: the log-odds of the mean pixel
    intensities (the marginals of dynamically binarised data), or for RNADE the
    component means and scales from the quantiles of the preprocessed data.
    ``num_classes`` K > 0: the class-conditional NADE / MADE."""
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
        return NADE(example_shape, hidden=m.hidden[0], bias_init=bias,
                    num_classes=num_classes, rngs=rngs)
    if m.name == "fvbn":
        return FVBN(example_shape, context=m.context, bias_init=bias)
    return MADE(example_shape, hidden=tuple(m.hidden), ordering=m.ordering,
                num_masks=m.num_masks, mask_seed=config.seed, bias_init=bias,
                num_classes=num_classes, rngs=rngs)


class Built(NamedTuple):
    """What `build` returns (shared with benchmarks/nade_throughput.py).

    loss_fn(params, batch, key, hparams) -> (loss, metrics) on a stored (uint8) batch
    (conditional: the pair (uint8 [B, *E], labels [B]) of `experiment.training_data`);
    log_prob_fn(params, x) -> {name: [B]} exact log-likelihoods in nats of preprocessed
    x [B, *E] ("log_likelihood", for a conditional model log p(x) = log sum_y p(y)
    p(x | y); MADE with several masks also "log_likelihood_mask0");
    sample_fn(params, key, num, y=None) -> [num, *E] ancestral samples (conditional: for
    the labels y [num], by default 0, 1, ..., K-1, 0, ...); model(params) -> module.
    Conditional models only: num_classes K, log_prob_given(params, x, y) -> [B]
    log p(x | y), log_prior [K] log p(y) (the training split's class frequencies)."""
    graphdef: object
    consts: object
    state: object
    tx: object
    lr_schedule: Callable
    loss_fn: Callable
    log_prob_fn: Callable
    sample_fn: Callable
    model: Callable
    num_classes: int = 0
    log_prob_given: Callable | None = None
    log_prior: object = None


def build(config, example_shape, train_data=None, *, train_labels=None,
          num_classes: int = 0) -> Built:
    """The model, optimiser and pure functions of ``config``; a conditional model
    (model.conditional) needs ``num_classes`` (`num_classes_of`) and ``train_labels`` (its
    p(y))."""
    m = config.model
    k = num_classes if m.conditional else 0
    if m.conditional and (k < 1 or train_labels is None):
        raise ValueError("build: model.conditional=True needs num_classes >= 1 and the "
                         "training labels (`num_classes_of(config, ds)`, ds.train_labels)")
    graphdef, params, consts = nnx.split(make_model(config, example_shape, train_data, k),
                                         nnx.Param, ...)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, hparams)
    # the hand-written NADE gradient keeps per-device partial sums (see nade_log_likelihood)
    groups = jax.device_count()
    model_of = lambda params: nnx.merge(graphdef, params, consts)    # noqa: E731

    def train_log_prob(model, x, key, y):
        kw = {} if y is None else {"y": y}              # the label, when conditional
        if m.name == "nade":
            return model.log_prob(x, groups=groups, **kw)
        if m.name == "made" and m.num_masks > 1:        # order-agnostic: a mask per step
            return model.log_prob(x, jax.random.randint(key, (), 0, m.num_masks), **kw)
        return model.log_prob(x, **kw)

    def loss_fn(params, batch, key, hp):
        del hp                                          # lr / weight decay act in the step
        batch, y = batch if m.conditional else (batch, None)
        k_data, k_mask = jax.random.split(key)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        return ar.nll_loss(train_log_prob(model_of(params), x, k_mask, y))

    def log_prob_given(params, x, y, mask=None):       # log p(x | y), conditional models
        model = model_of(params)
        if m.name == "made" and m.num_masks > 1:
            return (model.log_prob_ensemble(x, y=y) if mask is None
                    else model.log_prob(x, mask, y=y))
        return model.log_prob(x, y=y)

    log_prior = (jnp.asarray(completion.log_label_prior(train_labels, k), jnp.float32)
                 if k else None)

    def marginal(params, x, mask=None):               # log sum_y p(y) p(x | y)
        table = completion.class_log_likelihoods(
            lambda v, y: log_prob_given(params, v, y, mask), x, k)           # [B, K]
        return jax.nn.logsumexp(table + log_prior, axis=-1)

    def log_prob_fn(params, x):
        model = model_of(params)
        if k:
            out = {"log_likelihood": marginal(params, x)}
            if m.name == "made" and m.num_masks > 1:
                out["log_likelihood_mask0"] = marginal(params, x, 0)
            return out
        if m.name == "made" and m.num_masks > 1:
            return {"log_likelihood": model.log_prob_ensemble(x),
                    "log_likelihood_mask0": model.log_prob(x, 0)}
        return {"log_likelihood": model.log_prob(x)}

    def sample_fn(params, key, num, y=None):
        if not k:
            return model_of(params).sample(key, num)[0]
        y = jnp.arange(num, dtype=jnp.int32) % k if y is None else y
        return model_of(params).sample(key, num, y=y)[0]

    return Built(graphdef, consts, state, tx, lr_schedule, loss_fn, log_prob_fn, sample_fn,
                 model_of, k, log_prob_given if k else None, log_prior)


def make_evaluate(config, ds, b: Built):
    """`genjax.eval.exact_likelihood.make_evaluate` of the model's exact log-likelihoods
    (`Built.log_prob_fn`)."""
    return exact_likelihood.make_evaluate(config, ds, b.log_prob_fn)


def final_metrics(config, ds, evaluate, params, seed, b: Built | None = None) -> dict:
    """`exact_likelihood.final_metrics` and, given the `Built` ``b``, the exact
    completion and label metrics (`exact_conditionals`)."""
    metrics = exact_likelihood.final_metrics(config, ds, evaluate, params, seed)
    if b is not None:
        metrics.update(exact_conditionals(config, ds, b, params))
    return metrics


def _test_view(config, ds):
    """(x, labels or None): the evaluated test examples on their fixed view."""
    x = experiment.fixed_view(ds.test, config.data.preprocess)
    n = config.eval.num_examples or len(x)
    return x[:n], None if ds.test_labels is None else np.asarray(ds.test_labels[:n])


def exact_conditionals(config, ds, b: Built, params) -> dict:
    """The exact conditional numbers on the evaluated test examples (nats per image):
    test/completion_log_likelihood (eval.completion_rows), and for a conditional model
    test/cond_log_likelihood, test/label_accuracy, test/label_log_posterior and
    test/completion_log_likelihood_given_label (`genjax.eval.completion`)."""
    rows = config.eval.completion_rows
    if not (rows or b.num_classes):
        return {}
    x, labels = _test_view(config, ds)
    key = jax.random.key(config.seed + 3)
    bs = config.eval.batch_size
    given = completion.given_rows(ds.example_shape, rows) if rows else None
    if not b.num_classes:
        out = completion.completion_log_likelihood(
            lambda p, xb, mask: b.model(p).conditional_log_prob(xb, mask), params, x, given,
            key=key, batch_size=bs)
        return {f"test/{k}": v for k, v in out.items()}
    k_cls = b.num_classes
    flat_given = None if given is None else jnp.asarray(given.reshape(-1))

    def per_example(p, xb, key):                 # log p(x | k) and log p(top | k), all k
        del key
        if not rows:                             # (MADE ensembles: whole images only)
            table = completion.class_log_likelihoods(
                lambda v, y: b.log_prob_given(p, v, y), xb, k_cls)         # [b, K]
            return {f"full/{c}": table[:, c] for c in range(k_cls)}
        model = b.model(p)
        pix = jax.vmap(lambda c: model.pixel_log_probs(
            xb, y=jnp.full((xb.shape[0],), c, jnp.int32)))(jnp.arange(k_cls))  # [K, b, D]
        full, top = pix.sum(-1), jnp.where(flat_given, pix, 0.0).sum(-1)      # [K, b]
        return {**{f"full/{c}": full[c] for c in range(k_cls)},
                **{f"given/{c}": top[c] for c in range(k_cls)}}

    out = map_dataset(per_example, x, key, batch_size=bs, params=params)
    full = np.stack([out[f"full/{c}"] for c in range(k_cls)], 1)               # [N, K]
    prior = np.asarray(b.log_prior, np.float64)
    metrics = completion.label_metrics(full, labels, prior)
    del metrics["log_likelihood"]                # = test/log_likelihood (log_prob_fn)
    if rows:
        top = np.stack([out[f"given/{c}"] for c in range(k_cls)], 1)
        metrics.update(completion.completion_from_classes(full, top, labels, prior))
    return {f"test/{k}": v for k, v in metrics.items()}


def _kinds(config):
    return ("image",) if config.model.name in BINARY_MODELS else ("image", "points")


def build_for(config, ds) -> Built:
    """`build` for the loaded dataset ``ds`` (its training split, labels and classes)."""
    return build(config, ds.example_shape, ds.train, train_labels=ds.train_labels,
                 num_classes=num_classes_of(config, ds))


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates the exact test log-likelihood, writes
    the figure and results.json; returns the final metrics."""
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=_kinds(config))
    validate_data(config, ds)
    b = build_for(config, ds)
    evaluate = make_evaluate(config, ds, b)
    state, summary = train(b.state, make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                           experiment.training_data(ds, config.model.conditional),
                           cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=lambda state: evaluate(state.params))
    metrics = final_metrics(config, ds, evaluate, state.params, config.seed, b)
    metrics.update(report(config, workdir, ds, b, state.params))
    return experiment.finish(workdir, config, metrics, summary=summary)


def report(config, workdir, ds, b: Built, params) -> dict:
    """The samples figure (samples.png for images, density.png for 2-D points), the
    compiled sampler's throughput (samples per second, compile excluded), completions.png
    (eval.completion_rows) and, for a conditional model, the class-conditional samples'
    metrics and class_rows.png (`conditional_report`)."""
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
        completion_report(config, workdir, ds, b, params)
    out = {"sampling/samples_per_s": rate}
    out.update(conditional_report(config, workdir, ds, b, params))
    return out


def completion_report(config, workdir, ds, b: Built, params) -> None:
    """completions.png: per row a test digit (the first of each class when the data has
    labels, else the first 8), its top eval.completion_rows rows given, then
    COMPLETIONS_PER_DIGIT completions from the model's exact conditional (a conditional
    model's given the digit's true label), then the truth."""
    rows = config.eval.completion_rows
    if not rows:
        return
    if ds.test_labels is not None:
        pick = np.array([np.flatnonzero(ds.test_labels == c)[0]
                         for c in np.unique(ds.test_labels)][:10])
    else:
        pick = np.arange(min(8, len(ds.test)))
    truth = experiment.fixed_view(ds.test[pick], config.data.preprocess)
    mask = completion.given_rows(ds.example_shape, rows)
    per = COMPLETIONS_PER_DIGIT
    kw = ({"y": jnp.asarray(np.repeat(ds.test_labels[pick], per), jnp.int32)}
          if b.num_classes else {})
    fill = xla.jit(lambda k, g: b.model(params).complete(k, g, mask, **kw)[0])
    done = completion.complete_examples(fill, truth, per, jax.random.key(config.seed + 4))
    completion.completion_figure(os.path.join(workdir, "completions.png"), truth, done, mask,
                                 scale=max(2, 56 // ds.example_shape[0]))


def conditional_report(config, workdir, ds, b: Built, params) -> dict:
    """A conditional model's eval.cond_samples class-conditional samples (as many per
    class, over the classes of the training split) scored with the shared classifier
    (`genjax.eval.conditional.conditional_quality`: test/cond_accuracy, test/fd,
    test/fd_per_class, per class test/accuracy/<y> and test/fd/<y>), and class_rows.png
    (ten per class, one row per class)."""
    e = config.eval
    if not b.num_classes or not e.cond_samples:
        return {}
    classes = np.flatnonzero(np.isfinite(np.asarray(b.log_prior)))
    labels = classes[conditioning.balanced_labels(e.cond_samples, len(classes))]
    draw = xla.jit(lambda k, y: b.sample_fn(params, k, y.shape[0], y))
    samples = np.asarray(draw(jax.random.key(config.seed + 5), jnp.asarray(labels)))
    clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                        num_steps=e.classifier_steps)
    q = conditional_quality(clf, samples, labels, np.asarray(transforms.to_unit(ds.test)),
                            ds.test_labels, num_classes=b.num_classes)
    class_rows(os.path.join(workdir, "class_rows.png"), samples, labels, per_row=10)
    out = {f"test/{k}": v for k, v in q.items()}
    out.update({"test/classifier_accuracy": clf.test_accuracy,
                "test/cond_samples": len(labels)})
    return out


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state (its seed's weights and, with
    model.init_bias_from_data, the output biases from this program's training data, as in
    its single run) and `final_metrics` through one compiled evaluation."""
    ds = experiment.prepare(config, workdir, kinds=_kinds(config))
    validate_data(config, ds)
    b = build_for(config, ds)
    evaluate = make_evaluate(config, ds, b)     # settings differ in dynamic fields only

    return Program(init=lambda c: build_for(c, ds).state,
                   step_fn=make_train_step(b.loss_fn, b.tx, b.lr_schedule),
                   train_data=experiment.training_data(ds, config.model.conditional),
                   evaluate=lambda c, params: final_metrics(c, ds, evaluate, params,
                                                            c.seed, b))


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
