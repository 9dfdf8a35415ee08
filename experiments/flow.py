"""Train and evaluate a normalizing flow: RealNVP, Glow, MAF or IAF, with affine or
rational-quadratic spline transformers, by exact maximum likelihood.

    python -m experiments.flow --config=configs/flow.py[:PRESET]
        [--workdir=runs/flow/PRESET] [--config.model.transformer=spline ...]

    python -m experiments.flow --config=configs/flow.py:quick \\
        --sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1      # 4 settings, one program

Presets: default (multi-scale RealNVP on the 8x8 digits), glow, maf, nsf, mnist5k,
moons, spline_checkerboard, maf_spirals, gpu, cond_digits, cond_moons, quick (see
configs/flow.py). Images are uniformly dequantised and logit-transformed
(`genjax.losses.flow`), every Jacobian counted: test bits/dim are on the 8-bit scale,
comparable to RNADE and the DDPM bound.

Class-conditional flows (``--config.model.conditional=True``, :cond_digits,
:cond_moons): the label is an input of every conditioner (`genjax.models.flow`), training
maximises log p(x | y), and the evaluation reports, exactly, test/log_likelihood = log
p(x) = log sum_y p(y) p(x | y) (p(y): the training label frequencies; comparable with the
unconditional flow's), test/log_likelihood_given_label = log p(x | y) at the true label,
and test/bayes_accuracy (argmax_y p(y) p(x | y) = y). Class-conditional samples
(eval.cond_samples, the same number per class): on images conditional accuracy and
Fréchet distances with the shared classifier (`genjax.eval.conditional`) and
class_rows.png; on 2-D points the share of samples in their class's region (the
majority label of their 15 nearest training points; test/region_accuracy_ceiling is the
same rule on the test points' true labels) and cond_samples.png.

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

from genjax import conditioning
from genjax import eval as geval
from genjax import viz, xla
from genjax.data import toy_density, transforms
from genjax.eval import conditional as cond_eval
from genjax.eval import sample_quality, throughput
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
    cfglib.boolean(config, "model.conditional")
    cfglib.integer(config, "eval.batch_size")
    cfglib.integer(config, "eval.num_examples", minimum=0, why="0 = all")
    cfglib.integer(config, "eval.train_examples", minimum=0, why="0 = skip")
    cfglib.integer(config, "eval.cond_samples", minimum=0,
                   why="class-conditional samples, the same number per class; 0 = skip")
    cfglib.integer(config, "eval.classifier_steps")
    cfglib.string(config, "eval.classifier_dir")
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
    if cfglib.validate_conditional(config, ds) and config.eval.cond_samples:
        validate_cond_samples(config, ds)


def validate_cond_samples(config, ds) -> None:
    """eval.cond_samples of a conditional run: at least 2 per class present (a per-class
    Fréchet distance needs 2), and on images the shared classifier's own config
    (checked now, not after training)."""
    n, k = config.eval.cond_samples, len(np.unique(ds.train_labels))
    cfglib.require(n >= 2 * k, "eval.cond_samples", n,
                   f"0 (skip) or at least {2 * k}: 2 per class of the {k} classes of "
                   f"{config.data.name!r}")
    if ds.kind != "image":
        return
    try:
        clf = sample_quality.default_config(config.data.name, config.eval.classifier_steps)
        cfglib.validate_common(clf, jax.device_count())
        sample_quality.validate(clf)
        if not config.data.get("classes"):
            cfglib.validate_batch_vs_data(clf, len(ds.train))
    except cfglib.ConfigError as e:
        raise cfglib.ConfigError(f"--config.eval.cond_samples={n!r} is invalid: expected 0, "
                                 f"the conditional accuracy's classifier cannot be trained "
                                 f"({e})") from None


def _multiscale(config, ds) -> bool:
    return ds.kind == "image" and config.model.name in ("realnvp", "glow")


def num_classes(config, ds) -> int:
    """K, the classes a conditional flow is conditioned on (0: unconditional)."""
    return int(ds.num_classes) if config.model.conditional else 0


def make_model(config, ds):
    """The config's flow, with actnorm initialised from model.init_examples training
    examples (dequantised and logit-transformed with a fixed key, as the loss sees them;
    a conditional flow sees their labels too)."""
    m, rngs = config.model, nnx.Rngs(config.seed)
    kw = dict(name=m.name, transformer=m.transformer, max_log_scale=m.max_log_scale,
              num_bins=m.num_bins, tail_bound=m.tail_bound,
              num_classes=num_classes(config, ds), rngs=rngs)
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
    y = ds.train_labels[:m.init_examples] if m.conditional else None
    model.initialize(jnp.asarray(x, jnp.float32), y)
    return model


class Built(NamedTuple):
    """What `build` returns (shared with benchmarks/flow_throughput.py).

    loss_fn(params, batch, key, hparams) -> (loss, metrics) on a stored batch (uint8
    images or float32 points; conditional: the pair (x, y [B])); log_prob_fn(params,
    batch, key, y=None) -> [B] log-likelihood in nats (images: of the dequantised pixels
    on the 8-bit scale, with the key's dequantisation; conditional: log p(x | y), or with
    y=None the exact marginal log p(x) = log sum_y p(y) p(x | y)); sample_fn(params, key,
    num, y=None) -> [num, *E] (images: pixel intensities in [0, 1]; conditional: for the
    labels y [num], or with y=None for labels drawn from p(y)); model(params) -> module.
    Conditional only: num_classes K, log_prior [K] (the training label frequencies) and
    class_log_probs(params, batch, key) -> [B, K], log p(x | y = k) for every k with one
    dequantisation per example."""
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
    log_prior: object = None
    class_log_probs: Callable | None = None


def build(config, ds) -> Built:
    alpha, images = config.model.logit_alpha, ds.kind == "image"
    k = num_classes(config, ds)
    graphdef, params, consts = nnx.split(make_model(config, ds), nnx.Param, ...)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, hparams)
    model_of = lambda params: nnx.merge(graphdef, params, consts)    # noqa: E731
    log_prior = jnp.asarray(fm.label_log_prior(ds.train_labels, k)) if k else None

    def class_log_probs(params, batch, key):                  # [B, K], one dequantisation
        model = model_of(params)
        if not images:
            return fm.class_log_probs(model.log_prob, jnp.asarray(batch, jnp.float32), k)
        return fm.class_log_probs(
            lambda u, y: flow_loss.dequantized_log_likelihood(
                u, log_prob_fn=lambda v: model.log_prob(v, y), alpha=alpha),
            transforms.dequantize_uniform(key, batch), k)

    def log_prob_fn(params, batch, key, y=None):
        if k and y is None:                                   # the exact marginal log p(x)
            return fm.marginal_log_prob(class_log_probs(params, batch, key), log_prior)
        model = model_of(params)
        if not images:
            return model.log_prob(jnp.asarray(batch, jnp.float32), y)
        u = transforms.dequantize_uniform(key, batch)
        return flow_loss.dequantized_log_likelihood(u, log_prob_fn=lambda v: model.log_prob(
            v, y), alpha=alpha)

    def loss_fn(params, batch, key, hp):
        del hp                                          # lr / weight decay act in the step
        x, y = batch if k else (batch, None)            # conditional: log p(x | y)
        nats = -log_prob_fn(params, x, key, y)          # [B]
        loss = jnp.mean(nats)
        metrics = {"nats": loss}
        if images:
            metrics["bits_per_dim"] = loss / (math.prod(ds.example_shape) * math.log(2))
        return loss, metrics

    def sample_fn(params, key, num, y=None):
        if k and y is None:                             # ancestral: y ~ p(y), x ~ p(x | y)
            key, key_y = jax.random.split(key)
            y = jax.random.categorical(key_y, log_prior, shape=(num,))
        x = model_of(params).sample(key, num, config.plots.temperature, y)
        if not images:
            return x
        return jnp.clip((jax.nn.sigmoid(x) - alpha) / (1 - 2 * alpha), 0.0, 1.0)

    return Built(graphdef, consts, state, tx, lr_schedule, loss_fn, log_prob_fn, sample_fn,
                 model_of, k, log_prior, class_log_probs if k else None)


def make_evaluate(config, ds, b: Built):
    """evaluate(params, data=None, seed=config.seed, labels=None) -> {"log_likelihood":
    mean nats}: the exact log-likelihood of eval.num_examples test examples, or of
    ``data`` (images: one dequantisation per example, fixed by the seed). A conditional
    flow needs ``labels`` with ``data`` and adds "log_likelihood_given_label" and
    "bayes_accuracy" (`genjax.models.flow.label_posterior_metrics`; log_likelihood is the
    exact marginal). One jitted function takes the parameters as an argument, so every
    evaluation, and every setting of a sweep, reuses its program."""
    n = config.eval.num_examples or len(ds.test)
    x_test = ds.test[:n]

    if b.num_classes:
        y_test, prior = ds.test_labels[:n], np.asarray(b.log_prior)

        def per_class(params, x, key):
            return {"log_p_given": b.class_log_probs(params, x, key)}        # [B, K]

        def evaluate_conditional(params, data=None, seed=config.seed, labels=None):
            x, y = (x_test, y_test) if data is None else (data, labels)
            if y is None or len(y) != len(x):
                raise ValueError("a conditional flow's evaluation needs the labels of data")
            lp = geval.map_dataset(per_class, x, jax.random.key(seed + 1),
                                   batch_size=config.eval.batch_size,
                                   params=params)["log_p_given"]
            return fm.label_posterior_metrics(lp, y, prior)

        return evaluate_conditional

    def per_example(params, x, key):
        return {"log_likelihood": b.log_prob_fn(params, x, key)}

    def evaluate(params, data=None, seed=config.seed, labels=None):
        del labels
        return geval.evaluate_dataset(per_example, x_test if data is None else data,
                                      jax.random.key(seed + 1),
                                      batch_size=config.eval.batch_size, params=params)

    return evaluate


def final_metrics(config, ds, evaluate, params, seed) -> dict:
    """test/log_likelihood and test/nll (nats per example); images: test/bits_per_dim on
    the 8-bit scale; 2-D toys: test/true_log_likelihood (the true density's mean
    log-density of the same test points) and test/gap_to_truth; with
    eval.train_examples, the same on that many training examples (train/...), to show
    overfitting. A conditional flow: log_likelihood is the exact marginal log p(x), and
    log_likelihood_given_label (bits_per_dim_given_label) and bayes_accuracy join it."""
    n_tr = config.eval.train_examples
    splits = {"test": (None, None)}
    if n_tr:
        splits["train"] = (ds.train[:n_tr],
                           None if ds.train_labels is None else ds.train_labels[:n_tr])
    metrics = {}
    per_dim = math.prod(ds.example_shape) * math.log(2)
    for split, (data, labels) in splits.items():
        result = evaluate(params, data, seed=seed, labels=labels)
        ll = result["log_likelihood"]
        metrics[f"{split}/log_likelihood"], metrics[f"{split}/nll"] = ll, -ll
        if ds.kind == "image":
            metrics[f"{split}/bits_per_dim"] = -ll / per_dim
        if "bayes_accuracy" in result:
            given = result["log_likelihood_given_label"]
            metrics[f"{split}/log_likelihood_given_label"] = given
            metrics[f"{split}/bayes_accuracy"] = result["bayes_accuracy"]
            if ds.kind == "image":
                metrics[f"{split}/bits_per_dim_given_label"] = -given / per_dim
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
                           experiment.training_data(ds, config.model.conditional),
                           cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=lambda state: evaluate(state.params))
    metrics = final_metrics(config, ds, evaluate, state.params, config.seed)
    metrics.update(report(config, workdir, ds, b, state.params))
    if b.num_classes and config.eval.cond_samples:
        metrics.update(conditional_report(config, workdir, ds, b, state.params))
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


def conditional_report(config, workdir, ds, b: Built, params) -> dict:
    """Class-conditional samples, eval.cond_samples of them, the same number for each
    class present in the training labels (`genjax.conditioning.balanced_labels`).

    Images: class_rows.png (a row per class) and `genjax.eval.conditional.
    conditional_quality` with the shared classifier (eval.classifier_steps,
    eval.classifier_dir) against the whole test split, as "test/cond_accuracy",
    "test/fd", "test/fd_per_class", "test/accuracy/<y>", "test/fd/<y>", with
    "test/classifier_accuracy" (its accuracy on real test images: the ceiling).
    2-D points: "test/region_accuracy" (the share of samples whose 15 nearest training
    points mostly carry the requested label), "test/region_accuracy/<y>",
    "test/region_accuracy_ceiling" (the same rule on the test points' true labels) and
    cond_samples.png."""
    e = config.eval
    present = np.unique(ds.train_labels)
    labels = present[conditioning.balanced_labels(e.cond_samples, len(present))]
    sample = xla.jit(lambda p, key, y: b.sample_fn(p, key, len(y), y))
    samples = np.asarray(sample(params, jax.random.key(config.seed + 3), jnp.asarray(labels)))
    out = {"test/cond_samples": len(labels)}
    if ds.kind == "image":
        from genjax.viz import conditional as cond_viz  # pylint: disable=import-outside-toplevel
        r = max(1, 28 // ds.example_shape[0])              # 8x8 digits drawn 3x larger
        cond_viz.class_rows(os.path.join(workdir, "class_rows.png"),
                            np.repeat(np.repeat(samples, r, 1), r, 2), labels)
        clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                            num_steps=e.classifier_steps)
        q = cond_eval.conditional_quality(clf, samples, labels,
                                          transforms.to_unit(ds.test), ds.test_labels,
                                          num_classes=ds.num_classes)
        out.update({f"test/{name}": v for name, v in q.items()})
        out["test/classifier_accuracy"] = clf.test_accuracy
        return out
    region = neighbour_labels(samples, ds.train, ds.train_labels)
    out["test/region_accuracy"] = float(np.mean(region == labels))
    for y in present:
        out[f"test/region_accuracy/{int(y)}"] = float(np.mean(region[labels == y] == y))
    x_test = ds.test[:e.num_examples or len(ds.test)]
    y_test = ds.test_labels[:len(x_test)]
    out["test/region_accuracy_ceiling"] = float(np.mean(
        neighbour_labels(x_test, ds.train, ds.train_labels) == y_test))
    if ds.example_shape == (2,):
        log_prob = xla.jit(lambda x: b.log_prob_fn(params, x, None))
        conditional_points_figure(
            os.path.join(workdir, "cond_samples.png"), data=ds.train[:5000],
            data_labels=ds.train_labels[:5000], samples=samples, labels=labels,
            log_prob=log_prob, size=config.plots.grid,
            title=f"conditional {config.model.name} ({config.model.transformer}) on "
                  f"{config.data.name}")
    return out


def neighbour_labels(points, ref, ref_labels, *, k: int = 15, chunk: int = 512):
    """The majority label among the k nearest ``ref`` points [M, D] (Euclidean) of each of
    ``points`` [N, D] -> int [N]: the class region a point falls in, estimated from the
    labelled data (the Bayes classifier's k-NN estimate; ties go to the smaller label)."""
    points, ref = np.asarray(points, np.float64), np.asarray(ref, np.float64)
    ref_labels = np.asarray(ref_labels)
    num = int(ref_labels.max()) + 1
    sq = (ref ** 2).sum(-1)
    out = []
    for i in range(0, len(points), chunk):
        p = points[i:i + chunk]
        d = sq[None, :] - 2 * p @ ref.T                       # |p - r|^2 - |p|^2
        nearest = np.argpartition(d, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(p), num), np.int64)
        np.add.at(votes, (np.arange(len(p))[:, None], ref_labels[nearest]), 1)
        out.append(votes.argmax(-1))
    return np.concatenate(out) if out else np.zeros((0,), np.int64)


def conditional_points_figure(path, *, data, data_labels, samples, labels, log_prob,
                              size: int = 200, title: str = "") -> None:
    """Three panels over one extent: the data coloured by label, class-conditional
    samples coloured by the label they were drawn for, and the model's marginal density
    p(x) = sum_y p(y) p(x | y)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

    data, samples = np.asarray(data), np.asarray(samples)
    extent = density.extent_of(data, samples)
    xs, ys, lp = density.density_grid(log_prob, extent, size=size)
    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.5))
    for ax, pts, lab, what in ((axes[0], data, np.asarray(data_labels), "data by label"),
                               (axes[1], samples, np.asarray(labels),
                                "samples by requested label")):
        for c in np.unique(lab):
            m = lab == c
            ax.scatter(pts[m, 0], pts[m, 1], s=1, alpha=0.4, rasterized=True,
                       color=plt.cm.tab10(int(c) % 10), label=str(int(c)))
        ax.set_title(f"{what} ({len(pts)})", fontsize=10)
        ax.legend(markerscale=8, fontsize=7, loc="best")
    axes[2].contourf(xs, ys, np.exp(lp), levels=30, cmap="viridis")
    axes[2].set_title("model density p(x) = sum_y p(y) p(x|y)", fontsize=10)
    if title:                      # above the middle panel (a suptitle would overlap it)
        axes[1].set_title(f"{title}\n{axes[1].get_title()}", fontsize=10)
    density.save_panels(fig, axes, extent, path)


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
                   train_data=experiment.training_data(ds, config.model.conditional),
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
