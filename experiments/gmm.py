"""Fit and evaluate a mixture model: a Gaussian mixture (EM or gradient-based maximum
likelihood) on 2-D points, or a mixture of Bernoullis (EM) on binarised digits.

    python -m experiments.gmm --config=configs/gmm.py[:quick|moons|gradient|digits|mnist5k]
        [--workdir=runs/gmm/default] [--config.model.num_components=10 ...]

Writes into the workdir: config.json, results.json (train and test log-likelihood in nats
per example, the restarts' spread, iterations), params.npz, and a figure: density.png for
2-D data (data, density contours, samples) or means.png and samples.png for images
(component means sorted by weight, and draws of the generative process). The gradient
method also writes the training loop's checkpoints/, tensorboard/ and metrics.jsonl.

    python -m experiments.gmm --config=configs/gmm.py:gradient \\
        --sweep=optim.lr=1e-2,3e-2 --sweep=seed=0,1

sweeps the gradient method (`genjax.train.sweep`): settings that differ in optim.lr /
weight_decay share one compiled program; the seed does too, except on the 2-D toy
densities, whose points are drawn with the seed (one program per seed there). Each
setting writes <setting>/results.json (no params.npz or figure), ranked by
test/log_likelihood. EM configs cannot be swept.
"""

from __future__ import annotations

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from genjax import viz
from genjax.data import transforms
from genjax.models import bernoulli_mixture as bm
from genjax.models import gmm
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, sweep_spec, train
from genjax.train.distributed import is_main_process
from genjax.train.sweep import Program, SweepParts, run_sweep
from genjax.train.writers import log
from genjax.viz import density


FAMILIES = ("gaussian", "bernoulli")
METHODS = ("em", "gradient")


def validate(config):
    """Every field of the model, fit and plots sections and data.binarizations (the
    shared ones: `cfglib.validate_common`), before anything is fitted or compiled."""
    cfglib.one_of(config, "model.family", FAMILIES)
    cfglib.one_of(config, "model.covariance_type", gmm.COVARIANCE_TYPES)
    cfglib.one_of(config, "fit.method", METHODS)
    cfglib.one_of(config, "fit.init", gmm.INITS)
    for f in ("model.num_components", "fit.restarts", "fit.max_iter", "data.binarizations",
              "plots.num_samples"):
        cfglib.integer(config, f)
    cfglib.integer(config, "plots.grid", minimum=2)
    cfglib.positive(config, "fit.tol")
    cfglib.positive(config, "fit.reg_covar", allow_zero=True)
    cfglib.positive(config, "fit.prior_count", allow_zero=True)
    cfglib.require(config.model.family == "gaussian" or config.fit.method == "em",
                   "fit.method", config.fit.method, "'em' for the mixture of Bernoullis")
    cfglib.require(config.model.family == "gaussian"
                   or config.data.preprocess == "dynamic_binarize", "data.preprocess",
                   config.data.preprocess, "'dynamic_binarize' for the mixture of Bernoullis")
    cfglib.require(config.fit.method == "em" or config.optim.grad_clip == 0,
                   "optim.grad_clip", config.optim.grad_clip,
                   "0 (a global-norm clip would couple the restarts trained together)")


def validate_data(config, ds):
    """Checks that need the dataset (after `experiment.prepare`, before anything is
    fitted): points need preprocess 'none', and there are enough training examples."""
    if ds.kind == "points":
        cfglib.require(config.data.preprocess == "none", "data.preprocess",
                       config.data.preprocess, "'none' for 2-D points")
    cfglib.require(config.model.num_components <= len(ds.train), "model.num_components",
                   config.model.num_components,
                   f"at most the {len(ds.train)} training examples of {config.data.name!r}")


def load_arrays(config, ds):
    """(x_train [N, D], x_test [M, D]) float32 for the model. Points as they are; images
    flattened: binarised ``data.binarizations`` times (fixed seeds 1, 2, ...) and stacked
    for the Bernoulli mixture, the test split binarised once (seed 0, `fixed_view`, the
    VAE's protocol); other preprocess modes through `fixed_view`."""
    if ds.kind == "points":
        cfglib.require(config.data.preprocess == "none", "data.preprocess",
                       config.data.preprocess, "'none' for 2-D points")
        return np.asarray(ds.train, np.float32), np.asarray(ds.test, np.float32)
    flat = lambda a: np.asarray(a, np.float32).reshape(len(a), -1)
    mode = config.data.preprocess
    x_test = flat(experiment.fixed_view(ds.test, mode))
    if mode == "dynamic_binarize":
        x_train = np.concatenate([
            flat(transforms.to_unit(transforms.binarize_static(ds.train, seed=1 + i)))
            for i in range(config.data.binarizations)])
    else:
        x_train = flat(experiment.fixed_view(ds.train, mode, seed=1))
    return x_train, x_test


def initial_params(config, x_train):
    """The fit.restarts starting mixtures (a leading [restarts] axis), i.e. the untrained
    models: ``fit.init`` centres (k-means++ or random training points), every point
    assigned to its nearest centre, one M-step; from the keys split off config.seed
    that `gmm.fit_em` / `bm.fit_em` use, so EM and the gradient method start here.
    One compiled program with the seed as an argument: a sweep's settings share it."""
    m, f = config.model, config.fit
    return _initial_params(jnp.asarray(config.seed, jnp.int32), jnp.asarray(x_train),
                           family=m.family, num_components=m.num_components, init=f.init,
                           covariance_type=m.covariance_type, reg_covar=f.reg_covar,
                           prior_count=f.prior_count, restarts=f.restarts)


@functools.partial(jax.jit, static_argnames=("family", "num_components", "init",
                                             "covariance_type", "reg_covar", "prior_count",
                                             "restarts"))
def _initial_params(seed, x, *, family, num_components, init, covariance_type, reg_covar,
                    prior_count, restarts):
    keys = jax.random.split(jax.random.key(seed), restarts)
    if family == "bernoulli":
        return jax.vmap(lambda k: bm.init_params(k, x, num_components, method=init,
                                                 prior_count=prior_count))(keys)
    return jax.vmap(lambda k: gmm.init_params(k, x, num_components, method=init,
                                              covariance_type=covariance_type,
                                              reg_covar=reg_covar))(keys)


def fit_em(config, x_train):
    m, f = config.model, config.fit
    key = jax.random.key(config.seed)
    if m.family == "bernoulli":
        return bm.fit_em(key, x_train, m.num_components, init=f.init, restarts=f.restarts,
                         tol=f.tol, max_iter=f.max_iter, prior_count=f.prior_count)
    return gmm.fit_em(key, x_train, m.num_components, covariance_type=m.covariance_type,
                      init=f.init, restarts=f.restarts, tol=f.tol, max_iter=f.max_iter,
                      reg_covar=f.reg_covar)


def gradient_setup(config, x_train):
    """The gradient method's initial TrainState: the unconstrained parameters of the
    ``fit.restarts`` `initial_params` (from config.seed) with a leading [restarts] axis,
    and the optimiser's state and hparams (config.optim)."""
    u = _to_unconstrained(initial_params(config, x_train),
                          covariance_type=config.model.covariance_type)
    tx, hparams, _ = make_optimizer(config.optim, config.train.num_steps)
    return init_state(u, tx, hparams)


@functools.partial(jax.jit, static_argnames="covariance_type")
def _to_unconstrained(params, *, covariance_type):
    return jax.vmap(lambda p: gmm.to_unconstrained(p, covariance_type=covariance_type))(
        params)


def gradient_step(config):
    """The gradient method's step(state, batch, key): Adam on the minibatch MLE loss of
    every restart (`gmm.make_mle_loss`)."""
    tx, _, schedule = make_optimizer(config.optim, config.train.num_steps)
    return make_train_step(gmm.make_mle_loss(config.model.covariance_type), tx, schedule)


def gradient_results(config, u, x_train):
    """The trained restarts' record from their unconstrained parameters u [restarts, ...]:
    (best EMResult-like record by mean training log-likelihood, all restarts). One
    compiled program with both as arguments: every setting of a sweep reuses it."""
    return _gradient_results(u, jnp.asarray(x_train),
                             covariance_type=config.model.covariance_type,
                             num_steps=config.train.num_steps)


@functools.partial(jax.jit, static_argnames=("covariance_type", "num_steps"))
def _gradient_results(u, x, *, covariance_type, num_steps):
    ct = covariance_type
    params = jax.vmap(lambda v: gmm.from_unconstrained(v, covariance_type=ct))(u)
    ll = jax.vmap(lambda v: jnp.mean(gmm.unconstrained_log_likelihood(
        x, v, covariance_type=ct)))(u)
    r = ll.shape[0]
    results = gmm.EMResult(params, ll, ll, jnp.full((r,), num_steps, jnp.int32),
                           jnp.ones((r,), bool))
    return gmm.best_of(results)[0], results


def fit_gradient(config, x_train, workdir):
    """Adam on the unconstrained parameters of ``fit.restarts`` mixtures at once, through
    genjax.train (minibatches, checkpoints, resuming), from the same initialisation as EM.
    Returns (best EMResult-like record, all restarts, the loop's summary)."""
    state, summary = train(gradient_setup(config, x_train), gradient_step(config), x_train,
                           cfg=config.train, seed=config.seed, workdir=workdir)
    best, results = gradient_results(config, state.params, x_train)
    gmm.check_fit(best, fix="lower --config.optim.lr")
    return best, results, summary


@functools.partial(jax.jit, static_argnames=("family", "covariance_type"))
def _mean_log_likelihood(x, params, *, family, covariance_type):
    if family == "bernoulli":
        return jnp.mean(bm.log_likelihood(x, params))
    return jnp.mean(gmm.log_likelihood(x, params, covariance_type=covariance_type))


def _log_prob_fn(config):
    if config.model.family == "bernoulli":
        return lambda x, p: bm.log_likelihood(x, p)
    return lambda x, p: gmm.log_likelihood(x, p, covariance_type=config.model.covariance_type)


def _sample(config, key, params, num):
    if config.model.family == "bernoulli":
        return bm.sample(key, params, num)[0]
    return gmm.sample(key, params, num, covariance_type=config.model.covariance_type)[0]


def write_figures(config, workdir, ds, params, x_train):
    p = config.plots
    samples = np.asarray(_sample(config, jax.random.key(config.seed + 2), params,
                                 p.num_samples if ds.kind == "points" else 64))
    if ds.kind == "points":
        if ds.example_shape != (2,):         # density.png draws 2-D points only
            return
        log_prob = jax.jit(lambda pts: _log_prob_fn(config)(pts, params))
        density.density_figure(
            os.path.join(workdir, "density.png"), log_prob=log_prob, data=x_train,
            samples=samples, means=params.means, size=p.grid,
            title=f"{config.model.num_components}-component Gaussian mixture "
                  f"({config.model.covariance_type}) on {config.data.name}")
        return
    shape = ds.example_shape
    order = np.argsort(-np.asarray(params.weights))
    means = (jax.nn.sigmoid(params.logits) if config.model.family == "bernoulli"
             else params.means)
    means = np.asarray(means)[order].reshape((-1,) + shape)
    lo, hi = means.min(), means.max()
    if lo < 0 or hi > 1:                     # Gaussian means of e.g. symmetric data
        means = (means - lo) / max(hi - lo, 1e-12)
    scale = max(2, 56 // shape[0])           # 8x8 digits drawn 7x larger
    viz.save_image_grid(os.path.join(workdir, "means.png"), means, scale=scale)
    viz.save_image_grid(os.path.join(workdir, "samples.png"),
                        np.clip(samples, 0, 1).reshape((-1,) + shape), scale=scale)


def fit_metrics(config, best, results, x_test, *, kind: str) -> dict:
    """The reported numbers of a fit: the best restart's train and test log-likelihood
    (nats per example), test/nll, the restarts' spread, iterations, and test/bits_per_dim
    for dequantised images (``kind``: the dataset's, "points" or "image")."""
    test_ll = float(_mean_log_likelihood(jnp.asarray(x_test), best.params,
                                         family=config.model.family,
                                         covariance_type=config.model.covariance_type))
    lls = np.asarray(results.log_likelihood)
    metrics = {
        "train/log_likelihood": float(best.log_likelihood),
        "test/log_likelihood": test_ll,
        "test/nll": -test_ll,
        "fit/n_iter": int(best.n_iter),
        "fit/converged": float(best.converged),
        "fit/restart_log_likelihood_min": float(np.nanmin(lls)),
        "fit/restart_log_likelihood_max": float(np.nanmax(lls)),
    }
    if kind == "image" and config.data.preprocess == "dequantize":
        d = x_test.shape[1]
        metrics["test/bits_per_dim"] = -(test_ll - d * math.log(256)) / (d * math.log(2))
    return metrics


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ds = experiment.prepare(config, workdir, kinds=("points", "image"))
    validate_data(config, ds)
    x_train, x_test = load_arrays(config, ds)
    t = time.perf_counter()
    summary = {}
    try:
        if config.fit.method == "em":
            best, results = fit_em(config, x_train)
        else:
            best, results, summary = fit_gradient(config, x_train, workdir)
    except FloatingPointError as e:
        raise cfglib.ConfigError(f"{e} (--config.fit.reg_covar / --config.fit.prior_count "
                                 "/ --config.model.num_components)") from None
    fit_s = time.perf_counter() - t
    params = best.params
    metrics = fit_metrics(config, best, results, x_test, kind=ds.kind)
    metrics["fit/seconds"] = fit_s
    log(f"fit {config.model.family} mixture, K={config.model.num_components}, "
        f"{config.fit.method} x{config.fit.restarts} restarts in {fit_s:.1f}s")
    if is_main_process():
        np.savez(os.path.join(workdir, "params.npz"),
                 **{k: np.asarray(v) for k, v in params._asdict().items()})
    write_figures(config, workdir, ds, params, x_train)
    return experiment.finish(workdir, config, metrics, summary=summary)


def validate_sweep(config):
    """`validate`, and the gradient method: EM has no training loop to vmap."""
    validate(config)
    cfglib.require(config.fit.method == "gradient", "fit.method", config.fit.method,
                   "'gradient' (sweeps need the gradient method; EM has no training loop "
                   "to vmap)")


def prepare_sweep_program(config, workdir: str) -> Program:
    """One compiled program of a sweep of the gradient method (`genjax.train.sweep`): the
    data, the MLE step of ``config`` and, per setting, `gradient_setup`'s state (its seed's
    `initial_params`, as in its single run) and `fit_metrics` of its best restart."""
    ds = experiment.prepare(config, workdir, kinds=("points", "image"))
    validate_data(config, ds)
    x_train, x_test = load_arrays(config, ds)
    x = jnp.asarray(x_train)

    def evaluate(setting_config, u):        # settings differ in dynamic fields only
        best, results = gradient_results(config, u, x)
        metrics = fit_metrics(setting_config, best, results, x_test, kind=ds.kind)
        for k in ("fit/n_iter", "fit/converged"):   # train.num_steps and 1: no news
            metrics.pop(k)
        return metrics

    return Program(init=lambda c: gradient_setup(c, x_train),
                   step_fn=gradient_step(config), train_data=x_train,
                   evaluate=evaluate)


# The seed (initial mixtures, minibatch order) and the optimiser's lr / weight_decay /
# grad_clip live in TrainState.hparams or the init: one program (validate keeps grad_clip
# at 0, which leaves the restarts independent). Every other field is static. On the 2-D
# toy densities the data follow the seed, so run_sweep gives each seed its own program.
SWEEP = SweepParts(dynamic=sweep_spec.dynamic_fields(), validate=validate_sweep,
                   prepare=prepare_sweep_program, main_metric=("test/log_likelihood", "max"))


def sweep(config, workdir: str, axes, *, samples: int = 0, sweep_seed: int = 0,
          **options) -> dict:
    """The ``--sweep`` entry point: `genjax.train.sweep.run_sweep` with the gradient
    method's parts. A sweep of an EM config is a ConfigError (one line, before anything
    runs) unless fit.method itself is swept (each setting is then validated). ``options``
    (e.g. the cli's further sweep flags) go to run_sweep as they are."""
    swept = {sweep_spec.parse_axis(t).field for t in axes}
    if config.fit.method != "gradient" and "fit.method" not in swept:
        raise cfglib.ConfigError(
            f"sweeps need the gradient method, but --config.fit.method="
            f"{config.fit.method!r}: add --config.fit.method=gradient (or use "
            "--config=configs/gmm.py:gradient); EM has no training loop to vmap")
    return run_sweep(config, workdir, axes, parts=SWEEP, samples=samples,
                     sweep_seed=sweep_seed, **options)


if __name__ == "__main__":
    cli.run(train_and_evaluate, sweep=sweep, experiment="gmm",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "gmm.py"),
            description="Mixture-model")
