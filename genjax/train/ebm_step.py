"""The training step of an energy-based model: short-run Langevin negatives (from a
persistent replay buffer, or from noise), then a contrastive-divergence update, in one
pure function the shared loop runs unchanged.

    state = with_replay(init_state(params, tx, hparams), init_fn(key, buffer_size))
    step = make_ebm_step(energy_of=lambda p: lambda x: net(p, x), tx=tx, ...)
    state, summary = genjax.train.train(state, step, data, cfg=..., ...)

With a buffer (Du & Mordatch 2019), each step starts its chains from random buffer
entries, except a fraction ``reinit`` started afresh from ``init_fn`` (noise), runs
``num_steps`` Langevin steps on the current energy and writes the chains' ends back where
they came from; so over training the buffer holds long-run samples and the chains mix
further than ``num_steps``. Without one (``persistent=False``: the short-run EBM of
Nijkamp et al. 2019) every chain starts from noise. The buffer lives beside the
optimiser state (``state.opt_state = (inner, buffer)``), so checkpoints and resumption
carry it, and a resumed run repeats the uninterrupted one.

Sweepable hyper-parameters live in ``state.hparams``: "lr", "weight_decay", "grad_clip"
(as everywhere), "alpha" (the energy-magnitude penalty) and "langevin_step" (the step
size h of x' = x + h/2 * score + noise_scale * z).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from genjax import mcmc
from genjax.losses import ebm as ebm_loss
from genjax.models.score import energy_score
from genjax.train.state import TrainState, apply_gradients


def with_replay(state: TrainState, buffer=None) -> TrainState:
    """The state with a replay buffer [N, *E] (float32) beside its optimiser state;
    ``None`` (or N = 0) for the buffer-free short-run variant, which keeps a 1-element
    placeholder there (checkpoints cannot hold empty arrays) that `make_ebm_step` with
    ``persistent=False`` never reads."""
    if buffer is None or len(buffer) == 0:
        buffer = jnp.zeros((1,), jnp.float32)
    return state._replace(opt_state=(state.opt_state, jnp.asarray(buffer, jnp.float32)))


def replay_buffer(state: TrainState):
    """The buffer of a state made by `with_replay`: [N, *E] (the placeholder [1] when it
    has none)."""
    return state.opt_state[1]


def negatives(key, energy_fn: Callable, buffer, *, batch: int, init_fn: Callable,
              reinit, num_steps: int, step_size, noise_scale, clip_score, bounds):
    """(x_neg [batch, *E], idx [batch]): short-run Langevin from buffer entries ``idx``
    (each replaced by a fresh ``init_fn`` start with probability ``reinit``) or, with
    ``buffer=None``, from ``init_fn(key, batch)`` alone."""
    k_idx, k_re, k_init, k_mcmc = jax.random.split(key, 4)
    fresh = init_fn(k_init, batch)
    if buffer is not None:
        idx = jax.random.randint(k_idx, (batch,), 0, buffer.shape[0])
        restart = jax.random.uniform(k_re, (batch,)) < reinit
        restart = restart.reshape((batch,) + (1,) * (fresh.ndim - 1))
        x0 = jnp.where(restart, fresh, buffer[idx])
    else:
        idx, x0 = jnp.zeros((batch,), jnp.int32), fresh
    chain = mcmc.ula(k_mcmc, x0, score_fn=energy_score(energy_fn), step_size=step_size,
                     num_steps=num_steps, noise_scale=noise_scale, clip_score=clip_score,
                     bounds=bounds)
    return jax.lax.stop_gradient(chain.x), idx


def make_ebm_step(*, energy_of: Callable, tx: optax.GradientTransformation,
                  init_fn: Callable, positives: Callable = lambda batch, key: batch,
                  num_steps: int, noise_scale: float | None, clip_score: float | None,
                  bounds: tuple | None, reinit: float, persistent: bool = True,
                  lr_schedule: Callable = lambda step: 1.0):
    """Builds ``step(state, batch, key) -> (state, metrics)`` for a state of `with_replay`.

    energy_of(params) -> energy_fn(x [N, *E]) -> [N]; init_fn(key, n) -> [n, *E] chain
    starts (e.g. uniform noise over the data's range); positives(batch, key) -> the data
    as the energy sees them (e.g. uint8 images scaled to [-1, 1]); persistent: chains
    start from the state's replay buffer (False: from init_fn alone). One step: negatives
    (`negatives`, gradients stopped, with the energy of the current parameters), then
    the `losses.ebm.contrastive_divergence` update with hparams["alpha"], then the
    buffer write-back. Metrics: the loss's, "loss", "lr", "grad_norm" and
    "samples/abs_max" (the negatives' largest |value|: a diverging sampler shows here
    first)."""

    def step(state: TrainState, batch, key):
        inner, buffer = state.opt_state
        hp = state.hparams
        k_pos, k_neg = jax.random.split(key)
        x_pos = positives(batch, k_pos)
        x_neg, idx = negatives(k_neg, energy_of(jax.lax.stop_gradient(state.params)),
                               buffer if persistent else None, batch=x_pos.shape[0],
                               init_fn=init_fn,
                               reinit=reinit, num_steps=num_steps,
                               step_size=hp["langevin_step"], noise_scale=noise_scale,
                               clip_score=clip_score, bounds=bounds)

        def loss_fn(params):
            return ebm_loss.contrastive_divergence(x_pos, x_neg, energy_fn=energy_of(params),
                                                   alpha=hp["alpha"])

        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        lr = hp["lr"] * lr_schedule(state.step)
        params, inner = apply_gradients(state.params, grads, inner, tx, lr=lr,
                                        weight_decay=hp.get("weight_decay", 0.0),
                                        grad_clip=hp.get("grad_clip", 0.0))
        if persistent:
            buffer = buffer.at[idx].set(x_neg)
        metrics = dict(metrics, loss=loss, lr=lr, grad_norm=optax.tree.norm(grads),
                       **{"samples/abs_max": jnp.max(jnp.abs(x_neg))})
        return TrainState(state.step + 1, params, (inner, buffer), hp), metrics

    return step
