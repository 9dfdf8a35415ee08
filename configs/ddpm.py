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
  cond       the default U-Net, class-conditional (label dropout 0.1, classifier-free
             guidance), 6,000 steps at lr 2e-3 with a cosine decay, EMA 0.999: the
             guidance sweep w = 0, 0.5, 1, 2, 4 on 1,000 DDIM samples per w (100 per
             class, S = 50) and completions of 100 test digits' bottom halves
             (replacement); no null-class ancestral FD (about 1.5 hours on 2 cores)
  cond_gpu   the gpu preset, class-conditional, with the full protocol: 1,000 samples
             per w (100 per class), completions of 1,000 test digits by replacement and
             by RePaint (U = 5 resamplings every 10 levels)
  cond_quick a class-conditional run on the 8x8 digits in a minute or two (for tests): a
             small U-Net, T = 100, 600 steps of 32, guidance w = 0 and 2 on 200 DDIM
             samples, completions of 20 test digits

Fields: diffusion.prediction "eps" | "x0" | "v"; diffusion.variance "beta" | "posterior"
(the fixed reverse variance); diffusion.schedule "linear" | "cosine". eval.bound_t is the
number of strata of the bound's step sum per image (diffusion.num_steps - 1 = exact).
model.channels is even (the time embedding's sin and cos halves); each entry of
model.attention_resolutions is the side of one of the U-Net's levels (28, 14, ... here).

Conditional fields (`genjax.diffusion.guidance`): model.conditional (the U-Net takes the
class, the dataset must have labels), model.label_dropout (the probability of training
on the null class instead, in [0, 1); in TrainState.hparams, so a sweep may vary it),
eval.guidance_weights (the w of eps~ = (1 + w) eps(x, y) - w eps(x, null), each >= -1;
w = 0 is the conditional model, w = -1 the unconditional one; "guidance scale" s = 1 + w
elsewhere: a sweep over w is this evaluation list, one trained model), eval.cond_samples (samples per w, balanced over
the classes; 0 = skip), eval.guidance_sampler "ddim" (eval.ddim_steps) | "ancestral".
Completions (`genjax.diffusion.inpaint`, any DDPM, conditional ones with the null class):
eval.inpaint_images test images whose bottom half is sampled given the top (0 = skip),
once per entry U of eval.inpaint_resample (1 = replacement, U > 1 = RePaint resampling
every eval.inpaint_jump levels).
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


def _conditional(c):
    c.model.conditional = True
    c.eval.update(inpaint_images=100, inpaint_resample=(1,))


def _cond(c):
    _conditional(c)
    # The default's 2,000 steps at lr 1e-3 learn the images but hardly the label
    # (conditional accuracy 0.12 at w = 0, chance 0.10, measured); three times the steps at
    # twice the rate with a cosine decay and a slower EMA learn it (0.37 at w = 0).
    c.train.update(num_steps=6000, checkpoint_every=1000)
    c.optim.update(lr=2e-3, schedule="cosine", warmup_steps=200)
    c.ema.decay = 0.999
    # The null-class ancestral FD (100 samples x 1,000 steps) costs as much as a guided
    # DDIM weight on a CPU; the guided samples' FDs replace it (the DDIM one stays).
    c.eval.update(cond_samples=1000, ancestral_fd_samples=0)


def _cond_gpu(c):
    _gpu(c)
    _conditional(c)
    c.eval.update(cond_samples=1000, inpaint_images=1000, inpaint_resample=(1, 5),
                  batch_size=500)


def _cond_quick(c):
    _conditional(c)
    c.data.name = "digits"
    c.model.update(channels=16, channel_mults=(1, 2), attention_resolutions=(),
                   dropout=0.0, groups=4)
    c.diffusion.num_steps = 100
    c.optim.update(lr=3e-3, warmup_steps=50)
    # 600 small steps learn the label better than 300 of batch 64 (w=0 / w=2 accuracy
    # 0.43 / 0.87 against 0.39 / 0.80 at 400 of 64, measured)
    c.train.update(num_steps=600, batch_size=32, steps_per_dispatch=200,
                   checkpoint_every=600)
    c.ema.decay = 0.98
    c.eval.update(bound_examples=20, bound_t=2, batch_size=100, fd_samples=0,
                  ancestral_fd_samples=0, ddim_steps=20, cond_samples=200,
                  guidance_weights=(0.0, 2.0), inpaint_images=20, inpaint_resample=(1,),
                  inpaint_jump=5, classifier_steps=500)
    c.plots.update(num_samples=4, trajectory_images=2, trajectory_frames=3)


PRESETS = {"quick": _quick, "gpu": _gpu, "cifar10": _cifar10, "cond": _cond,
           "cond_gpu": _cond_gpu, "cond_quick": _cond_quick}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/ddpm.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data(preprocess="symmetric")
    # conditional: class-conditional U-Net (label_dropout: P(null class) in training)
    c.model = ml_collections.ConfigDict(dict(
        channels=16, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(14,),
        dropout=0.1, groups=8, conditional=False, label_dropout=0.1))
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
        classifier_steps=3000,
        # conditional models: guidance weights w, samples per w (0 = skip), their sampler
        guidance_weights=(0.0, 0.5, 1.0, 2.0, 4.0), cond_samples=1000,
        guidance_sampler="ddim",
        # completions of the bottom half of test images given the top (0 = skip), per U
        inpaint_images=0, inpaint_resample=(1,), inpaint_jump=10))
    c.plots = ml_collections.ConfigDict(dict(num_samples=64, trajectory_images=8,
                                             trajectory_frames=10))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
