"""Train and evaluate a VAE.

    python -m experiments.vae --config=configs/vae.py[:quick|conv|iwae|mnist]
        [--workdir=runs/vae/default] [--config.loss.beta=4 ...]

Writes into the workdir: checkpoints/, tensorboard/, metrics.jsonl, samples.png,
reconstructions.png, interpolation.png, config.json and results.json (test ELBO and the
importance-weighted log-likelihood, in nats).
"""

from __future__ import annotations

import os

import jax
from absl import flags
from flax import nnx
from ml_collections import config_flags

from genjax import eval as geval
from genjax import losses, viz
from genjax.data import transforms
from genjax.models.vae import ARCHITECTURES, VAE
from genjax.train import cli, config as cfglib, experiment, init_state, make_optimizer
from genjax.train import make_train_step, train

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(__file__), "..", "configs", "vae.py"),
    "VAE config file, optionally with :preset.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output folder (default runs/vae/<preset>).")


def validate(config):
    cfglib.one_of(config, "model.arch", ARCHITECTURES)
    cfglib.one_of(config, "model.likelihood", losses.vae.LIKELIHOODS)
    cfglib.one_of(config, "loss.objective", ("elbo", "iwae"))
    cfglib.one_of(config, "loss.kl", losses.vae.KL_ESTIMATORS)
    cfglib.positive(config, "model.latent_dim")
    cfglib.positive(config, "loss.beta", allow_zero=True)
    cfglib.positive(config, "loss.num_samples")
    cfglib.positive(config, "eval.iw_samples")
    cfglib.require(config.eval.iw_samples % config.eval.iw_chunk == 0, "eval.iw_chunk",
                   config.eval.iw_chunk, "a divisor of eval.iw_samples")
    cfglib.require(config.model.likelihood != "bernoulli"
                   or config.data.preprocess in ("dynamic_binarize", "unit", "dequantize"),
                   "data.preprocess", config.data.preprocess,
                   "values in [0, 1] for the Bernoulli decoder")


def build(config, example_shape):
    """The model, optimiser and training loss of ``config`` (shared with
    benchmarks/vae_throughput.py). Returns (graphdef, state, tx, lr_schedule, loss_fn) with
    loss_fn(params, batch, key, hparams) -> (loss, metrics) on a uint8 batch."""
    m = config.model
    model = VAE(example_shape, latent_dim=m.latent_dim, hidden=tuple(m.hidden),
                arch=m.arch, likelihood=m.likelihood, rngs=nnx.Rngs(config.seed))
    graphdef, params = nnx.split(model)
    tx, hparams, lr_schedule = make_optimizer(config.optim, config.train.num_steps)
    state = init_state(params, tx, dict(hparams, beta=config.loss.beta))

    def loss_fn(params, batch, key, hp):
        vae = nnx.merge(graphdef, params)
        k_data, k_loss = jax.random.split(key)
        x = transforms.preprocess(k_data, batch, config.data.preprocess)
        if config.loss.objective == "iwae":
            return losses.iwae_bound(x, k_loss, encode=vae.encode, decode=vae.decode,
                                     num_samples=config.loss.num_samples,
                                     likelihood=m.likelihood)
        return losses.elbo(x, k_loss, encode=vae.encode, decode=vae.decode,
                           likelihood=m.likelihood, beta=hp["beta"], kl=config.loss.kl)

    return graphdef, state, tx, lr_schedule, loss_fn


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ds = experiment.prepare(config, workdir)
    m = config.model
    graphdef, state, tx, lr_schedule, loss_fn = build(config, ds.example_shape)

    def per_example(params, x, key):                 # x: [b, *E] preprocessed test data
        vae = nnx.merge(graphdef, params)
        k1, k2 = jax.random.split(key)
        t = losses.elbo_terms(x, k1, encode=vae.encode, decode=vae.decode,
                              likelihood=m.likelihood)
        t["iw_log_likelihood"] = geval.iw_log_likelihood(
            x, k2, encode=vae.encode, decode=vae.decode, num_samples=config.eval.iw_samples,
            chunk_size=config.eval.iw_chunk, likelihood=m.likelihood)
        return t

    x_test = experiment.fixed_view(ds.test, config.data.preprocess)
    if config.eval.num_examples:
        x_test = x_test[:config.eval.num_examples]

    def evaluate(state):
        return geval.evaluate_dataset(lambda x, k: per_example(state.params, x, k), x_test,
                                      jax.random.key(config.seed + 1),
                                      batch_size=config.eval.batch_size)

    state, summary = train(state, make_train_step(loss_fn, tx, lr_schedule), ds.train,
                           cfg=config.train, seed=config.seed, workdir=workdir,
                           eval_fn=evaluate)
    metrics = {f"test/{k}": v for k, v in evaluate(state).items()}

    vae = nnx.merge(graphdef, state.params)
    p = config.plots
    viz.figures.samples_figure(os.path.join(workdir, "samples.png"), jax.random.key(0),
                               decode_mean=vae.decode_mean, latent_dim=m.latent_dim,
                               num=p.num_samples)
    viz.figures.reconstructions_figure(
        os.path.join(workdir, "reconstructions.png"), x_test[:32],
        reconstruct=lambda x: vae.decode_mean(vae.encode(x)[0]))
    n = p.interp_pairs
    viz.figures.interpolation_figure(
        os.path.join(workdir, "interpolation.png"), x_test[:n], x_test[n:2 * n],
        encode_mean=lambda x: vae.encode(x)[0], decode_mean=vae.decode_mean,
        steps=p.interp_steps)
    return experiment.finish(workdir, config, metrics, summary=summary)


if __name__ == "__main__":
    cli.run(train_and_evaluate, experiment="vae", config_flag=_CONFIG, workdir_flag=_WORKDIR)
