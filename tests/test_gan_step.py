"""The two-player step: k discriminator updates then one generator update (against a
manual unrolled implementation), the EMA arithmetic, learning rates as sweepable arrays,
and the shared loop running it."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genjax.losses import gan as gan_losses
from genjax.models.gan import MLPDiscriminator, MLPGenerator
from genjax.train import apply_gradients, train
from genjax.train.gan_step import ema_update, init_gan_state, make_gan_step

Z, B = 3, 16


def _setup(*, d_steps=1, ema=False, d_lr=1e-2, g_lr=5e-3):
    g = MLPGenerator(Z, 2, hidden=(8,), rngs=nnx.Rngs(0))
    d = MLPDiscriminator(2, hidden=(8,), rngs=nnx.Rngs(1))
    g_def, g_params = nnx.split(g)
    d_def, d_params = nnx.split(d)
    gen = lambda p, z: nnx.merge(g_def, p)(z)                      # noqa: E731
    disc = lambda p, x: nnx.merge(d_def, p)(x)                     # noqa: E731

    def d_loss_fn(d_params, g_params, batch, key, hp):
        fake = jax.lax.stop_gradient(gen(g_params, jax.random.normal(key, (B, Z))))
        loss = gan_losses.discriminator_loss(disc(d_params, batch), disc(d_params, fake))
        return loss, {"stats/d_fake": jnp.mean(jax.nn.sigmoid(disc(d_params, fake)))}

    def g_loss_fn(g_params, d_params, batch, key, hp):
        fake = gen(g_params, jax.random.normal(key, (B, Z)))
        return gan_losses.generator_loss_non_saturating(disc(d_params, fake)), {}

    tx_g = optax.scale_by_adam(b1=0.5)
    tx_d = optax.scale_by_adam(b1=0.5)
    hp = {"g_lr": g_lr, "d_lr": d_lr}
    if ema:
        hp["ema_decay"] = 0.9
    state = init_gan_state(g_params, d_params, tx_g, tx_d, hp, ema=ema)
    step = make_gan_step(g_loss_fn=g_loss_fn, d_loss_fn=d_loss_fn, tx_g=tx_g, tx_d=tx_d,
                         d_steps=d_steps)
    return dict(state=state, step=step, d_loss_fn=d_loss_fn, g_loss_fn=g_loss_fn,
                tx_g=tx_g, tx_d=tx_d)


BATCH = jnp.asarray(np.random.default_rng(0).normal(size=(B, 2)) + 2.0, jnp.float32)


def _manual_step(s, state, key, k):
    """The same step written out: k D updates with keys fold_in(fold_in(key, 0), i),
    then G against the updated D with fold_in(key, 1)."""
    d, d_opt = state.params["d"], state.opt_state["d"]
    k_d = jax.random.fold_in(key, 0)
    for i in range(k):
        grads = jax.grad(lambda p: s["d_loss_fn"](p, state.params["g"], BATCH,
                                                 jax.random.fold_in(k_d, i), None)[0])(d)
        d, d_opt = apply_gradients(d, grads, d_opt, s["tx_d"], lr=state.hparams["d_lr"])
    grads = jax.grad(lambda p: s["g_loss_fn"](p, d, BATCH, jax.random.fold_in(key, 1),
                                             None)[0])(state.params["g"])
    g, g_opt = apply_gradients(state.params["g"], grads, state.opt_state["g"], s["tx_g"],
                               lr=state.hparams["g_lr"])
    return g, d


@pytest.mark.parametrize("k", [1, 3])
def test_step_equals_k_manual_d_updates_then_one_g_update(k):
    s = _setup(d_steps=k)
    key = jax.random.key(5)
    new, metrics = jax.jit(s["step"])(s["state"], BATCH, key)
    g, d = _manual_step(s, s["state"], key, k)
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5,
                                                                   atol=1e-6),
                           (new.params["g"], new.params["d"]), (g, d))
    # Adam's step counters: D was updated k times, G once
    assert int(new.opt_state["d"].count) == k and int(new.opt_state["g"].count) == 1
    assert int(new.step) == 1
    assert set(metrics) == {"d_loss", "g_loss", "grad_norm/d", "grad_norm/g", "lr/d",
                            "lr/g", "stats/d_fake"}
    # compiled dicts come back sorted, and the loop checks them in that order: the
    # losses come first, so a diverging run is reported by the loss's name
    assert list(metrics)[:2] == ["d_loss", "g_loss"]
    # k = 3 moves D further than k = 1 from the same start
    if k == 3:
        one = jax.jit(_setup(d_steps=1)["step"])(s["state"], BATCH, key)[0]
        assert not np.allclose(one.params["d"]["net"]["layers"][0]["kernel"][...],
                               new.params["d"]["net"]["layers"][0]["kernel"][...])


def test_counters_after_several_steps_in_a_scan():
    s = _setup(d_steps=4)
    step = s["step"]

    def body(state, i):
        return step(state, BATCH, jax.random.fold_in(jax.random.key(0), i))

    state, metrics = jax.jit(lambda st: jax.lax.scan(body, st, jnp.arange(5)))(s["state"])
    assert int(state.opt_state["d"].count) == 20 and int(state.opt_state["g"].count) == 5
    assert metrics["d_loss"].shape == (5,)


def test_ema_update_arithmetic_and_the_steps_average():
    a = {"w": jnp.asarray([1.0, 2.0]), "b": jnp.asarray(3.0)}
    n = {"w": jnp.asarray([5.0, -2.0]), "b": jnp.asarray(0.0)}
    out = ema_update(a, n, 0.75)
    np.testing.assert_allclose(out["w"], [0.75 * 1 + 0.25 * 5, 0.75 * 2 - 0.25 * 2])
    np.testing.assert_allclose(out["b"], 2.25)
    s = _setup(ema=True)
    state = s["state"]
    jax.tree_util.tree_map(np.testing.assert_array_equal, state.params["g_ema"],
                           state.params["g"])             # starts at the generator
    step = jax.jit(s["step"])
    for i in range(3):
        old_ema = state.params["g_ema"]
        state, _ = step(state, BATCH, jax.random.key(i))
        expect = jax.tree_util.tree_map(lambda e, g: 0.9 * e + 0.1 * g, old_ema,
                                        state.params["g"])
        jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                               state.params["g_ema"], expect)
    with pytest.raises(ValueError, match="ema_decay"):
        init_gan_state(state.params["g"], state.params["d"], s["tx_g"], s["tx_d"],
                       {"g_lr": 1.0, "d_lr": 1.0}, ema=True)


def test_learning_rates_are_arrays_a_sweep_vmaps_over():
    s = _setup()
    states = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), s["state"])
    states = states._replace(hparams={"g_lr": jnp.asarray([5e-3, 0.0]),
                                      "d_lr": jnp.asarray([0.0, 1e-2])})
    new, metrics = jax.jit(jax.vmap(s["step"], in_axes=(0, None, None)))(
        states, BATCH, jax.random.key(1))
    assert metrics["d_loss"].shape == (2,)
    first = lambda t: jax.tree_util.tree_map(lambda a: a[0], t)     # noqa: E731
    second = lambda t: jax.tree_util.tree_map(lambda a: a[1], t)    # noqa: E731
    # setting 0 trains G only (d_lr = 0), setting 1 trains D only (g_lr = 0)
    jax.tree_util.tree_map(np.testing.assert_array_equal, first(new.params)["d"],
                           s["state"].params["d"])
    jax.tree_util.tree_map(np.testing.assert_array_equal, second(new.params)["g"],
                           s["state"].params["g"])
    # and each matches the same setting run alone
    alone = s["state"]._replace(hparams={"g_lr": jnp.asarray(5e-3), "d_lr": jnp.asarray(0.0)})
    solo, _ = jax.jit(s["step"])(alone, BATCH, jax.random.key(1))
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5,
                                                                   atol=1e-7),
                           first(new.params)["g"], solo.params["g"])


def test_bad_d_steps_is_an_error():
    with pytest.raises(ValueError, match="d_steps"):
        make_gan_step(g_loss_fn=None, d_loss_fn=None, tx_g=None, tx_d=None, d_steps=0)


@pytest.mark.slow      # the experiment tests run the loop too; this checks resuming exactly
def test_the_shared_loop_trains_the_two_player_step(tmp_path):
    """genjax.train.train runs the step unchanged: checkpoints, both losses logged, and a
    rerun resumes bit for bit."""
    import ml_collections
    s = _setup(d_steps=2, ema=True)
    data = np.asarray(np.random.default_rng(1).normal(size=(256, 2)) * 0.1 + 1.0,
                      np.float32)
    cfg = ml_collections.ConfigDict(dict(num_steps=40, batch_size=B, steps_per_dispatch=20,
                                         checkpoint_every=20, keep_checkpoints=2,
                                         eval_every=0))
    state, summary = train(s["state"], s["step"], data, cfg=cfg, seed=0,
                           workdir=str(tmp_path / "a"))
    assert int(state.step) == 40 and int(state.opt_state["d"].count) == 80
    assert np.isfinite(summary["d_loss"]) and np.isfinite(summary["g_loss"])
    # stop at 20, then resume to 40 in the same workdir: identical parameters
    cfg20 = ml_collections.ConfigDict(dict(cfg, num_steps=20))
    train(s["state"], s["step"], data, cfg=cfg20, seed=0, workdir=str(tmp_path / "b"))
    resumed, _ = train(s["state"], s["step"], data, cfg=cfg, seed=0,
                       workdir=str(tmp_path / "b"))
    jax.tree_util.tree_map(np.testing.assert_array_equal, resumed.params, state.params)
