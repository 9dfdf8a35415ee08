"""Autoregressive-model config (FVBN, NADE, MADE, RNADE). Presets
(``--config=configs/nade.py:NAME``):

  (default)  NADE with 500 hidden units on dynamically binarised mnist5k
  fvbn       the fully visible sigmoid belief network (a logistic regression per pixel);
             --config.model.context=k for the AR(k) truncation
  made       MADE, one hidden layer of 500 ReLUs, the natural (row-major) ordering
  made_ensemble  MADE trained order-agnostically over 8 random orderings; the test
             log-likelihood is that of the uniform mixture of the 8 (exact)
  rnade      RNADE (10 Gaussians per conditional) on the 2-D two_moons density
  rnade_digits  RNADE on uniformly dequantised 8x8 sklearn digits (bits/dim)
  quick      a small NADE for a few seconds (smoke tests); combine with
             --config.model.name=fvbn|made|rnade
  cnade      the class-conditional NADE p(x | y) (default's size and schedule): exact
             log p(x | y) and log p(x) = log sum_y p(y) p(x | y), 1,000 class-conditional
             samples (100 per class) scored with the shared classifier
  cmade      the class-conditional MADE (:made's size and schedule)
  cquick     a small conditional NADE for tests (seconds); --config.model.name=made too

Fields: model.name "nade" | "fvbn" | "made" | "rnade"; model.hidden: the hidden layer
sizes (one entry for NADE / RNADE, one or more for MADE); model.context: FVBN's AR(k)
truncation (0 = every previous pixel); model.ordering "natural" | "reverse" | "random"
and model.num_masks (MADE; training draws one mask per step); model.components
(RNADE's Gaussians per dimension); model.init_bias_from_data: start the output biases
at the training data's marginals. Every reported log-likelihood is exact. model.context is
FVBN's only and model.num_masks MADE's only (0 and 1 for the other models).
model.conditional: the class-conditional NADE or MADE (the label as an extra input of
every conditional; a labelled image dataset).

eval.completion_rows: the top rows given to the completion figure and to
test/completion_log_likelihood, log p(the other rows | top rows) of the true test images
(exact in the natural raster order: FVBN, NADE, MADE with model.ordering='natural' and
one mask; 0 = skip, and 0 for RNADE). eval.cond_samples: the conditional models'
class-conditional samples scored with the shared classifier (eval.classifier_steps /
eval.classifier_dir, as the VAE's), cond_samples / K per class (0 = skip).
"""

import ml_collections

from configs import common


def _quick(c):
    c.model.hidden = (32,)
    c.optim.update(lr=3e-3, schedule="constant")
    c.train.update(num_steps=200, batch_size=64, steps_per_dispatch=50, checkpoint_every=100)
    c.eval.update(num_examples=200, train_examples=200, completion_rows=0)
    c.plots.update(num_samples=16, grid=40)


def _fvbn(c):
    c.model.name = "fvbn"
    c.optim.lr = 1e-2
    c.train.update(num_steps=10_000, checkpoint_every=2000)


def _made(c):
    c.model.name = "made"
    c.train.update(num_steps=20_000, checkpoint_every=4000, eval_every=2000)


def _made_ensemble(c):
    _made(c)
    c.model.update(ordering="random", num_masks=8)
    c.train.update(num_steps=10_000, checkpoint_every=2000, eval_every=2000)
    c.eval.completion_rows = 0            # random orderings: the top rows are not first


def _cnade(c):
    c.model.conditional = True


def _cmade(c):
    _made(c)
    c.model.conditional = True


def _cquick(c):
    _quick(c)
    c.model.conditional = True
    c.train.update(num_steps=300, checkpoint_every=150)
    c.eval.update(completion_rows=14, cond_samples=200, classifier_steps=300)


def _rnade(c):
    c.data.update(name="two_moons", preprocess="none")
    c.model.update(name="rnade", hidden=(64,), components=10)
    c.optim.lr = 3e-3
    c.train.update(num_steps=5000, batch_size=256, steps_per_dispatch=500,
                   checkpoint_every=2500)
    c.eval.completion_rows = 0
    c.plots.num_samples = 5000


def _rnade_digits(c):
    c.data.update(name="digits", preprocess="dequantize")
    c.model.update(name="rnade", hidden=(256,), components=10)
    c.train.update(num_steps=5000, batch_size=128, checkpoint_every=2500)
    c.eval.completion_rows = 0


PRESETS = {"quick": _quick, "fvbn": _fvbn, "made": _made, "made_ensemble": _made_ensemble,
           "rnade": _rnade, "rnade_digits": _rnade_digits, "cnade": _cnade, "cmade": _cmade,
           "cquick": _cquick}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/nade.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data()                  # mnist5k, dynamic binarisation
    c.model = ml_collections.ConfigDict(dict(
        name="nade", hidden=(500,), context=0, ordering="natural", num_masks=1,
        components=10, init_bias_from_data=True, conditional=False))
    c.optim = common.optim(lr=1e-3, schedule="cosine")
    c.train = common.train(num_steps=5000, batch_size=128, steps_per_dispatch=100,
                           checkpoint_every=1000)
    # num_examples: test examples evaluated (0 = all); train_examples: training examples
    # (one fixed binarisation, seed 1) whose log-likelihood is also reported (0 = skip);
    # completion_rows: the top rows given to the completion figure and
    # metric (0 = skip); cond_samples: conditional models' class-conditional samples
    # scored by the shared classifier, trained for classifier_steps and kept in
    # classifier_dir ("" = runs/classifier/<data>_<steps>)
    c.eval = ml_collections.ConfigDict(dict(batch_size=250, num_examples=0,
                                            train_examples=1000, completion_rows=14,
                                            cond_samples=1000, classifier_dir="",
                                            classifier_steps=3000))
    # num_samples: ancestral samples in samples.png (images) or density.png (points);
    # grid: density.png's resolution (points)
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, grid=200))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
