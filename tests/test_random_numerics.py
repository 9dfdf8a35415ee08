"""genjax.random (jax.random's threefry draws, fused) and genjax.numerics (softplus)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import numerics
from genjax import random as grandom

SHAPES = [(), (5,), (128, 20), (7, 3, 2)]


def test_threefry_matches_the_published_known_answers():
    """Threefry-2x32, 20 rounds: the known-answer vectors of Salmon et al.'s Random123."""
    cases = [((0x0, 0x0), (0x0, 0x0), (0x6B200159, 0x99BA4EFE)),
             ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
             ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0))]
    for key, count, expected in cases:
        u32 = lambda v: jnp.asarray(v, jnp.uint32)  # noqa: E731
        out = grandom.threefry2x32(*map(u32, key), *map(u32, count))
        assert tuple(int(o) for o in out) == expected


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("jit", [False, True])
def test_draws_equal_jax_random_bit_for_bit(shape, jit):
    key = jax.random.key(3)
    wrap = jax.jit if jit else (lambda f: f)
    for name in ("uniform", "normal"):
        ours = wrap(lambda k: getattr(grandom, name)(k, shape))(key)
        theirs = wrap(lambda k: getattr(jax.random, name)(k, shape))(key)
        np.testing.assert_array_equal(ours, theirs)
        assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    p = jax.random.uniform(jax.random.key(1), shape)
    np.testing.assert_array_equal(wrap(grandom.bernoulli)(key, p), jax.random.bernoulli(key, p))


def test_draws_equal_jax_random_for_ranges_vmapped_and_legacy_keys():
    key = jax.random.key(7)
    np.testing.assert_array_equal(
        grandom.uniform(key, (1000,), minval=-2.0, maxval=3.0),
        jax.random.uniform(key, (1000,), minval=-2.0, maxval=3.0))
    np.testing.assert_array_equal(grandom.bernoulli(key, 0.3, (64, 9)),
                                  jax.random.bernoulli(key, 0.3, (64, 9)))
    keys = jax.random.split(key, 4)
    np.testing.assert_array_equal(jax.vmap(lambda k: grandom.normal(k, (3, 5)))(keys),
                                  jax.vmap(lambda k: jax.random.normal(k, (3, 5)))(keys))
    legacy = jax.random.PRNGKey(5)                        # raw uint32 [2] key
    np.testing.assert_array_equal(grandom.normal(legacy, (9,)), jax.random.normal(legacy, (9,)))


def test_other_key_implementations_and_dtypes_fall_back_to_jax_random():
    rbg = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(grandom.normal(rbg, (4, 3)), jax.random.normal(rbg, (4, 3)))
    key = jax.random.key(0)
    ours = grandom.uniform(key, (6,), jnp.bfloat16)
    assert ours.dtype == jnp.bfloat16
    np.testing.assert_array_equal(ours, jax.random.uniform(key, (6,), jnp.bfloat16))


def test_the_cpu_draw_is_one_fused_computation_without_a_loop():
    """The reason the module exists: on CPU jax.random lowers threefry as a while loop;
    ours is straight-line code that XLA fuses with its consumer."""
    if jax.default_backend() != "cpu":
        pytest.skip("the fast path is for the CPU backend")
    key = jax.random.key(0)

    def hlo(f):
        return jax.jit(lambda k: f(k, (128, 784))).lower(key).compile().as_text()

    assert "while" in hlo(jax.random.normal)
    assert "while" not in hlo(grandom.normal)


def test_softplus_and_log_sigmoid_match_jax_nn_with_their_gradients():
    x = jnp.concatenate([jnp.linspace(-100.0, 100.0, 2001),
                         jnp.array([0.0, -1e-7, 1e-7, 30.0, -30.0, 88.0, -88.0])])
    np.testing.assert_allclose(numerics.softplus(x), jax.nn.softplus(x), rtol=1e-6,
                               atol=1e-37)
    np.testing.assert_allclose(numerics.log_sigmoid(x), jax.nn.log_sigmoid(x), rtol=1e-6,
                               atol=1e-37)
    grad = jax.vmap(jax.grad(numerics.softplus))(x)
    np.testing.assert_allclose(grad, jax.nn.sigmoid(x), rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(jax.grad(numerics.log_sigmoid))(x),
                               jax.nn.sigmoid(-x), rtol=1e-6)
    # second derivative: sigmoid'(x) = s (1 - s)
    s = jax.nn.sigmoid(x)
    np.testing.assert_allclose(jax.vmap(jax.grad(jax.grad(numerics.softplus)))(x),
                               s * (1 - s), rtol=1e-5, atol=1e-30)


def test_softplus_is_exact_at_the_infinities_and_finite_for_large_inputs():
    x = jnp.array([-jnp.inf, jnp.inf, -1e30, 1e30])
    np.testing.assert_array_equal(numerics.softplus(x), np.float32([0.0, np.inf, 0.0, 1e30]))
    np.testing.assert_array_equal(jax.vmap(jax.grad(numerics.softplus))(x),
                                  [0.0, 1.0, 0.0, 1.0])
    assert bool(jnp.isnan(numerics.softplus(jnp.nan)))


def test_tanh_sigmoid_is_within_1e6_of_the_logistic_function_everywhere():
    x = jnp.concatenate([jnp.linspace(-60.0, 60.0, 100_001), jnp.array([-jnp.inf, jnp.inf])])
    err = jnp.abs(numerics.sigmoid(x) - jax.nn.sigmoid(x))
    assert float(jnp.max(err)) < 1e-6
    np.testing.assert_array_equal(numerics.sigmoid(jnp.array([-jnp.inf, 0.0, jnp.inf])),
                                  np.float32([0.0, 0.5, 1.0]))
