"""DDPM config. Presets (``--config=configs/ddpm.py:NAME``):

  (default)  a small U-Net (16 channels, 28 -> 14, attention at 14x14) on mnist5k scaled
             to [-1, 1], T = 1000 linear schedule, eps prediction, 2,000 steps of batch
             64; sized for a CPU (23-24 minutes on 2 cores with the evaluation; the
             samples are digit-like strokes)
  gpu        the same data with a 32-channel, 3-level U-Net (28 -> 14 -> 7, attention at
             7x7), 15,000 steps of batch 128: minutes on one GPU, recognisable digits
  quick      a few seconds, for smoke tests (T = 50, a tiny U-Net)
  cifar10    the DDPM paper's CIFAR-10 setting (35.7M-parameter U-Net, dropout 0.1,
             800k steps of batch 128, EMA 0.9999): TFDS cifar10, for accelerators

Fields: diffusion.prediction "eps" | "x0" | "v"; diffusion.variance "beta" | "posterior"
(the fixed reverse variance); diffusion.schedule "linear" | "cosine". eval.bound_t is the
number of strata of the bound's step sum per image (diffusion.num_steps - 1 = exact).
model.channels is even (the time embedding's sin and cos halves); each entry of
model.attention_resolutions is the side of one of the U-Net's levels (28, 14, ... here).
"""

import ml_collections

from configs import common


def _quick(c):
    c.model.update(channels=8, channel_mults=(1, 2), attention_resolutions=(14,), groups=4)
    c.diffusion.num_steps = 50
    c.train.update(num_steps=20, batch_size=16, steps_per_dispatch=10, checkpoint_every=10)
    # a short average, so that the evaluated (EMA) weights have moved after 20 steps
    c.ema.decay = 0.8
    c.eval.update(bound_examples=20, bound_t=7, batch_size=20, fd_samples=0,
                  ancestral_fd_samples=0, ddim_steps=10)
    c.plots.update(num_samples=16, trajectory_images=4, trajectory_frames=6)


def _gpu(c):
    c.model.update(channels=32, channel_mults=(1, 2, 2), attention_resolutions=(7,))
    c.optim.update(lr=2e-4)
    c.ema.decay = 0.999
    c.train.update(num_steps=15_000, batch_size=128, steps_per_dispatch=500,
                   checkpoint_every=5000)
    c.optim.update(warmup_steps=1000)
    c.eval.update(bound_examples=1000, bound_t=999, batch_size=250, fd_samples=1000,
                  ancestral_fd_samples=1000, pc_fd_samples=1000)


def _cifar10(c):
    c.data.name = "cifar10"
    c.model.update(channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
                   attention_resolutions=(16,), dropout=0.1, groups=32)
    c.train.update(num_steps=800_000, batch_size=128, steps_per_dispatch=1000,
                   checkpoint_every=10_000)
    c.optim.update(warmup_steps=5000)
    c.optim.lr = 2e-4
    c.ema.decay = 0.9999
    c.eval.update(bound_examples=10_000, bound_t=999, batch_size=500, fd_samples=0,
                  ancestral_fd_samples=0)


PRESETS = {"quick": _quick, "gpu": _gpu, "cifar10": _cifar10}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/ddpm.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(preprocess="symmetric")
    c.model = ml_collections.ConfigDict(dict(
        channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(14,),
        dropout=0.1, groups=8))
    c.diffusion = ml_collections.ConfigDict(dict(
        schedule="linear", num_steps=1000, prediction="eps", variance="beta", clip=True))
    c.optim = common.optim(lr=1e-3, grad_clip=1.0, warmup_steps=100)
    c.train = common.train(num_steps=2000, batch_size=64, steps_per_dispatch=100,
                           checkpoint_every=500)
    c.ema = ml_collections.ConfigDict(dict(decay=0.995))
    # bound_examples: test images for the bits/dim bound (0 = all), bound_t strata each;
    # fd_samples: DDIM samples for the classifier Fréchet distance (0 = skip);
    # ancestral_fd_samples: the same for the T-step ancestral sampler (slow on a CPU);
    # pc_fd_samples: the same for predictor-corrector sampling (0 = skip: T steps, each
    # followed by pc_corrector_steps Langevin steps with the U-Net read as a score)
    c.eval = ml_collections.ConfigDict(dict(
        bound_examples=200, bound_t=50, batch_size=100, fd_samples=500,
        ancestral_fd_samples=100, ddim_steps=50, ddim_eta=0.0, pc_fd_samples=0,
        pc_corrector_steps=1, pc_snr=0.16, classifier_dir="",
        classifier_steps=3000))
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, trajectory_images=8,
                                             trajectory_frames=10))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
