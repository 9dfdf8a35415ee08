"""The optimiser of every experiment (`make_optimizer` + `make_train_step`) against optax's
own optimisers, schedules and clipping, step by step.

genjax keeps the learning rate and weight decay out of the optax chain (they are arrays in
``TrainState.hparams``, so a sweep can vmap over them) and applies them in
`apply_gradients`; the references below are optax's ready-made optimisers
(`optax.adamw`, `optax.sgd`, `optax.clip_by_global_norm`, `optax.cosine_decay_schedule`,
`optax.linear_schedule`, `optax.join_schedules`) with the learning rate inside, as a
user of optax would write them.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import common
from genjax.train import init_state, make_optimizer, make_train_step

NUM_STEPS = 30


def _problem():
    """Parameters (a dict of two arrays) and a loss whose gradient depends on the
    parameters and on the batch, so every optimiser state component matters."""
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"w": jax.random.normal(k1, (5, 3)), "b": jax.random.normal(k2, (3,))}
    batches = jax.random.normal(k3, (NUM_STEPS, 8, 5))

    def loss_fn(p, x):
        h = jnp.tanh(x @ p["w"] + p["b"])                    # [8, 3]
        return jnp.mean((h - 0.5) ** 2) * 10.0 + jnp.sum(jnp.sin(p["w"]))

    return params, batches, loss_fn


def _run_genjax(optim):
    params, batches, loss_fn = _problem()
    tx, hparams, lr_schedule = make_optimizer(optim, NUM_STEPS)
    state = init_state(params, tx, hparams)
    step = jax.jit(make_train_step(
        lambda p, batch, key, hp: (loss_fn(p, batch), {}), tx, lr_schedule))
    trajectory, lrs, norms = [], [], []
    for x in batches:
        state, m = step(state, x, jax.random.key(0))
        trajectory.append(state.params)
        lrs.append(float(m["lr"]))
        norms.append(float(m["grad_norm"]))
    return trajectory, np.array(lrs), np.array(norms)


def _run_optax(tx):
    params, batches, loss_fn = _problem()
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, x):
        grads = jax.grad(loss_fn)(params, x)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, optax.tree.norm(grads)

    trajectory, norms = [], []
    for x in batches:
        params, opt_state, norm = step(params, opt_state, x)
        trajectory.append(params)
        norms.append(float(norm))
    return trajectory, np.array(norms)


def _warmup_then(lr, warmup, after):
    """genjax's warm-up: the k-th update (k = 0, 1, ...) uses lr * (k + 1) / warmup, so
    the first update already moves and update warmup - 1 reaches lr."""
    ramp = optax.linear_schedule(lr / warmup, lr, transition_steps=warmup - 1)
    return optax.join_schedules([ramp, after], boundaries=[warmup])


LR, WD, CLIP = 3e-2, 0.1, 0.5

CASES = {
    "adam": (dict(name="adam", lr=LR, b1=0.8, b2=0.99, eps=1e-6),
             lambda: optax.adam(LR, b1=0.8, b2=0.99, eps=1e-6)),
    "adamw": (dict(name="adam", lr=LR, weight_decay=WD),
              lambda: optax.adamw(LR, weight_decay=WD)),
    "sgd": (dict(name="sgd", lr=LR), lambda: optax.sgd(LR)),
    "sgd_momentum": (dict(name="sgd", lr=LR, momentum=0.9),
                     lambda: optax.sgd(LR, momentum=0.9)),
    # decoupled weight decay on top of heavy-ball momentum (SGDW): the decay is added
    # after the momentum trace, then both are scaled by the learning rate
    "sgdw_momentum": (dict(name="sgd", lr=LR, momentum=0.9, weight_decay=WD),
                      lambda: optax.chain(optax.trace(decay=0.9),
                                          optax.add_decayed_weights(WD),
                                          optax.scale_by_learning_rate(LR))),
    "cosine": (dict(name="adam", lr=LR, schedule="cosine"),
               lambda: optax.adam(optax.cosine_decay_schedule(LR, NUM_STEPS))),
    "warmup_constant": (dict(name="adam", lr=LR, warmup_steps=7),
                        lambda: optax.adam(_warmup_then(LR, 7, optax.constant_schedule(LR)))),
    "warmup_cosine_adamw": (
        dict(name="adam", lr=LR, schedule="cosine", warmup_steps=7, weight_decay=WD),
        lambda: optax.adamw(_warmup_then(LR, 7, optax.cosine_decay_schedule(LR, NUM_STEPS - 7)),
                            weight_decay=WD)),
    "clip_adam": (dict(name="adam", lr=LR, grad_clip=CLIP),
                  lambda: optax.chain(optax.clip_by_global_norm(CLIP), optax.adam(LR))),
    "clip_sgd_momentum_warmup_cosine": (
        dict(name="sgd", lr=LR, momentum=0.5, grad_clip=CLIP, schedule="cosine",
             warmup_steps=4),
        lambda: optax.chain(optax.clip_by_global_norm(CLIP), optax.sgd(
            _warmup_then(LR, 4, optax.cosine_decay_schedule(LR, NUM_STEPS - 4)),
            momentum=0.5))),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_optax_step_by_step(case):
    overrides, reference = CASES[case]
    ours, _, our_norms = _run_genjax(common.optim(**overrides))
    theirs, their_norms = _run_optax(reference())
    start = _problem()[0]
    for k, (a, b) in enumerate(zip(ours, theirs)):
        for name in a:
            moved = np.abs(np.asarray(b[name]) - np.asarray(start[name])).max()
            np.testing.assert_allclose(
                a[name], b[name], rtol=2e-5, atol=2e-6 * max(1.0, moved),
                err_msg=f"{case}: parameter {name!r} differs from optax after update {k + 1}")
    # the logged gradient norm is the one before clipping
    np.testing.assert_allclose(our_norms, their_norms, rtol=1e-5)


def test_the_cases_do_differ():
    """The comparison can fail: each setting changes the trajectory (so a genjax option
    that were ignored would show against its optax reference)."""
    finals = {c: _run_genjax(common.optim(**CASES[c][0]))[0][-1]["w"] for c in CASES}
    names = sorted(finals)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(np.asarray(finals[a]) - np.asarray(finals[b])).max() > 1e-4, (a, b)


def test_clipping_is_active_in_the_clip_cases():
    _, _, norms = _run_genjax(common.optim(**CASES["clip_adam"][0]))
    assert norms.max() > CLIP, "the clip threshold must bind for the test to mean anything"


def test_schedules_reported_lr():
    """The lr metric is hparams.lr times the schedule: warm-up, then a cosine to zero."""
    _, lrs, _ = _run_genjax(common.optim(**CASES["warmup_cosine_adamw"][0]))
    reference = _warmup_then(LR, 7, optax.cosine_decay_schedule(LR, NUM_STEPS - 7))
    np.testing.assert_allclose(lrs, [reference(k) for k in range(NUM_STEPS)], rtol=1e-5,
                               atol=1e-9)
    assert lrs[0] == pytest.approx(LR / 7, rel=1e-5) and lrs.max() == pytest.approx(LR)


def test_clip_weight_decay_and_lr_vary_inside_one_vmapped_step():
    """lr, weight_decay and grad_clip are arrays in TrainState.hparams: one vmapped step
    over settings that differ in all three (clipping on and off among them) gives each
    setting the trajectory of its own run, itself checked against optax above."""
    settings = [dict(lr=LR, weight_decay=0.0, grad_clip=0.0),
                dict(lr=LR / 3, weight_decay=WD, grad_clip=CLIP),
                dict(lr=LR, weight_decay=0.0, grad_clip=0.2)]
    params, batches, loss_fn = _problem()
    tx, _, lr_schedule = make_optimizer(common.optim(name="adam"), NUM_STEPS)
    step = jax.jit(jax.vmap(make_train_step(
        lambda p, batch, key, hp: (loss_fn(p, batch), {}), tx, lr_schedule),
        in_axes=(0, None, None)))
    states = [init_state(params, tx, make_optimizer(common.optim(name="adam", **s),
                                                    NUM_STEPS)[1]) for s in settings]
    state = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *states)
    for x in batches:
        state, _ = step(state, x, jax.random.key(0))
    for i, s in enumerate(settings):
        alone = _run_genjax(common.optim(name="adam", **s))[0][-1]
        for name in alone:
            np.testing.assert_allclose(state.params[name][i], alone[name], rtol=1e-5,
                                       atol=1e-6, err_msg=f"setting {i}: {name}")
    finals = np.asarray(state.params["w"])
    assert np.abs(finals[0] - finals[2]).max() > 1e-4    # clipping 0.2 changed the path
