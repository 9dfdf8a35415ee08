"""The training state pytree and the single-optimiser step builder.

Hyper-parameters that a sweep varies (learning rate, weight decay, beta, ...) live in
``TrainState.hparams`` as arrays, so ``jax.vmap(step)`` over a leading axis of states trains
several settings in one program; nothing sweepable is baked into the trace as a constant.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax


class TrainState(NamedTuple):
    step: jax.Array          # [] int32, number of updates applied so far
    params: Any              # parameter pytree (an nnx.State, or a dict of them)
    opt_state: Any           # optax state (or a dict of them, one per optimiser)
    hparams: dict            # {name: [] float32}, e.g. lr, weight_decay, beta


def init_state(params, tx: optax.GradientTransformation, hparams: dict) -> TrainState:
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=tx.init(params),
                      hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()})


def clip_by_global_norm(grads, max_norm):
    """``grads`` scaled to global norm at most ``max_norm`` (a traced array allowed; 0 or
    less: unchanged), computed as `optax.clip_by_global_norm` computes it."""
    norm = optax.tree.norm(grads)
    clip = (max_norm > 0) & (norm >= max_norm)
    return jax.tree_util.tree_map(
        lambda g: jnp.where(clip, (g / norm.astype(g.dtype)) * max_norm, g), grads)


def apply_gradients(params, grads, opt_state, tx, *, lr, weight_decay=0.0, grad_clip=0.0):
    """One optimiser update with gradient clipping, the learning rate and decoupled weight
    decay applied outside ``tx``: params - lr * (tx(clip(grads)) + weight_decay * params).
    Returns (params, opt_state). ``lr``, ``weight_decay`` and ``grad_clip`` (the global
    norm; 0 = no clipping) may be traced arrays, so a sweep can vary them."""
    if not (isinstance(grad_clip, (int, float)) and grad_clip <= 0):
        grads = clip_by_global_norm(grads, grad_clip)
    updates, opt_state = tx.update(grads, opt_state, params)
    params = jax.tree_util.tree_map(
        lambda p, u: p - (lr * (u + weight_decay * p)).astype(p.dtype), params, updates)
    return params, opt_state


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation,
                    lr_schedule: Callable = lambda step: 1.0, *, with_step: bool = False):
    """Builds ``step(state, batch, key) -> (state, metrics)``.

    loss_fn(params, batch, key, hparams) -> (loss scalar, metrics dict of scalars).
    The learning rate at a step is hparams["lr"] * lr_schedule(step) (weight decay and
    gradient clipping: hparams["weight_decay"], hparams["grad_clip"] when present); ``key`` is already
    specific to this step (the loop folds the step in). with_step: loss_fn's hparams also
    hold "step" (the [] int32 number of updates so far), for objectives annealed over
    training (e.g. the Mult-VAE's beta). Metrics gain ``loss``, ``lr`` and
    ``grad_norm``. The step is pure, so it can be jitted, scanned and vmapped.
    """

    def step(state: TrainState, batch, key):
        hp = dict(state.hparams, step=state.step) if with_step else state.hparams
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            state.params, batch, key, hp)
        lr = state.hparams["lr"] * lr_schedule(state.step)
        params, opt_state = apply_gradients(
            state.params, grads, state.opt_state, tx, lr=lr,
            weight_decay=state.hparams.get("weight_decay", 0.0),
            grad_clip=state.hparams.get("grad_clip", 0.0))
        metrics = dict(metrics, loss=loss, lr=lr, grad_norm=optax.tree.norm(grads))
        return TrainState(state.step + 1, params, opt_state, state.hparams), metrics

    return step
