"""Training machinery shared by every family: state, steps, the loop, checkpoints."""

from genjax.train.config import ConfigError
from genjax.train.loop import Interrupted, NonFiniteError, train
from genjax.train.optim import make_optimizer
from genjax.train.state import TrainState, apply_gradients, init_state, make_train_step

__all__ = ["ConfigError", "Interrupted", "NonFiniteError", "TrainState", "apply_gradients",
           "init_state", "make_optimizer", "make_train_step", "train"]
