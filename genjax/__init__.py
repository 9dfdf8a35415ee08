"""genjax: classic generative models as pure, compiled JAX.

Import name ``genjax``; the distribution is published as ``genjax-baselines`` (the PyPI
name ``genjax`` belongs to an unrelated probabilistic-programming project).

Sub-packages (import them explicitly; nothing heavy is imported here):
  genjax.distributions  log-densities and closed-form KLs
  genjax.losses         pure objectives (ELBO, IWAE, ...)
  genjax.nn             Flax NNX building blocks
  genjax.models         one file per model family
  genjax.data           embedded and TFDS datasets, transforms
  genjax.train          TrainState, step builder, the shared run loop, checkpoints
  genjax.eval           log-likelihood estimates
  genjax.viz            image grids and strips
"""

__version__ = "0.1.0"
