"""Optimisers from a config section, with the learning rate kept out of the trace.

config.optim fields: name ("adam" | "sgd"), lr, b1, b2, eps, momentum, weight_decay
(decoupled, AdamW-style), grad_clip (global norm; 0 disables), schedule ("constant" |
"cosine"), warmup_steps.

lr, weight_decay and grad_clip are kept out of the optax chain: they are arrays in
``TrainState.hparams`` that `genjax.train.state.apply_gradients` applies, so a sweep can
vary them inside one compiled program.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "cosine")


def make_optimizer(optim, num_steps: int):
    """Returns (tx, hparams, lr_schedule): ``tx`` without the learning rate, weight decay
    and clipping, the sweepable hyper-parameters {"lr", "weight_decay", "grad_clip"}, and
    lr_schedule(step) -> multiplier in [0, 1]."""
    parts = []
    if optim.name == "adam":
        parts.append(optax.scale_by_adam(b1=optim.b1, b2=optim.b2, eps=optim.eps))
    elif optim.name == "sgd":
        parts.append(optax.trace(decay=optim.momentum) if optim.momentum else optax.identity())
    else:
        raise ValueError(f"unknown optimizer {optim.name!r}; expected one of {OPTIMIZERS}")
    tx = optax.chain(*parts)
    hparams = {"lr": optim.lr, "weight_decay": optim.weight_decay,
               "grad_clip": optim.grad_clip}
    warmup, schedule = int(optim.warmup_steps), optim.schedule
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")

    def lr_schedule(step):
        step = jnp.asarray(step, jnp.float32)
        factor = jnp.minimum(1.0, (step + 1) / max(warmup, 1)) if warmup else 1.0
        if schedule == "cosine":
            frac = jnp.clip((step - warmup) / max(num_steps - warmup, 1), 0.0, 1.0)
            factor = factor * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
        return factor

    return tx, hparams, lr_schedule
