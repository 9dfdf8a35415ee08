"""Claim 1 of the lectures: an autoencoder is not a generative model, a VAE is.

    python -m experiments.ae_vs_vae --config=configs/vae.py[:PRESET]
        [--workdir=runs/ae_vs_vae/PRESET] [--config.train.num_steps=...]

Trains (or resumes) the config as given, a VAE, in ``<workdir>/vae`` and the same network
and optimiser as a deterministic autoencoder (``loss.objective="ae"``: reconstruction of
the posterior mean only, no KL) in ``<workdir>/ae``; each writes its own outputs there, as
``experiments.vae`` does. Then decodes the same N(0, I) draws through both decoders:

* ``<workdir>/ae_vs_vae.png``: the two grids of prior samples side by side;
* ``<workdir>/results.json``: both models' classifier Fréchet distance of prior samples
  (lower is better; `genjax.eval.sample_quality`), the classifier's test accuracy, both
  test reconstruction log-likelihoods and the VAE's importance-weighted log-likelihood.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from experiments import vae as vae_experiment
from genjax import viz
from genjax.train import cli, config as cfglib, experiment
from genjax.train.writers import log

KEEP = ("test/frechet_distance", "test/log_px", "test/iw_log_likelihood", "test/elbo")


def validate(config):
    """The VAE's checks, for the config and for the autoencoder made from it, before
    either is trained."""
    cfglib.require(config.loss.objective in ("elbo", "iwae"), "loss.objective",
                   config.loss.objective,
                   "a VAE objective ('elbo' or 'iwae'); the autoencoder is trained beside it")
    vae_experiment.validate(config)


def train_and_evaluate(config, workdir: str) -> dict:
    validate(config)
    ae_config = config.copy_and_resolve_references()
    ae_config.unlock()
    ae_config.loss.objective = "ae"
    ae_config.lock()
    vae_experiment.validate(ae_config)
    models, metrics = {}, {}
    for name, cfg in (("vae", config), ("ae", ae_config)):
        log(f"--- {name}: {os.path.join(workdir, name)}")
        m, models[name] = vae_experiment.fit(cfg, os.path.join(workdir, name))
        metrics.update({f"{name}/{k.split('/', 1)[1]}": v for k, v in m.items() if k in KEEP})
        if "test/classifier_accuracy" in m:
            metrics["classifier_accuracy"] = m["test/classifier_accuracy"]
            metrics["fd_samples"] = m["test/fd_samples"]

    z = jax.random.normal(jax.random.key(config.seed + 2), (64, config.model.latent_dim))
    # a conditional pair (model.conditional) decodes the labels 0, 1, ..., K-1, 0, ...
    y = (np.arange(64) % models["vae"].num_classes).astype(np.int32) \
        if config.model.conditional else None
    panels = {}
    for name, title in (("ae", "autoencoder"), ("vae", "VAE")):
        fd = metrics.get(f"{name}/frechet_distance")
        panels[title + (f": FD {fd:.1f}" if fd is not None else "")] = np.asarray(
            jax.jit(models[name].decode_mean)(z, y))
    viz.figures.side_by_side_figure(
        os.path.join(workdir, "ae_vs_vae.png"), panels,
        suptitle="the same z ~ N(0, I) through each decoder")
    return experiment.finish(workdir, config, metrics)


if __name__ == "__main__":
    cli.run(train_and_evaluate, experiment="ae_vs_vae",
            config_file=os.path.join(os.path.dirname(__file__), "..", "configs", "vae.py"),
            description="VAE (the autoencoder uses the same config)")
