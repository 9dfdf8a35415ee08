"""Train and evaluate a DDPM.

    python -m experiments.ddpm --config=configs/ddpm.py[:quick|gpu|cifar10|cond|cond_gpu]
        [--workdir=runs/ddpm/PRESET] [--config.diffusion.prediction=v ...]
        [--sweep=optim.lr=3e-4,1e-3 --sweep=ema.decay=0.99,0.999 ...]  (genjax.train.sweep)

Trains a U-Net denoiser on the simplified noise objective with the shared loop (EMA of
the parameters in the train state), then, with the EMA parameters: the test-set
variational bound in bits/dim, samples from the ancestral (T-step) and DDIM samplers,
and the classifier Fréchet distance of each sampler's samples against the test images.

With --config.model.conditional=True (presets :cond, :cond_gpu, :cond_quick) the U-Net
takes the class, trained with labels dropped to the null class at model.label_dropout
(`genjax.losses.ddpm.conditional_noise_loss`). The bound is then -log p(x | y) with the
test labels, and test/null_bound_bpd the same network's unconditional (null-class)
bound; the samplers above draw with the null class; and for each guidance weight w of
eval.guidance_weights (`genjax.diffusion.guidance`: eps~ = (1 + w) eps(x, y) - w
eps(x, null), w = 0 the conditional model) eval.cond_samples samples balanced over the
classes give test/w<w>/cond_accuracy, fd, fd_per_class, accuracy/<y>, fd/<y>
(`genjax.eval.conditional`). With eval.inpaint_images > 0 (any DDPM) the bottom half of
that many test images is sampled given the top (`genjax.diffusion.inpaint`; the null
class for a conditional model), per U of eval.inpaint_resample: test/inpaint/U<U>/mse
(per missing pixel, pixels in [0, 1]) and accuracy (the classifier's, against the true
labels), with test/inpaint/mean_fill_mse, random_fill_mse, zero_fill_accuracy and
truth_accuracy for scale.

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, config.json,
samples_ancestral.png, samples_ddim.png, denoising_trajectory.png (x_T ... x_0, one row
per image) and results.json; conditional: class_rows_w<w>.png (one row per class),
guidance_class_rows.png (rows: classes; column blocks: w), guidance_tradeoff.png;
completions: completions_U<U>.png (columns: test digits; rows: the given top half,
completions, the truth).
"""

from __future__ import annotations

import functools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import conditioning, diffusion, losses, viz, xla
from genjax.data import require_image_sides, transforms
from genjax.diffusion import forward, guidance, inpaint, reverse, samplers
from genjax.eval import map_dataset, map_dataset_stacked, sample_quality
from genjax.eval.conditional import conditional_quality
from genjax.nn.unet import UNet
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.ema import (average_in_params, ema_params, ema_step,
                              step_with_average_in_params, with_ema)
from genjax.train.sweep import Program, SweepParts, entry_point
from genjax.train.writers import log
from genjax.viz.conditional import class_rows, guidance_tradeoff

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
    validate_guidance_and_completion(config)


def validate_guidance_and_completion(config):
    """The conditional and completion fields (checked whether or not they are used)."""
    e = config.eval
    conditional = cfglib.boolean(config, "model.conditional")
    rate = cfglib.in_range(config, "model.label_dropout", 0, 1,
                           why="the probability of training on the null class")
    weights = e.guidance_weights
    cfglib.require(isinstance(weights, (tuple, list)) and len(weights) >= 1
                   and all(isinstance(w, (int, float)) and not isinstance(w, bool)
                           and np.isfinite(w) and w >= -1 for w in weights)
                   and len(set(weights)) == len(weights), "eval.guidance_weights", weights,
                   "a tuple of distinct numbers >= -1 (guidance weights w: 0 = the "
                   "conditional model, -1 the unconditional one), e.g. '(0, 0.5, 1, 2, 4)'")
    n = cfglib.integer(config, "eval.cond_samples", minimum=0,
                       why="class-conditional samples per guidance weight; 0 = skip")
    cfglib.one_of(config, "eval.guidance_sampler", guidance.SAMPLERS)
    cfglib.integer(config, "eval.inpaint_images", minimum=0,
                   why="test images completed from their top half; 0 = skip")
    cfglib.int_tuple(config, "eval.inpaint_resample", distinct=True, example="'(1, 5)'",
                     what="RePaint resamplings U per jump; 1 = replacement")
    cfglib.integer(config, "eval.inpaint_jump", maximum=config.diffusion.num_steps - 1,
                   why="RePaint's jump length in levels, < diffusion.num_steps")
    cfglib.require(not (conditional and n and rate == 0 and any(w != 0 for w in weights)),
                   "model.label_dropout", rate,
                   "a number > 0 when eval.guidance_weights has a w != 0 (guidance needs "
                   "the null class trained), or --config.eval.guidance_weights='(0,)'")


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
    if cfglib.validate_conditional(config, ds):
        cfglib.require(ds.num_classes <= 256, "model.conditional", True,
                       f"False: {ds.num_classes} classes, more than the 256 the "
                       "evaluation's uint8 packing of labels holds")
        cfglib.validate_fd(config, ds, ("eval.cond_samples",))
    cfglib.at_most(config, "eval.inpaint_images", len(ds.test),
                   f"the test images of {config.data.name!r}")
    if ds.train_labels is not None:        # completions' accuracy: the classifier
        cfglib.validate_fd(config, ds, ("eval.inpaint_images",))


def _check_unet_sides(config, ds):
    levels = len(config.model.channel_mults)
    require_image_sides(ds, 2 ** (levels - 1), f"the U-Net with {levels} levels",
                        "resize or pad the images, or set --config.model.channel_mults "
                        "to fewer levels")


def build(config, example_shape, num_classes: int | None = None):
    """(graphdef, state with EMA, step, schedule). The loss runs on uint8 batches, or on
    (uint8 images, int labels) batches for a conditional model (model.conditional; then
    ``num_classes`` = the dataset's K is required, and the label dropout rate is
    hparams["label_dropout"], sweepable like ema.decay)."""
    m, d = config.model, config.diffusion
    conditional = bool(m.conditional)
    if conditional and num_classes is None:
        raise ValueError("a conditional DDPM (model.conditional) needs num_classes, the "
                         "dataset's number of classes")
    net = UNet(example_shape, channels=m.channels, channel_mults=tuple(m.channel_mults),
               num_res_blocks=m.num_res_blocks,
               attention_resolutions=tuple(m.attention_resolutions), dropout=m.dropout,
               groups=m.groups, num_classes=num_classes if conditional else None,
               rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(net)
    schedule = diffusion.make_schedule(d.schedule, d.num_steps)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    hparams = dict(hparams, ema_decay=config.ema.decay)
    if conditional:
        hparams["label_dropout"] = m.label_dropout
    state = with_ema(init_state(params, tx, hparams))

    def loss_fn(params, batch, key, hp):
        k_data, k_loss, k_drop = jax.random.split(key, 3)
        u8, y = batch if conditional else (batch, None)
        x0 = transforms.preprocess(k_data, u8, config.data.preprocess)
        if config.data.preprocess == "dequantize":
            x0 = 2.0 * x0 - 1.0
        unet = nnx.merge(graphdef, params)
        if conditional:
            return losses.ddpm.conditional_noise_loss(
                x0, y, k_loss, model_fn=lambda x, t, y: unet(x, t, y, key=k_drop),
                schedule=schedule, num_classes=num_classes,
                label_dropout=hp["label_dropout"], prediction=d.prediction)
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
    settings of a sweep (each as evaluate(params[s], seeds[s]) up to float rounding).

    A conditional model's bound is -log p(x | y) with the test labels y, and
    null_bound_bpd the bound of the same images under the null class (the unconditional
    model), with the same steps and noise."""
    d, e = config.diffusion, config.eval
    x_test = np.asarray(ds.test[:e.bound_examples or None])
    dims = int(np.prod(ds.example_shape))
    conditional = bool(config.model.conditional)
    data = x_test
    if conditional:            # the label rides along as one more uint8 per image
        data = _pack_labels(x_test, ds.test_labels[:len(x_test)])
        null = conditioning.null_label(ds.num_classes)

    def bound(params, batch, key):                  # per-image bits/dim on 8-bit data
        unet = nnx.merge(graphdef, params)
        u8, y = _unpack_labels(batch, ds.example_shape) if conditional else (batch, None)

        def terms(model_fn):
            t = losses.ddpm.vlb_terms(transforms.to_symmetric(u8), key, model_fn=model_fn,
                                      schedule=schedule, prediction=d.prediction,
                                      variance=d.variance, num_t=e.bound_t)
            return {k: losses.ddpm.bits_per_dim(v, dims) for k, v in t.items()}

        if not conditional:
            return terms(unet)
        out = terms(guidance.conditional(unet, y))
        out["null_bound"] = terms(guidance.conditional(unet, jnp.full_like(y, null)))["bound"]
        return out

    def evaluate(params, seed=config.seed):
        out = map_dataset(bound, data, jax.random.key(seed + 1),
                          batch_size=e.batch_size, params=params)
        return {f"{k}_bpd": float(v.mean()) for k, v in out.items()}

    def stacked(params, seeds):         # S settings at once: params [S, ...], S seeds
        keys = jnp.stack([jax.random.key(int(s) + 1) for s in seeds])
        out = map_dataset_stacked(bound, data, keys, batch_size=e.batch_size,
                                  params=params)
        return [{f"{k}_bpd": float(v[i].mean()) for k, v in out.items()}
                for i in range(len(seeds))]

    evaluate.stacked = stacked
    return evaluate, x_test


def _pack_labels(u8, labels):
    """uint8 images [N, *E] and labels [N] (< 256) -> uint8 [N, prod(E) + 1]: one array,
    so that the shared `map_dataset` batches images and labels together."""
    return np.concatenate([u8.reshape(len(u8), -1),
                           np.asarray(labels, np.uint8)[:, None]], axis=1)


def _unpack_labels(packed, example_shape):
    """The inverse of `_pack_labels`: (uint8 images [B, *E], int32 labels [B])."""
    return (packed[:, :-1].reshape((packed.shape[0], *example_shape)),
            packed[:, -1].astype(jnp.int32))


def num_classes_of(config, ds) -> int | None:
    """The K of a conditional model (the dataset's classes), None for an unconditional one."""
    return int(ds.num_classes) if config.model.conditional else None


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ds = experiment.prepare(config, workdir)
    _check_unet_sides(config, ds)
    validate_data(config, ds)
    num_classes = num_classes_of(config, ds)
    graphdef, state, step, schedule = build(config, ds.example_shape, num_classes)
    evaluate_params, x_test = make_evaluate(config, ds, graphdef, schedule)

    def evaluate(state):
        return evaluate_params(ema_params(state))

    state, summary = train(state, step, experiment.training_data(ds, num_classes is not None),
                           cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=evaluate)
    t0 = time.perf_counter()
    metrics = {f"test/{k}": v for k, v in evaluate(state).items()}
    log(f"test bound {metrics['test/bound_bpd']:.4f} bits/dim on {len(x_test)} images "
        + (f"(null class: {metrics['test/null_bound_bpd']:.4f}) " if num_classes else "")
        + f"({time.perf_counter() - t0:.0f} s)")
    params = ema_params(state)
    metrics.update(report(config, workdir, ds, graphdef, params, schedule, num_classes))
    if num_classes is not None and config.eval.cond_samples:
        metrics.update(guidance_report(config, workdir, ds, graphdef, params, schedule,
                                       num_classes))
    if config.eval.inpaint_images:
        metrics.update(inpaint_report(config, workdir, ds, graphdef, params, schedule,
                                      num_classes))
    return experiment.finish(workdir, config, metrics, summary=summary)


def _denoiser(unet, num_classes, n):
    """The unconditional denoiser model_fn(x, t) for n images: the U-Net itself, or a
    conditional U-Net with the null class."""
    if num_classes is None:
        return unet
    return guidance.conditional(unet, jnp.full((n,), conditioning.null_label(num_classes),
                                               jnp.int32))


def make_samplers(config, graphdef, params, schedule, example_shape, num_classes=None):
    """{"ancestral": f, "ddim": f, "pc": f} with f(key, n) -> images [n, *E] in [0, 1]
    (jitted once per n); "pc" is predictor-corrector sampling with the U-Net read as a
    score (`genjax.diffusion.score`: eval.pc_corrector_steps Langevin steps at
    signal-to-noise eval.pc_snr after each ancestral step). A conditional U-Net
    (``num_classes``) samples with the null class: the unconditional model."""
    d, e = config.diffusion, config.eval
    common = dict(prediction=d.prediction, clip=d.clip)

    def run(name, params, key, n):
        unet = _denoiser(nnx.merge(graphdef, params), num_classes, n)
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


def report(config, workdir, ds, graphdef, params, schedule, num_classes=None) -> dict:
    """Sample grids, the denoising trajectory and the Fréchet distance of each sampler
    (its grid shows the first of the images its FD uses); a conditional U-Net
    (``num_classes``) draws them with the null class."""
    d, e, p = config.diffusion, config.eval, config.plots
    fns = make_samplers(config, graphdef, params, schedule, ds.example_shape, num_classes)
    unet = _denoiser(nnx.merge(graphdef, params), num_classes, p.trajectory_images)
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


def _chunked(fn, n: int, batch: int, *args):
    """fn(i, *[a[chunk] for a in args]) over ceil(n / batch) equal chunks (the last one
    padded by repeating row 0, so one compiled size serves all), concatenated, cut to n."""
    chunks = -(-n // batch)
    size = -(-n // chunks)
    pad = chunks * size - n
    args = [np.concatenate([a, np.repeat(a[:1], pad, 0)]) if pad else a for a in args]
    out = [np.asarray(fn(i, *[a[i * size:(i + 1) * size] for a in args]))
           for i in range(chunks)]
    return np.concatenate(out)[:n]


def guidance_report(config, workdir, ds, graphdef, params, schedule, num_classes) -> dict:
    """Classifier-free guidance, per w of eval.guidance_weights: eval.cond_samples
    samples with balanced labels (the same noise for every w) -> test/w<w>/... of
    `genjax.eval.conditional.conditional_quality`; class_rows_w<w>.png,
    guidance_class_rows.png and guidance_tradeoff.png."""
    d, e = config.diffusion, config.eval
    n, weights = e.cond_samples, [float(w) for w in e.guidance_weights]
    labels = conditioning.balanced_labels(n, num_classes)
    kwargs = dict(prediction=d.prediction, clip=d.clip)
    if e.guidance_sampler == "ddim":
        kwargs.update(num_steps=e.ddim_steps, eta=e.ddim_eta)
    else:
        kwargs.update(variance=d.variance)

    def run(guided, params, key, y, w):          # w traced: one program for every w > 0
        unet = nnx.merge(graphdef, params)
        x = guidance.sample(key, unet, schedule, y, w if guided else 0,
                            num_classes=num_classes, example_shape=ds.example_shape,
                            sampler=e.guidance_sampler, **kwargs)
        return (x + 1) / 2

    jitted = xla.jit(run, static_argnums=(0,))
    key = jax.random.key(config.seed + 5)
    clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                        num_steps=e.classifier_steps)
    real = np.asarray(transforms.to_unit(ds.test))
    out, acc, fd, blocks = {}, [], [], []
    for w in weights:
        t0 = time.perf_counter()
        x = _chunked(lambda i, y: jitted(w != 0, params, jax.random.fold_in(key, i), y,
                                         jnp.float32(w)), n, e.batch_size, labels)
        dt = time.perf_counter() - t0
        m = conditional_quality(clf, x, labels, real, ds.test_labels,
                                num_classes=num_classes)
        tag = f"w{w:g}"
        out.update({f"test/{tag}/{k}": v for k, v in m.items()})
        out[f"sampling/{tag}_images_per_s"] = n / dt
        acc.append(m["cond_accuracy"])
        fd.append(m["fd"])
        log(f"guidance w={w:g}: conditional accuracy {m['cond_accuracy']:.3f}, FD "
            f"{m['fd']:.2f}, per-class FD {m['fd_per_class']:.2f} over {n} samples "
            f"({dt:.0f} s)")
        class_rows(os.path.join(workdir, f"class_rows_{tag}.png"), x, labels)
        blocks.append(_class_block(x, labels, num_classes, per_class=4))
    out["test/cond_samples"] = n
    out["test/classifier_accuracy"] = clf.test_accuracy
    guidance_tradeoff(os.path.join(workdir, "guidance_tradeoff.png"), weights, acc, fd,
                      title=f"classifier-free guidance, {n} samples ({e.guidance_sampler})")
    # rows: classes; a block of 4 columns per w, a blank column between blocks
    blank = np.ones((num_classes, 1, *ds.example_shape), np.float32)
    parts = [p for b in blocks for p in (b, blank)][:-1]
    grid = np.concatenate(parts, axis=1)                          # [K, columns, *E]
    viz.grid.save_image_grid(os.path.join(workdir, "guidance_class_rows.png"),
                             grid.reshape(-1, *ds.example_shape), ncol=grid.shape[1])
    return out


def _class_block(x, labels, num_classes, per_class):
    """[K, per_class, *E]: the first ``per_class`` samples of each class (blank-padded)."""
    rows = []
    for y in range(num_classes):
        r = x[labels == y][:per_class]
        rows.append(np.concatenate([r, np.ones((per_class - len(r), *x.shape[1:]),
                                               x.dtype)]) if len(r) < per_class else r)
    return np.stack(rows)


def inpaint_report(config, workdir, ds, graphdef, params, schedule, num_classes) -> dict:
    """Completions of the bottom half of the first eval.inpaint_images test images given
    their top half (`genjax.diffusion.inpaint.repaint`, the null class for a conditional
    U-Net), once per U of eval.inpaint_resample: test/inpaint/U<U>/mse (the missing
    pixels' squared error, pixels in [0, 1]) and accuracy (the classifier's on the
    completed images, against the true labels); for scale test/inpaint/mean_fill_mse
    (the training mean's bottom half instead: the best constant), random_fill_mse (the
    bottom half of a training digit drawn independently of the top: what a sampler
    that ignores the given half scores; an exact sampler of p(bottom | top) scores
    2 E[Var(bottom | top)], below it, but above mean_fill_mse whenever the top leaves
    the bottom uncertain), zero_fill_accuracy (a blank bottom half) and truth_accuracy
    (the true images). completions_U<U>.png: 8 digits (columns),
    rows the given half, 3 completions and the truth."""
    d, e = config.diffusion, config.eval
    n, shown, draws = e.inpaint_images, min(8, e.inpaint_images), 3
    mask = inpaint.top_half_mask(ds.example_shape)
    truth_u8 = np.asarray(ds.test[:n])
    truth = np.asarray(transforms.to_unit(truth_u8))                    # [n, *E] in [0, 1]
    # the figure's extra draws (digits 0..shown-1, draws - 1 more times) ride along
    extra = np.tile(np.arange(shown), draws - 1)
    known = np.concatenate([truth, truth[extra]]) * 2.0 - 1.0
    total = len(known)

    def run(resample, params, key, x_known):
        unet = _denoiser(nnx.merge(graphdef, params), num_classes, x_known.shape[0])
        x = inpaint.repaint(key, unet, schedule, x_known, mask, resample=resample,
                            jump=e.inpaint_jump, prediction=d.prediction,
                            variance=d.variance, clip=d.clip)
        return (x + 1) / 2

    jitted = xla.jit(run, static_argnums=(0,))
    key = jax.random.key(config.seed + 6)
    missing = ~mask
    mean_img = np.asarray(transforms.to_unit(ds.train)).mean(0)
    other = np.asarray(transforms.to_unit(ds.train[:n]))        # independent digits
    out = {"test/inpaint/images": n,
           "test/inpaint/mean_fill_mse": float(((truth - mean_img) ** 2)[:, missing].mean()),
           "test/inpaint/random_fill_mse": float(((truth - other) ** 2)[:, missing].mean())}
    clf = None
    if ds.test_labels is not None:
        clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                            num_steps=e.classifier_steps)
        y = np.asarray(ds.test_labels[:n])
        out["test/inpaint/truth_accuracy"] = float(np.mean(clf.predict(truth) == y))
        out["test/inpaint/zero_fill_accuracy"] = float(
            np.mean(clf.predict(np.where(mask, truth, 0.0)) == y))
    for resample in e.inpaint_resample:
        t0 = time.perf_counter()
        done = _chunked(lambda i, xk: jitted(resample, params, jax.random.fold_in(key, i),
                                             xk), total, e.batch_size, known)
        dt = time.perf_counter() - t0
        tag = f"test/inpaint/U{resample}"
        out[f"{tag}/mse"] = float(((done[:n] - truth) ** 2)[:, missing].mean())
        if clf is not None:
            out[f"{tag}/accuracy"] = float(np.mean(clf.predict(done[:n]) == y))
        out[f"sampling/inpaint_U{resample}_images_per_s"] = total / dt
        log(f"completions (U={resample}): mse {out[f'{tag}/mse']:.4f} per missing pixel"
            + (f", accuracy {out[f'{tag}/accuracy']:.3f}" if clf is not None else "")
            + f" over {n} test images ({dt:.0f} s)")
        comps = [done[:shown]] + [done[n + j * shown: n + (j + 1) * shown]
                                  for j in range(draws - 1)]
        rows = [np.where(mask, truth[:shown], 0.5)] + comps + [truth[:shown]]
        viz.grid.save_image_grid(os.path.join(workdir, f"completions_U{resample}.png"),
                                 np.concatenate(rows), ncol=shown)
    return out


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state and `make_evaluate`'s test bound of its
    EMA parameters (the settings evaluated together, vmapped)."""
    ds = experiment.prepare(config, workdir)
    _check_unet_sides(config, ds)
    validate_data(config, ds)
    num_classes = num_classes_of(config, ds)
    graphdef, _, step, schedule = build(config, ds.example_shape, num_classes)
    ev, _ = make_evaluate(config, ds, graphdef, schedule)

    def evaluate(setting_config, params):
        return {f"test/{k}": v for k, v in ev(params["ema"], seed=setting_config.seed).items()}

    def evaluate_stacked(setting_configs, params):
        return [{f"test/{k}": v for k, v in m.items()}
                for m in ev.stacked(params["ema"], [c.seed for c in setting_configs])]

    return Program(init=lambda c: average_in_params(build(c, ds.example_shape,
                                                          num_classes)[1]),
                   step_fn=step_with_average_in_params(step),
                   train_data=experiment.training_data(ds, num_classes is not None),
                   evaluate=evaluate, evaluate_stacked=evaluate_stacked)


# The seed, the optimiser's lr, weight_decay and grad_clip, ema.decay and (conditional
# models) model.label_dropout live in TrainState.hparams (or drive the init and keys): a
# sweep over them is one program; any other field (the U-Net, the diffusion, the
# schedule's warmup) is static. A sweep over the guidance weight w needs no training:
# it is the evaluation list eval.guidance_weights of one run.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields("ema.decay", "model.label_dropout"),
                   validate=validate, prepare=prepare_sweep_program,
                   main_metric=("test/bound_bpd", "min"))


sweep = entry_point(SWEEP, "experiments.ddpm")


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="ddpm",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "ddpm.py"),
            description="DDPM")
