"""Training machinery shared by every family: state, steps, the loop, checkpoints."""

from genjax.train.config import ConfigError
from genjax.train.ema import ema_params, ema_step, ema_update, with_ema
from genjax.train.gan_step import init_gan_state, make_gan_step
from genjax.train.loop import Interrupted, NonFiniteError, train
from genjax.train.optim import make_optimizer
from genjax.train.state import TrainState, apply_gradients, init_state, make_train_step
from genjax.train.sweep import Program, SweepParts, run_sweep

__all__ = ["ConfigError", "Interrupted", "NonFiniteError", "Program", "SweepParts",
           "TrainState", "apply_gradients", "ema_params", "ema_step", "ema_update", "init_gan_state", "init_state",
           "make_gan_step", "make_optimizer", "make_train_step", "run_sweep", "train",
           "with_ema"]
