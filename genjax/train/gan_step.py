"""The two-player training step: the discriminator updated k times, then the generator,
each with its own optax optimiser, in one pure function the shared loop runs unchanged.

    state = init_gan_state(g_params, d_params, tx_g, tx_d, hparams, ema=True)
    step = make_gan_step(g_loss_fn=..., d_loss_fn=..., tx_g=tx_g, tx_d=tx_d, d_steps=k)
    state, summary = genjax.train.train(state, step, data, cfg=..., ...)

The state is the ordinary `TrainState` with dicts: ``params = {"g", "d"[, "g_ema"]}``,
``opt_state = {"g", "d"}`` and ``hparams = {"g_lr", "g_weight_decay", "d_lr",
"d_weight_decay"[, "ema_decay"]}``, all arrays, so ``jax.vmap(step)`` trains several
settings in one program and checkpoints / resuming / non-finite detection work as for
any other family. ``g_ema`` is an exponential moving average of the generator's
parameters (Karras et al. 2018; Yazici et al. 2019), updated after every G step:
g_ema <- decay * g_ema + (1 - decay) * g.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from genjax.train.ema import ema_update
from genjax.train.state import TrainState, apply_gradients


def init_gan_state(g_params, d_params, tx_g: optax.GradientTransformation,
                   tx_d: optax.GradientTransformation, hparams: dict, *,
                   ema: bool = False) -> TrainState:
    """The initial state; with ``ema`` the average starts at the initial generator (and
    hparams must hold "ema_decay")."""
    params = {"g": g_params, "d": d_params}
    if ema:
        if "ema_decay" not in hparams:
            raise ValueError("init_gan_state(ema=True) needs hparams['ema_decay']")
        params["g_ema"] = jax.tree_util.tree_map(jnp.copy, g_params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state={"g": tx_g.init(g_params), "d": tx_d.init(d_params)},
                      hparams={k: jnp.asarray(v, jnp.float32) for k, v in hparams.items()})


def make_gan_step(*, g_loss_fn: Callable, d_loss_fn: Callable,
                  tx_g: optax.GradientTransformation, tx_d: optax.GradientTransformation,
                  d_steps: int = 1, g_lr_schedule: Callable = lambda step: 1.0,
                  d_lr_schedule: Callable = lambda step: 1.0):
    """Builds ``step(state, batch, key) -> (state, metrics)``.

    d_loss_fn(d_params, g_params, batch, key, hparams) -> (loss, metrics)  minimised in d
    g_loss_fn(g_params, d_params, batch, key, hparams) -> (loss, metrics)  minimised in g

    One step: ``d_steps`` (a Python int, static) discriminator updates (in a
    ``lax.scan`` when more than one), update i with key fold_in(fold_in(key, 0), i) and
    the step's real batch (fresh generator samples every time); then one generator
    update against the updated discriminator, with key fold_in(key, 1); then the
    EMA of g when the state has "g_ema". Learning rates are hparams["d_lr"] *
    d_lr_schedule(step) and hparams["g_lr"] * g_lr_schedule(step); weight decay
    (decoupled) hparams["d_weight_decay"] / ["g_weight_decay"] and global-norm clipping
    hparams["d_grad_clip"] / ["g_grad_clip"] when present.

    Metrics: ``d_loss`` (mean over the k updates) and ``g_loss``, ``grad_norm/d``,
    ``grad_norm/g``, ``lr/d``, ``lr/g`` and the loss functions' own metrics (D's averaged
    over the k updates). Compiled dicts come back in sorted-key order, and the loop
    reports the first non-finite metric in that order, so the two losses sort first:
    name the loss functions' metrics so that they sort after "g_loss" (e.g. "stats/..."),
    and a diverging run is reported as "d_loss = nan at step N" or "g_loss = ...".
    """
    if int(d_steps) < 1:
        raise ValueError(f"d_steps must be >= 1, got {d_steps}")
    d_steps = int(d_steps)

    def step(state: TrainState, batch, key):
        hp, params, opt = state.hparams, state.params, state.opt_state
        k_d, k_g = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
        d_lr = hp["d_lr"] * d_lr_schedule(state.step)
        g_lr = hp["g_lr"] * g_lr_schedule(state.step)

        def d_update(carry, i):
            d_params, d_opt = carry
            (loss, metrics), grads = jax.value_and_grad(d_loss_fn, has_aux=True)(
                d_params, params["g"], batch, jax.random.fold_in(k_d, i), hp)
            d_params, d_opt = apply_gradients(d_params, grads, d_opt, tx_d, lr=d_lr,
                                              weight_decay=hp.get("d_weight_decay", 0.0),
                                              grad_clip=hp.get("d_grad_clip", 0.0))
            return (d_params, d_opt), dict(metrics, d_loss=loss,
                                           **{"grad_norm/d": optax.tree.norm(grads)})

        if d_steps == 1:         # no loop: XLA:CPU runs some convolutions slower in one
            (d_params, d_opt), d_metrics = d_update((params["d"], opt["d"]), 0)
        else:
            (d_params, d_opt), d_metrics = jax.lax.scan(
                d_update, (params["d"], opt["d"]), jnp.arange(d_steps))
            d_metrics = {k: jnp.mean(v) for k, v in d_metrics.items()}

        (g_loss, g_metrics), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(
            params["g"], d_params, batch, k_g, hp)
        g_params, g_opt = apply_gradients(params["g"], g_grads, opt["g"], tx_g, lr=g_lr,
                                          weight_decay=hp.get("g_weight_decay", 0.0),
                                          grad_clip=hp.get("g_grad_clip", 0.0))
        new_params = {"g": g_params, "d": d_params}
        if "g_ema" in params:
            new_params["g_ema"] = ema_update(params["g_ema"], g_params, hp["ema_decay"])
        metrics = dict(d_metrics, **g_metrics, g_loss=g_loss,
                       **{"grad_norm/g": optax.tree.norm(g_grads), "lr/d": d_lr,
                          "lr/g": g_lr})
        return TrainState(state.step + 1, new_params, {"g": g_opt, "d": d_opt}, hp), metrics

    return step
