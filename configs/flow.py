"""Normalizing-flow config (RealNVP, Glow, MAF, IAF; affine or spline transformers).
Presets (``--config=configs/flow.py:NAME``):

  (default)  multi-scale RealNVP (2 levels, conv couplings) on uniformly dequantised 8x8
             sklearn digits: test bits/dim on the 8-bit scale
  glow       Glow (actnorm, invertible 1x1 conv, affine coupling; 2 levels) on the digits
  maf        MAF (5 layers, MADE 128-128) on the digits as 64-D vectors
  nsf        RealNVP's multi-scale flow with rational-quadratic spline couplings (the
             coupling RQ-NSF) on the digits
  mnist5k    Glow (2 levels, 4 steps each, 64 channels) on dequantised mnist5k (28x28)
  moons      RealNVP with MLP couplings (8 layers) on the 2-D two_moons toy: density
             contours against the true density
  spline_checkerboard  8 spline coupling layers on the 2-D checkerboard toy
  maf_spirals  MAF with spline transformers (the autoregressive RQ-NSF) on two_spirals
  gpu        Glow on mnist5k, 3 steps per level -> 8, 128 channels, 20k steps
  cond_digits  the default RealNVP, class-conditional (model.conditional=True): the label
             enters every conv conditioner; test log p(x|y) and the exact log p(x), and
             1,000 samples (100 per class) scored with the shared classifier
  cond_moons the moons RealNVP, conditional on two_moons' 2 labels (which moon)
  cond_quick a small conditional RealNVP on two_moons for seconds (tests)
  quick      a small RealNVP on the digits for a few seconds (smoke tests); combine with
             --config.data.name=two_moons --config.data.preprocess=none for a 2-D toy

Fields: model.name "realnvp" | "glow" | "maf" | "iaf"; model.transformer "affine" |
"spline"; model.layers: coupling / autoregressive layers of a vector flow, or steps per
level of a multi-scale one; model.levels: levels of the multi-scale flows (images with
realnvp / glow; MAF / IAF treat an image as a vector); model.hidden: the conditioner's
hidden widths (MLP), or its channels (hidden[0], conv); model.max_log_scale: the affine
log-scale bound (max * tanh(raw / max)); model.num_bins and model.tail_bound: the
spline's bins and the interval [-B, B] outside which it is the identity; model.logit_alpha:
the images' pre-transform y = logit(alpha + (1 - 2 alpha) u); model.init_examples:
training examples for actnorm's data-dependent initialisation; model.conditional: condition
every conditioner on the class (a labelled dataset; `genjax.models.flow`); eval.cond_samples:
class-conditional samples scored after training (the same number per class; 0 = skip),
eval.classifier_steps / eval.classifier_dir: the shared sample-quality classifier's
training steps and folder ("" = runs/classifier/<data>_<steps>). Images need
data.preprocess="dequantize" (uniform dequantisation; every Jacobian is counted, so
bits/dim are on the 8-bit scale), 2-D points "none".
"""

import ml_collections

from configs import common


def _quick(c):
    c.model.update(hidden=(16,), layers=2)
    c.optim.update(lr=1e-3, schedule="constant", warmup_steps=0)
    c.train.update(num_steps=100, batch_size=64, steps_per_dispatch=50, checkpoint_every=50)
    c.eval.update(num_examples=100, train_examples=100, cond_samples=100,
                  classifier_steps=200)
    c.plots.update(num_samples=16, grid=40)


def _glow(c):
    c.model.update(name="glow", layers=4, hidden=(32,))   # (64,): 5.34 bits/dim, overfits


def _maf(c):
    c.model.update(name="maf", layers=5, hidden=(128, 128))   # (256, 256): 5.75 bits/dim
    c.optim.lr = 3e-4


def _nsf(c):
    c.model.update(transformer="spline", num_bins=8, tail_bound=4.0)


def _mnist5k(c):
    c.data.name = "mnist5k"
    c.model.update(name="glow", layers=4, hidden=(64,))
    # at lr 1e-3 RealNVP on 28x28 diverges within 300 steps (a sweep over 1e-4, 3e-4, 1e-3)
    c.optim.update(lr=3e-4, warmup_steps=200)
    c.train.update(num_steps=3000, batch_size=64, checkpoint_every=500)


def _toy(c, name):
    c.data.update(name=name, preprocess="none")
    c.model.update(layers=8, hidden=(128, 128))
    c.train.update(num_steps=5000, batch_size=256, steps_per_dispatch=250,
                   checkpoint_every=2500)
    c.plots.num_samples = 5000


def _moons(c):
    _toy(c, "two_moons")


def _spline_checkerboard(c):
    _toy(c, "checkerboard")
    c.model.update(transformer="spline", num_bins=16, tail_bound=3.0, layers=6)


def _maf_spirals(c):
    _toy(c, "two_spirals")
    c.model.update(name="maf", transformer="spline", num_bins=16, tail_bound=4.0, layers=5)


def _cond_digits(c):
    c.model.conditional = True


def _cond_moons(c):
    _moons(c)
    c.model.conditional = True
    c.eval.cond_samples = 5000


def _cond_quick(c):
    _quick(c)
    c.data.update(name="two_moons", preprocess="none")
    c.model.update(conditional=True, layers=4, hidden=(32, 32))
    c.optim.lr = 3e-3
    c.train.update(num_steps=300, checkpoint_every=300, steps_per_dispatch=100)


def _gpu(c):
    c.data.name = "mnist5k"
    c.model.update(name="glow", layers=8, hidden=(128,))
    c.train.update(num_steps=20_000, batch_size=64, steps_per_dispatch=500,
                   checkpoint_every=5000)


PRESETS = {"quick": _quick, "glow": _glow, "maf": _maf, "nsf": _nsf, "mnist5k": _mnist5k,
           "moons": _moons, "spline_checkerboard": _spline_checkerboard,
           "maf_spirals": _maf_spirals, "gpu": _gpu, "cond_digits": _cond_digits,
           "cond_moons": _cond_moons, "cond_quick": _cond_quick}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/flow.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(name="digits", preprocess="dequantize")
    c.model = ml_collections.ConfigDict(dict(
        name="realnvp", transformer="affine", layers=3, levels=2, hidden=(64,),
        max_log_scale=3.0, num_bins=8, tail_bound=3.0, logit_alpha=0.05,
        init_examples=512, conditional=False))
    c.optim = common.optim(lr=1e-3, schedule="cosine", warmup_steps=100, grad_clip=100.0)
    c.train = common.train(num_steps=5000, batch_size=128, steps_per_dispatch=100,
                           checkpoint_every=1000)
    # num_examples: test examples evaluated (0 = all), each with one fixed dequantisation;
    # train_examples: training examples evaluated the same way (0 = skip), for overfitting;
    # cond_samples: class-conditional samples of a conditional flow (0 = skip), scored by
    # the shared classifier (images; classifier_steps, classifier_dir: "" =
    # runs/classifier/<data>_<steps>) or by the data's class regions (2-D points)
    c.eval = ml_collections.ConfigDict(dict(batch_size=250, num_examples=0,
                                            train_examples=1000, cond_samples=1000,
                                            classifier_steps=3000, classifier_dir=""))
    # num_samples: samples in samples.png (images) or density.png (points); grid:
    # density.png's resolution; temperature: samples drawn from N(0, T^2 I)
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, grid=200, temperature=1.0))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
