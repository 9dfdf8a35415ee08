"""Train and evaluate a GAN: DCGAN on digits, or MLPs on a 2-D toy density.

    python -m experiments.gan --config=configs/gan.py[:PRESET]
        [--workdir=runs/gan/PRESET] [--config.loss.objective=minimax ...]
        [--sweep=optim.lr=1e-4,3e-4 --sweep=seed=0,1 ...]  (genjax.train.sweep)

Presets: default (DCGAN on mnist5k), eight_gaussians, quick, cifar10, conditional,
conditional_eight_gaussians, conditional_quick (see configs/gan.py).

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl (d_loss, g_loss,
D(x) on real and generated data, both gradient norms), config.json, samples/ (a figure at
every evaluation), and results.json. Images: samples.png, interpolation.png (generator
outputs along spherical paths between latent draws), the classifier Fréchet distance
of generated digits against the test split and the KL divergence from uniform of the
classes the classifier assigns to the samples (0 = every class equally often; mode
collapse raises it). The 8-Gaussians toy: samples.png (data;
samples over the discriminator's D(x); straight latent paths mapped by G) and the
modes covered, the high-quality fraction and the mode KL (genjax.eval.gan_toy).

Class-conditional (--config.model.conditional=True): G(z, y) and a projection
discriminator D(x, y); images: conditional accuracy, overall and per-class Fréchet
distance of fd_samples samples drawn for balanced labels (genjax.eval.conditional),
samples.png with one row per class (class_rows) and class_styles.png (z fixed per row,
y = 0..K-1 along it); the toy: the share of label k's samples at mode k
(cond_mode_accuracy) next to the mode metrics, samples coloured by their label.
"""

from __future__ import annotations

import dataclasses
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import conditioning, viz, xla
from genjax.data import require_image_sides, transforms
from genjax.eval import conditional as cond_eval
from genjax.eval import gan_analysis, sample_quality
from genjax.losses import gan as gan_losses
from genjax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.models.gan import MLPDiscriminator, MLPGenerator
from genjax.train import NonFiniteError, cli, config as cfglib, experiment, make_optimizer
from genjax.train import ConfigError, sweep_spec, train
from genjax.train.gan_step import init_gan_state, make_gan_step
from genjax.train.sweep import Program, SweepParts, run_sweep
from genjax.viz import conditional as cond_viz

ARCHITECTURES = ("dcgan", "mlp")
JS_OBJECTIVES = ("non_saturating", "minimax")     # D(x) = sigmoid(logit) is a probability


def validate(config):
    """Every field of the model, loss, optim_d, eval and plots sections (the shared ones:
    `cfglib.validate_common`), before anything is built or compiled."""
    m = config.model
    cfglib.one_of(config, "model.arch", ARCHITECTURES)
    cfglib.one_of(config, "loss.objective", gan_losses.OBJECTIVES)
    for f in ("model.latent_dim", "model.g_channels", "model.d_channels", "loss.d_steps",
              "eval.toy_samples", "eval.classifier_steps", "plots.num_samples",
              "plots.interp_pairs", "plots.toy_points"):
        cfglib.integer(config, f)
    for f in ("model.g_hidden", "model.d_hidden"):
        cfglib.int_tuple(config, f, min_len=0, example="'(128, 128)'",
                         what="the MLP's hidden widths")
    cfglib.boolean(config, "model.g_norm")
    cfglib.boolean(config, "model.conditional")    # labels checked with the data
    cfglib.in_range(config, "model.ema_decay", 0, 1, why="0 turns the average off")
    cfglib.positive(config, "loss.gp_weight", allow_zero=True)
    cfglib.integer(config, "eval.fd_samples", minimum=0, why="0 = skip")
    cfglib.string(config, "eval.classifier_dir")
    cfglib.positive(config, "eval.num_std")
    cfglib.in_range(config, "eval.min_fraction", 0, 1, high_open=False)
    cfglib.boolean(config, "eval.use_ema")
    cfglib.integer(config, "plots.interp_steps", minimum=2)
    cfglib.validate_optim(config, "optim_d")          # the discriminator's optimiser
    cfglib.require(m.arch == "mlp" or config.data.preprocess == "symmetric",
                   "data.preprocess", config.data.preprocess,
                   "'symmetric' ([-1, 1], the range of the DCGAN generator's tanh)")


def validate_data(config, ds):
    """Checks that need the dataset (after `experiment.prepare`, before building)."""
    cfglib.validate_conditional(config, ds)
    want = "points" if config.model.arch == "mlp" else "image"
    cfglib.require(ds.kind == want, "model.arch", config.model.arch,
                   f"{'dcgan' if ds.kind == 'image' else 'mlp'} for the {ds.kind} of "
                   f"{config.data.name!r} (dcgan is for images, mlp for 2-D points)")
    if ds.kind == "points":
        cfglib.require(config.data.preprocess == "none", "data.preprocess",
                       config.data.preprocess, "'none' for 2-D points")
        return
    require_image_sides(ds, 4, "the DCGAN (two stride-2 layers)")
    cfglib.validate_fd(config, ds)


def build(config, example_shape, num_classes: int | None = None):
    """The players, the initial state and the training step of ``config`` (shared with
    benchmarks/gan_throughput.py). Returns (generate, discriminate, state, step_fn) with
    generate(g_params, z [N, Z]) -> x [N, *E] (images in [-1, 1]) and
    discriminate(d_params, x) -> logits [N].

    With model.conditional (``num_classes`` K of the dataset required): generate(g_params,
    z, y [N]) and discriminate(d_params, x, y [N]), y int in 0..K-1, and the step's batch
    is (x uint8 [B, *E], y [B]) (`experiment.training_data`): D scores real (x, y) against
    (G(z, y), y), G is trained on the batch's labels (the data's label frequencies)."""
    m, lo = config.model, config.loss
    k = 0
    if m.conditional:
        if not num_classes:
            raise ValueError("build: a conditional GAN needs num_classes (the dataset's)")
        k = int(num_classes)
    rngs = nnx.Rngs(config.seed)
    if m.arch == "dcgan":
        g = DCGANGenerator(m.latent_dim, example_shape, channels=m.g_channels,
                           norm=m.g_norm, num_classes=k, rngs=rngs)
        d = DCGANDiscriminator(example_shape, channels=m.d_channels, num_classes=k,
                               rngs=rngs)
    else:
        g = MLPGenerator(m.latent_dim, math.prod(example_shape), hidden=tuple(m.g_hidden),
                         num_classes=k, rngs=rngs)
        d = MLPDiscriminator(math.prod(example_shape), hidden=tuple(m.d_hidden),
                             num_classes=k, rngs=rngs)
    g_def, g_params = nnx.split(g)
    d_def, d_params = nnx.split(d)
    num_steps = config.train.num_steps
    tx_g, hp_g, sched_g = make_optimizer(config.optim, num_steps)
    tx_d, hp_d, sched_d = make_optimizer(config.optim_d, num_steps)
    hparams = {"g_lr": hp_g["lr"], "g_weight_decay": hp_g["weight_decay"],
               "d_lr": hp_d["lr"], "d_weight_decay": hp_d["weight_decay"],
               "g_grad_clip": hp_g.get("grad_clip", 0.0),
               "d_grad_clip": hp_d.get("grad_clip", 0.0), "gp_weight": lo.gp_weight}
    if m.ema_decay > 0:
        hparams["ema_decay"] = m.ema_decay
    state = init_gan_state(g_params, d_params, tx_g, tx_d, hparams, ema=m.ema_decay > 0)

    def generate(g_params, z, y=None):
        return nnx.merge(g_def, g_params)(z, y).reshape((z.shape[0],) + tuple(example_shape))

    def discriminate(d_params, x, y=None):
        return nnx.merge(d_def, d_params)(x, y)

    d_obj, g_obj = gan_losses.objective(lo.objective)

    def split(batch):
        """(images or points [B, *E], labels [B] or None) of a step's batch."""
        return batch if k else (batch, None)

    def d_loss_fn(d_params, g_params, batch, key, hp):
        k_data, k_z, k_gp = jax.random.split(key, 3)
        x, y = split(batch)
        real = transforms.preprocess(k_data, x, config.data.preprocess)         # [B, *E]
        b = real.shape[0]
        z = jax.random.normal(k_z, (b, m.latent_dim))
        fake = jax.lax.stop_gradient(generate(g_params, z, y))                  # [B, *E]
        yy = None if y is None else jnp.concatenate([y, y])                     # [2B]
        logits = discriminate(d_params, jnp.concatenate([real, fake]), yy)      # [2B]
        real_l, fake_l = logits[:b], logits[b:]
        loss = d_obj(real_l, fake_l)
        # named to sort after d_loss / g_loss (see genjax.train.gan_step)
        metrics = {"stats/real_logit": jnp.mean(real_l), "stats/fake_logit": jnp.mean(fake_l)}
        if lo.objective in JS_OBJECTIVES:                       # D(x) on real and fake
            metrics.update({"stats/d_real": jnp.mean(jax.nn.sigmoid(real_l)),
                            "stats/d_fake": jnp.mean(jax.nn.sigmoid(fake_l))})
        if lo.objective == "wgan_gp":
            # real and fake share their labels: the interpolates keep them
            gp = gan_losses.gradient_penalty(lambda x: discriminate(d_params, x, y), real,
                                             fake, k_gp)
            loss = loss + hp["gp_weight"] * gp
            metrics["stats/gradient_penalty"] = gp
        return loss, metrics

    def g_loss_fn(g_params, d_params, batch, key, hp):
        x, y = split(batch)
        z = jax.random.normal(key, (x.shape[0], m.latent_dim))              # [B, Z]
        return g_obj(discriminate(d_params, generate(g_params, z, y), y)), {}

    step = make_gan_step(g_loss_fn=g_loss_fn, d_loss_fn=d_loss_fn, tx_g=tx_g, tx_d=tx_d,
                         d_steps=lo.d_steps, g_lr_schedule=sched_g, d_lr_schedule=sched_d)
    return generate, discriminate, state, step


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates, writes figures and results.json;
    returns the final metrics."""
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    generate, discriminate, state, step = build(config, ds.example_shape, ds.num_classes)
    report = Report(config, workdir, ds, generate, discriminate)
    try:
        state, summary = train(state, step,
                               experiment.training_data(ds, config.model.conditional),
                               cfg=config.train, seed=config.seed,
                               workdir=workdir, eval_fn=report.during_training)
    except NonFiniteError as e:
        raise NonFiniteError(f"{e} (d_* metrics are the discriminator's, whose optimiser is "
                             "--config.optim_d; g_* the generator's, --config.optim)") from None
    return experiment.finish(workdir, config, report.final(state), summary=summary)


class Report:
    """The numbers and figures of a state (genjax.eval.gan_analysis): during training, a
    samples figure in samples/ and the numbers under eval/; at the end, results.json's
    numbers, samples.png and (images) interpolation.png. Numbers are computed for G and,
    with an EMA, for the average ("ema_" prefix); figures show the average when
    eval.use_ema. Every evaluation uses the same latent draws (and, conditional, the same
    balanced labels in a fixed random order)."""

    def __init__(self, config, workdir, ds, generate, discriminate):
        self.config, self.workdir, self.ds = config, workdir, ds
        self.generate, self.discriminate = xla.jit(generate), xla.jit(discriminate)
        self.images = ds.kind == "image"
        self.num_classes = int(ds.num_classes) if config.model.conditional else 0
        # the classes samples are drawn for: those in the data (all, unless data.classes)
        self.classes = (np.unique(ds.train_labels).astype(np.int32) if self.num_classes
                        else None)
        self.clf = None
        e = config.eval
        if self.images and e.fd_samples:
            cfglib.require(e.fd_samples <= len(ds.test), "eval.fd_samples", e.fd_samples,
                           f"at most the {len(ds.test)} test images")
            self.clf = sample_quality.get_classifier(config.data.name,
                                                     e.classifier_dir or None,
                                                     num_steps=e.classifier_steps)
            self.real = np.asarray(transforms.to_unit(ds.test[:e.fd_samples]))
            if self.num_classes:
                self.real_labels = np.asarray(ds.test_labels[:e.fd_samples])

    def _generator(self, g_params):
        """z (and y) -> samples as the figures and metrics want them ([0, 1] images)."""
        if self.images:
            return lambda z, y=None: (self.generate(g_params, z, y) + 1.0) / 2.0  # -> [0, 1]
        return lambda z, y=None: self.generate(g_params, z, y)

    def _shown(self, state):
        use_ema = self.config.eval.use_ema and "g_ema" in state.params
        return self._generator(state.params["g_ema" if use_ema else "g"]), use_ema

    def _labels(self, key, n):
        """Balanced labels (n // K per class of the data) in a random order fixed by
        ``key``; None for an unconditional GAN."""
        if not self.num_classes:
            return None
        return self.classes[gan_analysis.mixed_labels(key, n, len(self.classes))]

    def numbers(self, state) -> dict:
        return self.numbers_of(state.params)

    def numbers_of(self, params, seed: int | None = None) -> dict:
        """The numbers of the players ``params`` ({"g", "d"[, "g_ema"]}), the samples
        drawn with ``seed`` (default config.seed). Every call reuses one compiled
        generator (the parameters are its arguments), so a sweep evaluates each setting
        with the program's Report."""
        c, e, out = self.config, self.config.eval, {}
        key = jax.random.key((c.seed if seed is None else seed) + 2)
        k_labels = jax.random.fold_in(key, 1)
        players = {"": params["g"]}
        if "g_ema" in params:
            players["ema_"] = params["g_ema"]
        for prefix, g_params in players.items():
            gen = self._generator(g_params)
            if self.clf is not None:
                labels = self._labels(k_labels, e.fd_samples)
                fake = gan_analysis.sample(gen, key, e.fd_samples, c.model.latent_dim,
                                           labels=labels)
                if self.num_classes:
                    m = cond_eval.conditional_quality(self.clf, fake, labels, self.real,
                                                      self.real_labels,
                                                      num_classes=self.num_classes)
                    m["predicted_class_kl"] = gan_analysis.predicted_class_kl(
                        self.clf, fake, self.num_classes)
                else:
                    m = gan_analysis.digit_quality(self.clf, self.real, fake,
                                                   self.ds.num_classes or 10)
                out.update({prefix + k: v for k, v in m.items()})
            if self.ds.name == "eight_gaussians":
                labels = self._labels(k_labels, e.toy_samples)
                fake = gan_analysis.sample(gen, key, e.toy_samples, c.model.latent_dim,
                                           labels=labels)
                m = gan_analysis.eight_gaussians_modes(fake, num_std=e.num_std,
                                                       min_fraction=e.min_fraction)
                if self.num_classes:
                    m.update(gan_analysis.eight_gaussians_conditional(
                        fake, labels, num_std=e.num_std))
                out.update({prefix + k: v for k, v in m.items()
                            if not (prefix and k.startswith("mode_share"))})
        return out

    def figure(self, state, path: str) -> None:
        c, p = self.config, self.config.plots
        gen, use_ema = self._shown(state)
        key = jax.random.key(c.seed + 3)
        if self.images:
            if self.num_classes:         # one row of 10 per class, all in one batch
                labels = self.classes[conditioning.balanced_labels(
                    10 * len(self.classes), len(self.classes))]
                samples = gan_analysis.sample(gen, key, len(labels), c.model.latent_dim,
                                              labels=labels)
                cond_viz.class_rows(path, samples, labels, per_row=10)
                return
            viz.save_image_grid(path, gan_analysis.sample(gen, key, p.num_samples,
                                                          c.model.latent_dim))
            return
        if self.ds.example_shape != (2,):     # the toy figure draws 2-D points only
            return
        js = c.loss.objective in JS_OBJECTIVES
        d_params = state.params["d"]
        cond = self.num_classes > 0

        def d_shown(x):              # conditional: D(x, y) for y = 0 in the background
            y = np.zeros(len(x), np.int32) if cond else None
            return (jax.nn.sigmoid if js else np.asarray)(self.discriminate(d_params, x, y))

        d_label = "D(x)" if js else "critic score"
        if cond:
            d_label = "D(x, y=0)" if js else "critic score (y=0)"
        gan_analysis.toy_figure(
            path, key, generate=gen, latent_dim=c.model.latent_dim,
            discriminate=d_shown,
            data=self.ds.train[:p.toy_points], num_points=p.toy_points,
            num_paths=p.interp_pairs, modes=self.ds.name == "eight_gaussians",
            num_std=c.eval.num_std, d_label=d_label,
            title=f"{'conditional ' if self.num_classes else ''}GAN ({c.loss.objective}) "
                  f"on {c.data.name}, step {int(state.step)}"
                  + (" (EMA of G)" if use_ema else ""),
            num_classes=self.num_classes,
            data_labels=(self.ds.train_labels[:p.toy_points] if self.num_classes
                         else None))

    def during_training(self, state) -> dict:
        self.figure(state, os.path.join(self.workdir, "samples",
                                        f"step_{int(state.step):07d}.png"))
        return self.numbers(state)

    def final(self, state) -> dict:
        metrics = {f"test/{k}": v for k, v in self.numbers(state).items()}
        if self.clf is not None:
            metrics["test/classifier_accuracy"] = self.clf.test_accuracy
            metrics["test/fd_samples"] = len(self.real)
            # the reference: the same KL for the real test images
            metrics["test/real_predicted_class_kl"] = gan_analysis.predicted_class_kl(
                self.clf, self.real, self.ds.num_classes or 10)
        self.figure(state, os.path.join(self.workdir, "samples.png"))
        if self.images:
            p = self.config.plots
            gen = self._shown(state)[0]
            metrics.update(gan_analysis.interpolation_strip(
                os.path.join(self.workdir, "interpolation.png"),
                jax.random.key(self.config.seed + 4), generate=gen,
                latent_dim=self.config.model.latent_dim,
                example_shape=self.ds.example_shape, pairs=p.interp_pairs,
                steps=p.interp_steps, num_classes=self.num_classes))
            if self.num_classes:
                gan_analysis.class_style_grid(
                    os.path.join(self.workdir, "class_styles.png"),
                    jax.random.key(self.config.seed + 5), generate=gen,
                    latent_dim=self.config.model.latent_dim, num_classes=self.num_classes,
                    rows=p.interp_pairs)
        return metrics


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state and `Report`'s test numbers (one Report,
    so one compiled generator and one classifier, for every setting)."""
    ds = experiment.prepare(config, workdir, kinds=("image", "points"))
    validate_data(config, ds)
    generate, discriminate, _, step = build(config, ds.example_shape, ds.num_classes)
    report = Report(config, workdir, ds, generate, discriminate)

    def evaluate(setting_config, params):
        # the per-mode shares and per-class numbers stay in single runs' results.json: in
        # a sweep they would fill the console table (the first metrics in name order)
        return {f"test/{k}": v for k, v in
                report.numbers_of(params, seed=setting_config.seed).items()
                if not k.startswith(PER_CLASS)}

    return Program(init=lambda c: build(c, ds.example_shape, ds.num_classes)[2],
                   step_fn=step,
                   train_data=experiment.training_data(ds, config.model.conditional),
                   evaluate=evaluate)


PER_CLASS = ("mode_share/", "accuracy/", "fd/", "cond_mode_accuracy/", "ema_accuracy/",
             "ema_fd/", "ema_cond_mode_accuracy/")


# TrainState.hparams holds both optimisers' lr, weight_decay and grad_clip, gp_weight and
# ema_decay; the seed drives the init and keys: a sweep over them is one program. Any
# other field is static (one program per value). model.ema_decay is dynamic only while
# every setting has an average (> 0) or none has (the state holds "g_ema" only with one):
# `sweep` makes it static for a sweep that mixes 0 and > 0.
SWEEP = SweepParts(
    dynamic=sweep_spec.dynamic_fields("loss.gp_weight", "model.ema_decay",
                                      optim_sections=("optim", "optim_d")),
    validate=validate, prepare=prepare_sweep_program,
    main_metric=("test/frechet_distance", "min"))


def sweep(config, workdir: str, axes, *, samples: int = 0, sweep_seed: int = 0,
          chunk: int = 0) -> dict:
    """The ``--sweep`` entry point: `genjax.train.sweep.run_sweep` with the GAN's parts.
    Settings are ranked by the classifier Fréchet distance for images ("min") and by the
    high-quality fraction for eight_gaussians ("max"; the table also shows the modes
    covered and the mode KL), both of the generator's average when every setting has one
    and eval.use_ema, else of G. A conditional GAN (model.conditional in the base
    config) is ranked by the Fréchet distance of its class-conditional samples (``fd``)
    and on eight_gaussians by the conditional mode accuracy."""
    settings = sweep_spec.expand(config, [sweep_spec.parse_axis(t) for t in axes],
                                 samples=samples, sweep_seed=sweep_seed)
    decays = [s.get("model.ema_decay", config.model.ema_decay) for s in settings]
    has_ema = {d > 0 for d in decays}
    dynamic = SWEEP.dynamic
    if len(has_ema) > 1:            # settings with and without "g_ema": no common state
        dynamic = dynamic - {"model.ema_decay"}
    prefix = "ema_" if has_ema == {True} and config.eval.use_ema else ""
    cond = bool(config.model.conditional)
    if config.data.name == "eight_gaussians":
        main = (f"test/{prefix}{'cond_mode_accuracy' if cond else 'high_quality_fraction'}",
                "max")
    elif config.model.arch == "dcgan":
        cfglib.require(config.eval.fd_samples > 0, "eval.fd_samples",
                       config.eval.fd_samples, "> 0 in a sweep of images (the settings "
                       "are ranked by the classifier Fréchet distance)")
        main = (f"test/{prefix}{'fd' if cond else 'frechet_distance'}", "min")
    else:
        raise ConfigError(f"a GAN sweep on {config.data.name!r} has no test metric to "
                          "rank the settings by (mode metrics exist for eight_gaussians, "
                          "the Fréchet distance for images); sweep one of those")
    return run_sweep(config, workdir, axes, samples=samples, sweep_seed=sweep_seed,
                     chunk=chunk,
                     parts=dataclasses.replace(SWEEP, dynamic=dynamic, main_metric=main))


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="gan",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "gan.py"),
            description="GAN")
