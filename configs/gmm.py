"""Mixture-model config (Gaussian mixtures and mixtures of Bernoullis). Presets
(``--config=configs/gmm.py:NAME``):

  (default)  8-component full-covariance Gaussian mixture on eight_gaussians (2-D), EM,
             16 restarts vmapped; figure density.png (contours and samples)
  moons      16 components on two_moons
  gradient   the default, fitted by gradient-based maximum likelihood (Adam on the
             unconstrained parameters, 16 restarts in one program) instead of EM
  digits     mixture of Bernoullis on binarised sklearn digits (8x8); figure means.png
  mnist5k    200-component mixture of Bernoullis on binarised mnist5k; test NLL in nats
             on the fixed binarisation of the test split, as in the VAE's numbers
  quick      a few seconds, for smoke tests (2-D)

Fields: model.family "gaussian" | "bernoulli"; fit.method "em" | "gradient";
fit.init "kmeans++" | "random"; fit.tol is the EM stopping threshold on the change of the
mean log-likelihood (nats per example, as scikit-learn's tol); fit.reg_covar is added to
every covariance's diagonal; fit.prior_count is the Bernoulli M-step's Beta pseudo-count.
For images, data.binarizations fixed binarisations of the training split are stacked
(more draws approximate dynamic binarisation; 1 = static binarisation).
"""

import ml_collections

from configs import common


def _quick(c):
    c.fit.update(restarts=4, max_iter=100)
    c.train.update(num_steps=100, steps_per_dispatch=50, checkpoint_every=100)
    c.plots.update(grid=60, num_samples=500)


def _moons(c):
    c.data.name = "two_moons"
    c.model.num_components = 16


def _gradient(c):
    c.fit.method = "gradient"


def _images(c, name, k):
    c.data.update(name=name, preprocess="dynamic_binarize")
    c.model.update(family="bernoulli", num_components=k)
    c.fit.update(restarts=4, max_iter=200, prior_count=0.5)


PRESETS = {"quick": _quick, "moons": _moons, "gradient": _gradient,
           "digits": lambda c: _images(c, "digits", 50),
           "mnist5k": lambda c: _images(c, "mnist5k", 200)}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/gmm.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(name="eight_gaussians", preprocess="none")
    c.data.binarizations = 8
    c.model = ml_collections.ConfigDict(dict(family="gaussian", num_components=8,
                                             covariance_type="full"))
    c.fit = ml_collections.ConfigDict(dict(method="em", init="kmeans++", restarts=16,
                                           tol=1e-3, max_iter=500, reg_covar=1e-6,
                                           prior_count=0.5))
    # fit.method="gradient" only: Adam on minibatches through genjax.train
    c.optim = common.optim(lr=2e-2)
    c.train = common.train(num_steps=3000, batch_size=1000, steps_per_dispatch=500,
                           checkpoint_every=3000)
    c.plots = ml_collections.ConfigDict(dict(grid=200, num_samples=5000))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
