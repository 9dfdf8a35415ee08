"""Score-based model config: a noise-conditional score network (NCSN, Song & Ermon 2019)
trained by denoising (or sliced) score matching over a geometric ladder of noise levels,
sampled by annealed Langevin dynamics. Presets (``--config=configs/score.py:NAME``):

  (default)  NCSN with a small U-Net on mnist5k in [0, 1]: 10 levels from sigma 1 to
             0.01, annealed Langevin; samples, a Langevin chain strip and the classifier
             Fréchet distance
  eight_gaussians  an MLP score network on the 2-D eight_gaussians ring: the learned
             score field against the true one, mode coverage of the samples
  moons, checkerboard, spirals   the same on two_moons, checkerboard, two_spirals
  ssm_moons  two_moons trained by sliced score matching (Song et al. 2019) instead
  gpu        mnist5k with a 32-channel 3-level U-Net, 20k steps, the paper's sampler
             (100 steps per level)
  quick      a few seconds (smoke tests): a tiny MLP on eight_gaussians

Fields: model.objective "dsm" (denoising score matching, lambda(sigma) = sigma^2) | "ssm"
(sliced score matching on the perturbed data, one level per batch, weighted sigma^2);
model.hidden: the MLP's widths (2-D points); model.channels ... model.groups: the U-Net
(images). noise.*: the ladder sigma_max -> sigma_min, num_levels levels (geometric).
sampler.*: annealed Langevin, step alpha_i = step_size * sigma_i^2 / sigma_min^2,
steps_per_level steps at each level, then one denoising step (sampler.denoise).
Images are scaled to [0, 1] (data.preprocess="unit"); 2-D points are used as they are
("none").
"""

import ml_collections

from configs import common


def _toy(c, name):
    c.data.update(name=name, preprocess="none")
    # (128, 128) and 5,000 steps leave the fine levels unlearned (two_moons: histogram
    # distance 0.59 against the floor 0.09); (256, 256, 256) and 20,000 steps: 0.10
    c.model.hidden = (256, 256, 256)
    c.noise.update(sigma_max=3.0, sigma_min=0.01, num_levels=12)
    c.sampler.update(step_size=1e-5, steps_per_level=100)
    c.optim.update(lr=1e-3, warmup_steps=0, schedule="cosine")
    c.train.update(num_steps=20_000, batch_size=256, steps_per_dispatch=500,
                   checkpoint_every=5000)
    c.ema.decay = 0.999
    c.eval.update(num_samples=5000, fd_samples=0, dsm_examples=5000)
    c.plots.update(num_samples=5000)


def _quick(c):
    _toy(c, "eight_gaussians")
    c.model.hidden = (32, 32)
    c.noise.num_levels = 6
    c.sampler.steps_per_level = 20
    c.train.update(num_steps=100, batch_size=64, steps_per_dispatch=50, checkpoint_every=50)
    c.optim.update(schedule="constant")
    c.ema.decay = 0.9
    c.eval.update(num_samples=500, dsm_examples=500, batch_size=250)
    c.plots.update(num_samples=500, arrows=12, chain_images=4)


def _eight_gaussians(c):
    _toy(c, "eight_gaussians")


def _moons(c):
    _toy(c, "two_moons")


def _checkerboard(c):
    _toy(c, "checkerboard")


def _spirals(c):
    _toy(c, "two_spirals")


def _ssm_moons(c):
    _toy(c, "two_moons")
    c.model.objective = "ssm"


def _gpu(c):
    c.model.update(channels=32, channel_mults=(1, 2, 2), attention_resolutions=(7,))
    c.train.update(num_steps=20_000, batch_size=128, steps_per_dispatch=500,
                   checkpoint_every=5000)
    c.optim.update(lr=2e-4, warmup_steps=1000)
    c.ema.decay = 0.999
    c.sampler.update(step_size=2e-5, steps_per_level=100)
    c.eval.update(fd_samples=1000, num_samples=1000, batch_size=250)


PRESETS = {"quick": _quick, "eight_gaussians": _eight_gaussians, "moons": _moons,
           "checkerboard": _checkerboard, "spirals": _spirals, "ssm_moons": _ssm_moons,
           "gpu": _gpu}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/score.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(name="mnist5k", preprocess="unit")
    c.model = ml_collections.ConfigDict(dict(
        objective="dsm", num_projections=1, projection="rademacher",
        hidden=(128, 128), embed=32,
        channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(),
        dropout=0.0, groups=8))
    c.noise = ml_collections.ConfigDict(dict(sigma_max=1.0, sigma_min=0.01, num_levels=10))
    # step_size x steps_per_level = 2e-3, as the paper's 2e-5 x 100: from the default's
    # trained network, 2e-5 / 1e-4 / 2e-4 with 20 steps gave FD 312 / 70.2 / 264
    c.sampler = ml_collections.ConfigDict(dict(step_size=1e-4, steps_per_level=20,
                                               denoise=True))
    c.optim = common.optim(lr=1e-3, grad_clip=1.0, warmup_steps=100)
    c.train = common.train(num_steps=3000, batch_size=64, steps_per_dispatch=100,
                           checkpoint_every=500)
    c.ema = ml_collections.ConfigDict(dict(decay=0.995))
    # num_samples: samples drawn for the metrics (2-D: mode coverage and histogram
    # distance to the true density); fd_samples: images for the classifier Fréchet
    # distance (0 = skip); dsm_examples: test examples for the test-set objective per
    # level (0 = all)
    c.eval = ml_collections.ConfigDict(dict(
        batch_size=250, num_samples=500, fd_samples=500, dsm_examples=1000,
        classifier_dir="", classifier_steps=3000))
    # num_samples: images in samples.png; chain_images: rows of langevin_chain.png (the
    # state at the end of every level); arrows: the score-field figure's arrows per side
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, chain_images=8, arrows=24))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
