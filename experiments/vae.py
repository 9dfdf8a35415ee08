"""Train and evaluate a VAE.

    python -m experiments.vae --config=configs/vae.py[:PRESET]
        [--workdir=runs/vae/PRESET] [--config.loss.beta=4 ...]
        [--sweep=optim.lr=1e-3,3e-3 --sweep=seed=0,1 ...]  (genjax.train.sweep)

Presets: default, quick, conv, iwae, ae (a deterministic autoencoder), latent2d,
anomaly, mnist, cvae (the conditional VAE; see configs/vae.py).

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, samples.png,
reconstructions.png, interpolation.png, interpolation_slerp.png, config.json and
results.json (test ELBO and importance-weighted log-likelihood in nats, the classifier
Fréchet distance of prior samples, interpolation evenness); with a 2-D latent also
latent_scatter.png and latent_manifold.png; with anomaly.held_out_classes also
anomaly_scores.png and the AUROCs.

The conditional VAE (``--config.model.conditional=True``, preset cvae; Sohn et al., 2015)
trains q(z | x, y) and p(x | z, y) on (image, label) batches. Its test numbers are then
CONDITIONAL: test/elbo, test/log_px, test/kl and test/iw_log_likelihood bound or estimate
log p(x | y) with the test image's own label, not log p(x), so results.json also carries
``test/conditional = 1`` (absent for an unconditional model); they are not comparable
with an unconditional VAE's log p(x). Sample quality is the shared conditional protocol
(`genjax.eval.conditional`): eval.fd_samples class-conditional prior samples (z ~ N(0, I),
the decoder's mean, fd_samples / K per class) -> test/cond_accuracy, test/fd (also written
as test/frechet_distance), test/fd_per_class, test/accuracy/<y>, test/fd/<y>; and
test/analogy_accuracy (test digits' posterior means decoded with every other label, the
share the classifier calls the new label). Without the label, with eval.marginal_iw_samples
draws per class (`vae_analysis.label_marginal`): test/marginal_iw_log_likelihood, a
stochastic lower bound on log p(x) = log (1/K) sum_y p(x | y) comparable with an
unconditional VAE's test/iw_log_likelihood, and test/generative_accuracy, the share of
test digits whose label maximises p(x | y). Figures: class_rows.png (one row of prior
samples per class) instead of samples.png, analogies.png (fixed z, one column per class),
and with a 2-D latent latent_scatter.png and latent_manifold_by_class.png.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from genjax import data as gdata
from genjax import eval as geval
from genjax import losses, viz, xla
from genjax.data import transforms
from genjax.eval import sample_quality, vae_analysis
from genjax.models.vae import ARCHITECTURES, VAE, given
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.sweep import Program, SweepParts, run_sweep


OBJECTIVES = ("elbo", "iwae", "ae")


def validate(config):
    """Every field of the VAE's own sections (the shared ones: `cfglib.validate_common`),
    before anything is built or compiled."""
    m, lo, e = config.model, config.loss, config.eval
    cfglib.one_of(config, "model.arch", ARCHITECTURES)
    cfglib.one_of(config, "model.likelihood", losses.vae.LIKELIHOODS)
    cfglib.one_of(config, "loss.objective", OBJECTIVES)
    cfglib.one_of(config, "loss.kl", losses.vae.KL_ESTIMATORS)
    if m.arch == "conv":
        cfglib.int_tuple(config, "model.hidden", min_len=1, max_len=1, example="'(256,)'",
                         what="the conv net's dense width")
    else:
        cfglib.int_tuple(config, "model.hidden", min_len=0, example="'(400,)'",
                         what="layer widths; () = linear")
    cfglib.integer(config, "model.latent_dim")
    conditional = cfglib.boolean(config, "model.conditional")
    cfglib.positive(config, "loss.beta", allow_zero=True)
    # the autoencoder ignores beta and num_samples (ae_vs_vae trains it from a VAE config)
    cfglib.require(lo.beta == 1.0 or lo.objective != "iwae", "loss.beta", lo.beta,
                   "1.0 with loss.objective='iwae' (beta weights the ELBO's KL)")
    cfglib.integer(config, "loss.num_samples")
    cfglib.require(lo.num_samples == 1 or lo.objective != "elbo", "loss.num_samples",
                   lo.num_samples, f"1 with loss.objective={lo.objective!r} (K > 1 is the "
                   "IWAE bound's, --config.loss.objective=iwae)")
    for f in ("eval.batch_size", "eval.iw_samples", "eval.iw_chunk", "eval.classifier_steps",
              "anomaly.iw_samples", "plots.num_samples", "plots.interp_pairs",
              "plots.manifold_grid"):
        cfglib.integer(config, f)
    cfglib.integer(config, "plots.analogy_digits", minimum=0, why="0 = none")
    cfglib.integer(config, "plots.analogy_prior", minimum=0, why="0 = none")
    cfglib.require(e.iw_samples % e.iw_chunk == 0, "eval.iw_chunk", e.iw_chunk,
                   f"a divisor of eval.iw_samples={e.iw_samples}")
    cfglib.integer(config, "eval.num_examples", minimum=0, why="0 = the whole test split")
    cfglib.integer(config, "eval.fd_samples", minimum=0, why="0 = skip")
    cfglib.integer(config, "eval.marginal_iw_samples", minimum=0, why="0 = skip")
    cfglib.string(config, "eval.classifier_dir")
    cfglib.integer(config, "plots.interp_steps", minimum=2)
    held = cfglib.int_tuple(config, "anomaly.held_out_classes", minimum=0, min_len=0,
                            distinct=True, example="'(8, 9)'", what="labels")
    overlap = set(held) & set(config.data.classes or ())
    cfglib.require(not overlap, "anomaly.held_out_classes", config.anomaly.held_out_classes,
                   "classes not in data.classes (those are the normal ones)")
    cfglib.require(not held or config.data.classes, "data.classes", config.data.classes,
                   "the normal classes when anomaly.held_out_classes is set")
    cfglib.require(not (held and conditional), "anomaly.held_out_classes", held,
                   "() with model.conditional=True (a conditional VAE needs the label of "
                   "every image it scores, and held-out classes were never trained)")
    cfglib.require(m.likelihood != "bernoulli"
                   or config.data.preprocess in ("dynamic_binarize", "unit", "dequantize"),
                   "data.preprocess", config.data.preprocess,
                   "values in [0, 1] for the Bernoulli decoder")


def validate_data(config, ds):
    """Checks that need the dataset (run after `experiment.prepare`, before building)."""
    e = config.eval
    cfglib.require(config.model.arch != "conv" or (ds.example_shape[0] % 4 == 0
                                                   and ds.example_shape[1] % 4 == 0),
                   "model.arch", config.model.arch,
                   f"'mlp' for images of shape {ds.example_shape} in {config.data.name!r} "
                   "(the conv net needs sides divisible by 4)")
    n_test = min(e.num_examples or len(ds.test), len(ds.test))
    cfglib.at_most(config, "eval.num_examples", len(ds.test),
                   f"the test examples of {config.data.name!r} (0 = all)")
    cfglib.at_most(config, "plots.interp_pairs", n_test // 2,
                   f"half the {n_test} evaluated test examples (each pair takes two)")
    if config.model.conditional:
        cfglib.at_most(config, "plots.analogy_digits", n_test,
                       f"the {n_test} evaluated test examples")
    cfglib.validate_fd(config, ds)
    cfglib.validate_conditional(config, ds)
    held = config.anomaly.held_out_classes
    if held:
        cfglib.require(ds.train_labels is not None, "anomaly.held_out_classes", held,
                       f"(): {config.data.name!r} has no labels")
        cfglib.require(max(held) < ds.num_classes, "anomaly.held_out_classes", held,
                       f"labels of {config.data.name!r} (0..{ds.num_classes - 1})")


def num_classes_of(config, ds) -> int:
    """The K of the conditional VAE (the dataset's number of labels), 0 when
    unconditional."""
    return int(ds.num_classes) if config.model.conditional else 0


def build(config, example_shape, num_classes: int = 0):
    """The model, optimiser and training loss of ``config`` (shared with
    benchmarks/vae_throughput.py). Returns (graphdef, state, tx, lr_schedule, loss_fn) with
    loss_fn(params, batch, key, hparams) -> (loss, metrics) on a uint8 batch [B, *E], or,
    for the conditional VAE (model.conditional, ``num_classes`` = K > 0), on the pair
    (uint8 [B, *E], labels int [B]) of `experiment.training_data`."""
    m = config.model
    if m.conditional and num_classes < 1:
        raise ValueError("build: model.conditional=True needs num_classes >= 1 (the "
                         "dataset's; `num_classes_of(config, ds)`)")
    model = VAE(example_shape, latent_dim=m.latent_dim, hidden=tuple(m.hidden),
                arch=m.arch, likelihood=m.likelihood,
                num_classes=num_classes if m.conditional else 0,
                rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, dict(hparams, beta=config.loss.beta))

    def loss_fn(params, batch, key, hp):
        vae = nnx.merge(graphdef, params)
        k_data, k_loss = jax.random.split(key)
        batch, y = batch if m.conditional else (batch, None)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        f = given(vae, y)                    # q(z | x, y), p(x | z, y) when conditional
        if config.loss.objective == "ae":
            return losses.autoencoder_loss(x, encode=f.encode, decode=f.decode,
                                           likelihood=m.likelihood)
        if config.loss.objective == "iwae":
            return losses.iwae_bound(x, k_loss, encode=f.encode, decode=f.decode,
                                     num_samples=config.loss.num_samples,
                                     likelihood=m.likelihood)
        return losses.elbo(x, k_loss, encode=f.encode, decode=f.decode,
                           likelihood=m.likelihood, beta=hp["beta"], kl=config.loss.kl)

    return graphdef, state, tx, lr_schedule, loss_fn


def make_evaluate(config, ds, graphdef):
    """(evaluate, x_test): evaluate(params, seed=config.seed) -> the test metrics of
    results.json (without the "test/" prefix: mean ELBO terms and IW log-likelihood in
    nats, or the AE's log_px) of any parameters of `build`'s model, the untrained ones
    included, on x_test, the fixed view of the test split (eval.num_examples of it). The
    evaluation keys follow ``seed``; one compiled program serves every call.
    evaluate.stacked(params [S, ...], seeds [S]) -> S such dicts, vmapped over the
    settings of a sweep (each as evaluate(params[s], seeds[s]) up to float rounding).

    For the conditional VAE every test image is evaluated with its own label
    (ds.test_labels): the numbers are log p(x | y)'s, and the dict carries
    ``conditional`` = 1.0."""
    m = config.model
    is_ae = config.loss.objective == "ae"
    shape = tuple(ds.example_shape)

    def per_example(params, x, key):                 # x: [b, *E] preprocessed test data
        vae = nnx.merge(graphdef, params)
        y = None
        if m.conditional:        # [b, D + 1]: the image and its label in the last column
            x, y = x[:, :-1].reshape((x.shape[0],) + shape), x[:, -1].astype(jnp.int32)
        f = given(vae, y)
        if is_ae:                                    # no posterior: reconstruction only
            return {"log_px": losses.log_likelihood(x, f.decode(f.encode(x)[0]),
                                                    m.likelihood)}
        k1, k2 = jax.random.split(key)
        t = losses.elbo_terms(x, k1, encode=f.encode, decode=f.decode,
                              likelihood=m.likelihood)
        t["iw_log_likelihood"] = geval.iw_log_likelihood(
            x, k2, encode=f.encode, decode=f.decode, num_samples=config.eval.iw_samples,
            chunk_size=config.eval.iw_chunk, likelihood=m.likelihood)
        return t

    x_test = experiment.fixed_view(ds.test, config.data.preprocess)
    if config.eval.num_examples:
        x_test = x_test[:config.eval.num_examples]
    data = x_test
    if m.conditional:
        # map_dataset batches one array: the label rides in an extra column (small
        # integers are exact in float32) and per_example splits it off again
        y_test = np.asarray(ds.test_labels[:len(x_test)], np.float32)
        data = np.concatenate([x_test.reshape(len(x_test), -1), y_test[:, None]], 1)
    flag = {"conditional": 1.0} if m.conditional else {}

    def evaluate(params, seed=config.seed):
        return {**geval.evaluate_dataset(per_example, data, jax.random.key(seed + 1),
                                         batch_size=config.eval.batch_size, params=params),
                **flag}

    def stacked(params, seeds):         # S settings at once: params [S, ...], S seeds
        keys = jnp.stack([jax.random.key(int(s) + 1) for s in seeds])
        return [{**r, **flag} for r in geval.evaluate_dataset_stacked(
            per_example, data, keys, batch_size=config.eval.batch_size, params=params)]

    evaluate.stacked = stacked
    return evaluate, x_test


def train_and_evaluate(config, workdir: str) -> dict:
    """Trains (or resumes) in ``workdir``, evaluates, writes figures and results.json;
    returns the final metrics."""
    return fit(config, workdir)[0]


def fit(config, workdir: str) -> tuple[dict, VAE]:
    """`train_and_evaluate`, also returning the trained model."""
    validate(config)
    ds = experiment.prepare(config, workdir)
    validate_data(config, ds)
    graphdef, state, tx, lr_schedule, loss_fn = build(config, ds.example_shape,
                                                      num_classes_of(config, ds))
    evaluate_params, x_test = make_evaluate(config, ds, graphdef)

    def evaluate(state):
        return evaluate_params(state.params)

    state, summary = train(state, make_train_step(loss_fn, tx, lr_schedule),
                           experiment.training_data(ds, config.model.conditional),
                           cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=evaluate)
    metrics = {f"test/{k}": v for k, v in evaluate(state).items()}
    vae = nnx.merge(graphdef, state.params)
    metrics.update(report(config, workdir, ds, vae, x_test))
    return experiment.finish(workdir, config, metrics, summary=summary), vae


def report(config, workdir, ds, vae, x_test) -> dict:
    """Figures and the numbers behind the lecture claims (genjax.eval.vae_analysis)."""
    if config.model.conditional:
        return report_conditional(config, workdir, ds, vae, x_test)
    m, p, e = config.model, config.plots, config.eval
    encode_mean = xla.jit(lambda x: vae.encode(x)[0])
    decode_mean = xla.jit(vae.decode_mean)
    viz.figures.samples_figure(os.path.join(workdir, "samples.png"), jax.random.key(0),
                               decode_mean=decode_mean, latent_dim=m.latent_dim,
                               num=p.num_samples)
    viz.figures.reconstructions_figure(os.path.join(workdir, "reconstructions.png"),
                                       x_test[:32], reconstruct=lambda x: decode_mean(
                                           encode_mean(x)))
    n = p.interp_pairs
    out = vae_analysis.interpolations(workdir, x_test[:n], x_test[n:2 * n],
                                      encode_mean=encode_mean, decode_mean=decode_mean,
                                      steps=p.interp_steps)
    if e.fd_samples:                     # claim 1: sample quality of the prior's decodings
        clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                            num_steps=e.classifier_steps)
        real = np.asarray(transforms.to_unit(ds.test[:e.fd_samples]))
        fd, _ = clf.prior_sample_distance(real, jax.random.key(config.seed + 2),
                                          decode_mean=decode_mean, latent_dim=m.latent_dim)
        out.update({"test/frechet_distance": fd,
                    "test/classifier_accuracy": clf.test_accuracy,
                    "test/fd_samples": len(real)})
    if m.latent_dim == 2 and ds.train_labels is not None:                     # claim 2
        out.update(vae_analysis.latent_map(
            workdir, encode_mean=encode_mean, decode_mean=decode_mean,
            x_train=experiment.fixed_view(ds.train, config.data.preprocess),
            y_train=ds.train_labels, x_test=x_test, y_test=ds.test_labels[:len(x_test)],
            grid=p.manifold_grid))
    if config.anomaly.held_out_classes:                                       # claim 4
        full = gdata.load(config.data.name, data_dir=config.data.data_dir or None,
                          seed=config.seed)
        held = experiment.select_classes(full, tuple(config.anomaly.held_out_classes)).test
        view = lambda u8: experiment.fixed_view(u8, config.data.preprocess)  # noqa: E731
        shifted = {k: view(v) for k, v in
                   geval.anomaly.shifted_sets(held, ds.test, seed=config.seed).items()}
        out.update(vae_analysis.anomaly_detection(
            workdir, encode=vae.encode, decode=vae.decode, decode_mean=vae.decode_mean,
            likelihood=m.likelihood, normal=view(ds.test), shifted=shifted,
            key=jax.random.key(config.seed + 3), iw_samples=config.anomaly.iw_samples,
            batch_size=e.batch_size))
    return out


def report_conditional(config, workdir, ds, vae, x_test) -> dict:
    """The conditional VAE's figures and sample-quality numbers (see the module
    docstring); x_test [N, *E] are evaluated with their labels ds.test_labels[:N]."""
    m, p, e = config.model, config.plots, config.eval
    classes = np.unique(ds.train_labels)          # the labels trained (data.classes)
    y_test = np.asarray(ds.test_labels[:len(x_test)], np.int32)
    encode_mean = xla.jit(lambda x, y: vae.encode(x, y)[0])
    decode_mean = xla.jit(vae.decode_mean)
    key = jax.random.key(config.seed + 2)
    vae_analysis.class_samples(os.path.join(workdir, "class_rows.png"), jax.random.key(0),
                               decode_mean=decode_mean, classes=classes,
                               latent_dim=m.latent_dim)
    viz.figures.reconstructions_figure(
        os.path.join(workdir, "reconstructions.png"), x_test[:32],
        reconstruct=lambda x: decode_mean(encode_mean(x, y_test[:32]), y_test[:32]))
    x0, x1, y01 = vae_analysis.same_class_pairs(x_test, y_test, p.interp_pairs)
    out = vae_analysis.interpolations(
        workdir, x0, x1, encode_mean=lambda x: encode_mean(x, y01),
        decode_mean=lambda z: decode_mean(z, y01), steps=p.interp_steps)
    if p.analogy_digits + p.analogy_prior:
        n = p.analogy_digits
        vae_analysis.analogies(os.path.join(workdir, "analogies.png"), x_test[:n],
                               y_test[:n], jax.random.fold_in(key, 1),
                               encode_mean=encode_mean, decode_mean=decode_mean,
                               classes=classes, num_prior=p.analogy_prior,
                               latent_dim=m.latent_dim)
    if e.marginal_iw_samples and config.loss.objective != "ae":
        out.update({f"test/{k}": v for k, v in vae_analysis.label_marginal(
            x_test, y_test, jax.random.fold_in(key, 2), encode=vae.encode,
            decode=vae.decode, classes=classes, num_samples=e.marginal_iw_samples,
            likelihood=m.likelihood, batch_size=e.batch_size).items()})
    if e.fd_samples:
        clf = sample_quality.get_classifier(config.data.name, e.classifier_dir or None,
                                            num_steps=e.classifier_steps)
        real = np.asarray(transforms.to_unit(ds.test))
        q = vae_analysis.conditional_sample_quality(
            clf, key, decode_mean=decode_mean, classes=classes, latent_dim=m.latent_dim,
            num=e.fd_samples, real=real, real_labels=ds.test_labels,
            num_classes=ds.num_classes)
        n_analogy = min(len(x_test), 100)
        q["analogy_accuracy"] = vae_analysis.analogy_accuracy(
            clf, x_test[:n_analogy], y_test[:n_analogy], encode_mean=encode_mean,
            decode_mean=decode_mean, classes=classes)
        out.update({f"test/{k}": v for k, v in q.items()})
        out.update({"test/frechet_distance": q["fd"],
                    "test/classifier_accuracy": clf.test_accuracy,
                    "test/fd_samples": e.fd_samples})
    if m.latent_dim == 2:
        out.update(vae_analysis.conditional_latent_map(
            workdir, encode_mean=encode_mean, decode_mean=decode_mean,
            x_train=experiment.fixed_view(ds.train, config.data.preprocess),
            y_train=ds.train_labels, x_test=x_test, y_test=y_test, classes=classes,
            grid=min(p.manifold_grid, 10)))
    return out


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep (`genjax.train.sweep`): the data, the step of
    ``config`` and, per setting, `build`'s state and `make_evaluate`'s test metrics."""
    ds = experiment.prepare(config, workdir)
    validate_data(config, ds)
    k = num_classes_of(config, ds)
    graphdef, _, tx, lr_schedule, loss_fn = build(config, ds.example_shape, k)

    ev, _ = make_evaluate(config, ds, graphdef)       # settings differ in dynamic fields only

    def evaluate(setting_config, params):
        return {f"test/{k}": v for k, v in ev(params, seed=setting_config.seed).items()}

    def evaluate_stacked(setting_configs, params):
        return [{f"test/{k}": v for k, v in m.items()}
                for m in ev.stacked(params, [c.seed for c in setting_configs])]

    return Program(init=lambda c: build(c, ds.example_shape, k)[1],
                   step_fn=make_train_step(loss_fn, tx, lr_schedule),
                   train_data=experiment.training_data(ds, config.model.conditional),
                   evaluate=evaluate, evaluate_stacked=evaluate_stacked)


# The seed and the optimiser's lr / weight_decay and loss.beta live in TrainState.hparams
# (or the init and keys): a sweep over them is one program; any other field is static.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields("loss.beta"), validate=validate,
                   prepare=prepare_sweep_program)


def sweep(config, workdir: str, axes, *, samples: int = 0, sweep_seed: int = 0,
          chunk: int = 0) -> dict:
    """The ``--sweep`` entry point: `genjax.train.sweep.run_sweep` with the VAE's parts."""
    parts = SWEEP
    if config.loss.objective == "ae":         # no posterior, no IW estimate: rank by log_px
        parts = dataclasses.replace(SWEEP, main_metric=("test/log_px", "max"))
    return run_sweep(config, workdir, axes, parts=parts, samples=samples,
                     sweep_seed=sweep_seed, chunk=chunk)


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="vae",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "vae.py"),
            description="VAE")
