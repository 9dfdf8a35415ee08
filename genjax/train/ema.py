"""An exponential moving average of the parameters, kept in the train state.

    state = with_ema(init_state(params, tx, dict(hparams, ema_decay=0.999)))
    step = ema_step(make_train_step(loss_fn, tx, schedule))
    ema_params(state)                     # the averaged parameters, for sampling

The average lives beside the optimiser state (``state.opt_state = (inner, ema)``), so
checkpoints, resumption and sharding carry it without changes to the loop, and its decay
is an array in ``state.hparams["ema_decay"]`` (sweepable like a learning rate). Updated
after every step: ema <- decay * ema + (1 - decay) * params.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from genjax.train.state import TrainState


def ema_update(average, new, decay):
    """decay * average + (1 - decay) * new, leaf by leaf (decay may be a traced array)."""
    return jax.tree_util.tree_map(
        lambda a, n: (decay * a + (1.0 - decay) * n).astype(a.dtype), average, new)


def with_ema(state: TrainState) -> TrainState:
    """The state with an average initialised to the current parameters."""
    if "ema_decay" not in state.hparams:
        raise ValueError("with_ema needs hparams['ema_decay'] (e.g. 0.999)")
    # a copy: the loop donates the state, and one buffer may not be donated twice
    return state._replace(opt_state=(state.opt_state,
                                     jax.tree_util.tree_map(jnp.copy, state.params)))


def ema_params(state: TrainState):
    """The averaged parameters of a state made by `with_ema`."""
    return state.opt_state[1]


def ema_step(step: Callable) -> Callable:
    """Wraps ``step(state, batch, key) -> (state, metrics)`` (built for the state without
    an average) into one that also updates the average."""

    def wrapped(state: TrainState, batch, key):
        inner, ema = state.opt_state
        new, metrics = step(state._replace(opt_state=inner), batch, key)
        ema = ema_update(ema, new.params, state.hparams["ema_decay"])
        return new._replace(opt_state=(new.opt_state, ema)), metrics

    return wrapped


def average_in_params(state: TrainState) -> TrainState:
    """A `with_ema` state with the average moved from opt_state into params: {"params",
    "ema"} (a sweep evaluates each setting's ``params``, and families sampled from the
    average evaluate ``params["ema"]``)."""
    inner, ema = state.opt_state
    return state._replace(params={"params": state.params, "ema": ema}, opt_state=inner)


def step_with_average_in_params(step: Callable) -> Callable:
    """An `ema_step` for states of `average_in_params`: the same computation."""

    def wrapped(state: TrainState, batch, key):
        p = state.params
        new, metrics = step(state._replace(params=p["params"],
                                           opt_state=(state.opt_state, p["ema"])), batch, key)
        return average_in_params(new), metrics

    return wrapped
