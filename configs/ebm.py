"""Energy-based model config: p(x) proportional to exp(-E(x)), trained by contrastive
divergence with short-run Langevin negatives (Du & Mordatch 2019; Nijkamp et al. 2019).
Presets (``--config=configs/ebm.py:NAME``):

  (default)  an MLP energy on the 2-D two_moons toy, persistent replay buffer: test
             log-likelihood by grid normalisation next to the true density's, the
             histogram distance of long-run samples to the true density
  eight_gaussians  the same on the ring of 8 narrow modes (std 0.02: smaller Langevin
             steps, a finer grid), with mode coverage
  checkerboard, spirals   the same on checkerboard, two_spirals
  mnist5k    a conv energy on mnist5k in [-1, 1] with a replay buffer: samples, a
             Langevin chain strip, the classifier Fréchet distance of short-run samples
  short_run  mnist5k without a buffer: every chain starts from uniform noise (the
             short-run EBM, a generator of K Langevin steps)
  gpu        mnist5k with a wider energy and 60 Langevin steps per update
  quick      a few seconds (smoke tests): a small MLP on checkerboard

Fields: model.hidden: the MLP's widths (2-D points); model.channels / model.levels: the
conv energy (images); model.data_noise: std of Gaussian noise added to the data the
energy sees (images; smooths the 256-level data). loss.alpha: the energy-magnitude
penalty alpha (E(x+)^2 + E(x-)^2). sampler.*: Langevin x' = x + step_size/2 * (-grad E)
+ noise_scale * z (noise_scale 0: sqrt(step_size), the consistent dynamics), num_steps
per update, the score clipped to [-clip_score, clip_score] (0: no clipping), chains kept
in the data box (sampler.low, sampler.high: also where fresh chains start, uniformly),
buffer_size chains in the replay buffer (0: none), reinit the share restarted from noise.
eval.*: eval_steps Langevin steps for the evaluated samples (from noise), grid for the
normaliser (points).
"""

import ml_collections

from configs import common


def _quick(c):
    c.data.name = "checkerboard"           # a closed-form true density: fast metrics
    c.model.hidden = (32, 32)
    c.optim.update(schedule="constant", warmup_steps=0)
    c.train.update(num_steps=100, batch_size=64, steps_per_dispatch=50, checkpoint_every=50)
    c.sampler.update(buffer_size=1000)
    c.eval.update(num_samples=500, eval_steps=100, grid=100)
    c.plots.update(num_samples=500, grid=60)


def _toy(c, name):
    c.data.name = name


def _images(c, buffer: bool = True):
    c.data.update(name="mnist5k", preprocess="symmetric")
    c.model.update(channels=16, levels=2, data_noise=0.005)
    c.loss.alpha = 0.1
    # the drift h/2 * score = 10 * (-grad E) clipped to 0.03 per pixel, noise 0.005 (the
    # decoupled dynamics of Du & Mordatch 2019); with h = 2, noise 0.01, no clipping and
    # alpha = 1 the chains never left the uniform noise (FD 1,152 after 2,000 steps)
    c.sampler.update(step_size=20.0, noise_scale=0.005, num_steps=20, clip_score=0.03,
                     low=-1.0, high=1.0, buffer_size=5000 if buffer else 0, reinit=0.05)
    c.optim.update(lr=1e-4, b1=0.0, b2=0.999, warmup_steps=0)
    c.train.update(num_steps=2000, batch_size=64, steps_per_dispatch=50,
                   checkpoint_every=500)
    c.eval.update(num_samples=500, fd_samples=500, eval_steps=60, batch_size=250)
    c.plots.update(num_samples=64)


def _mnist5k(c):
    _images(c)


def _short_run(c):
    _images(c, buffer=False)
    c.sampler.num_steps = 40
    c.train.num_steps = 1000
    c.eval.eval_steps = 40


def _gpu(c):
    _images(c)
    c.model.channels = 64
    c.sampler.num_steps = 60
    c.train.update(num_steps=20_000, batch_size=128, steps_per_dispatch=500,
                   checkpoint_every=5000)
    c.eval.update(fd_samples=1000, num_samples=1000)


def _eight_gaussians(c):
    c.data.name = "eight_gaussians"
    c.sampler.update(step_size=1e-4, num_steps=40)
    c.eval.update(grid=1600, eval_steps=2000)


PRESETS = {"quick": _quick, "eight_gaussians": _eight_gaussians,
           "checkerboard": lambda c: _toy(c, "checkerboard"),
           "spirals": lambda c: _toy(c, "two_spirals"), "mnist5k": _mnist5k,
           "short_run": _short_run, "gpu": _gpu}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/ebm.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(name="two_moons", preprocess="none")
    c.model = ml_collections.ConfigDict(dict(hidden=(128, 128, 128), channels=16, levels=2,
                                             data_noise=0.0))
    c.loss = ml_collections.ConfigDict(dict(alpha=0.1))
    c.sampler = ml_collections.ConfigDict(dict(
        step_size=0.01, noise_scale=0.0, num_steps=20, clip_score=0.0, low=-4.0, high=4.0,
        buffer_size=10_000, reinit=0.05))
    c.optim = common.optim(lr=1e-3, grad_clip=10.0, schedule="cosine", warmup_steps=100)
    c.train = common.train(num_steps=5000, batch_size=256, steps_per_dispatch=250,
                           checkpoint_every=2500)
    # num_samples: samples drawn for the metrics, eval_steps Langevin steps each from
    # noise; fd_samples: images for the classifier Fréchet distance (0 = skip); grid:
    # cells per side of the grid normaliser (2-D points)
    c.eval = ml_collections.ConfigDict(dict(
        batch_size=1000, num_samples=5000, eval_steps=1000, fd_samples=0, grid=400,
        classifier_dir="", classifier_steps=3000))
    # num_samples: images in samples.png / points in density.png; chain_images: rows of
    # langevin_chain.png; grid: density.png's resolution
    c.plots = ml_collections.ConfigDict(dict(num_samples=5000, chain_images=8, grid=200))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
