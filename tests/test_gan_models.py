"""The GAN players and their building blocks: DCGAN shapes and ranges, the loop-friendly
convolutions against Flax's, batch-statistics normalisation, and the toy's mode metrics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genjax import data as gdata
from genjax.eval import gan_toy
from genjax.models.dcgan import DCGANDiscriminator, DCGANGenerator
from genjax.models.gan import MLPDiscriminator, MLPGenerator
from genjax.nn import loop_conv
from genjax.nn.batch_stat_norm import BatchStatNorm


@pytest.mark.parametrize("shape", [(28, 28, 1),
                                   pytest.param((32, 32, 3), marks=pytest.mark.slow)])
def test_dcgan_shapes_and_ranges(shape):
    g_def, g = nnx.split(DCGANGenerator(16, shape, channels=8, rngs=nnx.Rngs(0)))
    d_def, d = nnx.split(DCGANDiscriminator(shape, channels=8, rngs=nnx.Rngs(1)))
    x, logits = jax.jit(lambda g, d, z: (lambda x: (x, nnx.merge(d_def, d)(x)))(
        nnx.merge(g_def, g)(z)))(g, d, jax.random.normal(jax.random.key(0), (5, 16)))
    assert x.shape == (5,) + shape
    assert float(jnp.max(jnp.abs(x))) <= 1.0                       # tanh
    assert logits.shape == (5,)
    with pytest.raises(ValueError, match="divisible by 4"):
        DCGANGenerator(16, (30, 30, 1), rngs=nnx.Rngs(0))


def test_mlp_players_shapes():
    g = MLPGenerator(4, 2, hidden=(8, 8), rngs=nnx.Rngs(0))
    d = MLPDiscriminator(2, hidden=(8,), rngs=nnx.Rngs(1))
    x = g(jnp.ones((3, 4)))
    assert x.shape == (3, 2) and d(x).shape == (3,)


@pytest.mark.slow
def test_discriminator_scores_each_example_on_its_own():
    d_def, d = nnx.split(DCGANDiscriminator((28, 28, 1), channels=4, rngs=nnx.Rngs(1)))
    f = jax.jit(lambda d, x: nnx.merge(d_def, d)(x))
    x = jax.random.normal(jax.random.key(0), (6, 28, 28, 1))
    np.testing.assert_allclose(f(d, x)[:2], f(d, x[:2]), rtol=1e-5, atol=1e-6)


SLOW = pytest.mark.slow     # each case compiles two layers' gradients (3-5 s)
CASES = [  # (transposed?, input shape, Cin, Cout, stride, kernel, padding)
    pytest.param(False, (4, 14, 14, 8), 8, 16, 2, 4, "SAME", marks=SLOW),
    (False, (4, 28, 28, 1), 1, 8, 2, 4, "SAME"),        # the DCGAN D's first layer
    (False, (3, 10, 9, 8), 8, 6, 1, 3, "SAME"),         # U-Net 3x3: per-row weight gradient
    (False, (2, 9, 11, 12), 12, 4, 1, 2, "VALID"),      # per-row, even kernel, no padding
    pytest.param(False, (4, 7, 7, 3), 3, 5, 2, 3, "SAME", marks=SLOW),     # odd size
    pytest.param(False, (4, 9, 9, 3), 3, 5, 1, 3, "SAME", marks=SLOW),
    pytest.param(False, (4, 12, 12, 3), 3, 2, 3, 5, "VALID", marks=SLOW),
    (True, (4, 7, 7, 16), 16, 8, 2, 4, "SAME"),         # the DCGAN G's first: phases
    pytest.param(True, (4, 14, 14, 8), 8, 1, 2, 4, "SAME", marks=SLOW),   # combined
    pytest.param(True, (4, 5, 5, 3), 3, 2, 2, 3, "SAME", marks=SLOW),
    pytest.param(True, (4, 5, 5, 3), 3, 2, 2, 4, "VALID", marks=SLOW),
    pytest.param(True, (4, 4, 4, 3), 3, 2, 3, 5, "SAME", marks=SLOW),
]


@pytest.mark.parametrize("transposed, shape, cin, cout, s, k, pad", CASES)
def test_loop_conv_equals_flax_values_and_gradients(transposed, shape, cin, cout, s, k, pad):
    ref_cls, cls = ((nnx.ConvTranspose, loop_conv.ConvTranspose) if transposed
                    else (nnx.Conv, loop_conv.Conv))
    g_ref, p_ref = nnx.split(ref_cls(cin, cout, (k, k), strides=s, padding=pad,
                                     rngs=nnx.Rngs(0)))
    g_new, p_new = nnx.split(cls(cin, cout, (k, k), strides=s, padding=pad,
                                 rngs=nnx.Rngs(0)))
    np.testing.assert_array_equal(p_ref["kernel"][...], p_new["kernel"][...])
    x = jax.random.normal(jax.random.key(1), shape)

    def value_and_grads(g, p, x):
        y = nnx.merge(g, p)(x)
        w = jax.random.normal(jax.random.key(2), y.shape)
        grads = jax.grad(lambda p, x: jnp.sum(jnp.tanh(nnx.merge(g, p)(x)) * w),
                         argnums=(0, 1))(p, x)
        return y, grads

    y_ref, d_ref = jax.jit(value_and_grads, static_argnums=0)(g_ref, p_ref, x)
    y_new, d_new = jax.jit(value_and_grads, static_argnums=0)(g_new, p_new, x)
    assert y_ref.shape == y_new.shape
    np.testing.assert_allclose(y_new, y_ref, rtol=1e-5, atol=1e-5)
    for name in ("kernel", "bias"):
        a, b = d_ref[0][name][...], d_new[0][name][...]
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4 * float(jnp.abs(a).max()))
    np.testing.assert_allclose(d_new[1], d_ref[1], rtol=1e-4,
                               atol=1e-4 * float(jnp.abs(d_ref[1]).max()))


@pytest.mark.parametrize("transposed", [False, True])
def test_loop_conv_accelerator_path_is_xlas_own(transposed, monkeypatch):
    """Off CPUs the layers call XLA's convolutions: forced here, the same layer gives the
    CPU path's values and gradients, and its gradient graph is JAX's own (no im2col
    concatenation)."""
    cls = loop_conv.ConvTranspose if transposed else loop_conv.Conv
    g, p = nnx.split(cls(3, 4, (3, 3), strides=2, rngs=nnx.Rngs(0)))
    x = jax.random.normal(jax.random.key(1), (2, 6, 6, 3))

    def loss(p, x):
        return jnp.sum(jnp.sin(nnx.merge(g, p)(x)))

    cpu = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, x)
    monkeypatch.setattr(loop_conv, "native", lambda: True)
    acc = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, x)
    np.testing.assert_allclose(acc[0]["kernel"][...], cpu[0]["kernel"][...], rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(acc[1], cpu[1], rtol=1e-4, atol=1e-5)
    text = jax.make_jaxpr(jax.grad(loss))(p, x).pretty_print()
    assert "custom_vjp" not in text and "concatenate" not in text


@pytest.mark.slow
def test_loop_conv_second_order_gradients_match():
    """WGAN-GP differentiates a gradient: the custom gradient is itself differentiable."""
    ref = nnx.Conv(2, 3, (4, 4), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    new = loop_conv.Conv(2, 3, (4, 4), strides=2, padding="SAME", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (3, 8, 8, 2))

    def gp(model):
        g, p = nnx.split(model)

        def penalty(p):
            gx = jax.grad(lambda x: jnp.sum(jnp.tanh(nnx.merge(g, p)(x))))(x)
            return jnp.sum(gx ** 2)
        return jax.jit(jax.grad(penalty))(p)["kernel"][...]

    np.testing.assert_allclose(gp(new), gp(ref), rtol=1e-4, atol=1e-5)


def test_batch_stat_norm_uses_the_batch_statistics():
    x = jax.random.normal(jax.random.key(0), (8, 5, 5, 3)) * 3.0 + 2.0
    norm = BatchStatNorm(3)
    y = np.asarray(norm(x))
    np.testing.assert_allclose(y.mean((0, 1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.std((0, 1, 2)), 1.0, rtol=1e-3)    # biased std, eps 1e-5
    xs = np.asarray(x)
    ref = (xs - xs.mean((0, 1, 2))) / np.sqrt(xs.var((0, 1, 2)) + 1e-5)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)
    # parameters only: no running averages to thread through a pure step
    assert set(nnx.state(norm, nnx.Param).keys()) == {"scale", "bias"}
    assert len(jax.tree_util.tree_leaves(nnx.state(norm))) == 2


# ------------------------------------------------------------------------ toy metrics

CENTRES = gdata.eight_gaussians_centres()
STD = gdata.EIGHT_GAUSSIANS_STD


def test_the_data_itself_covers_every_mode_with_high_quality():
    ds = gdata.load("eight_gaussians")
    m = gan_toy.mode_metrics(ds.test, CENTRES, std=STD)
    assert m["modes_covered"] == 8
    assert m["high_quality_fraction"] > 0.985        # P(chi_2 <= 9) = 0.989
    assert m["mode_kl"] < 0.01


def test_mode_collapse_shows_in_the_metrics():
    r = np.random.default_rng(0)
    collapsed = CENTRES[r.integers(0, 2, 4000)] + STD * r.normal(size=(4000, 2))
    m = gan_toy.mode_metrics(collapsed, CENTRES, std=STD)
    assert m["modes_covered"] == 2
    np.testing.assert_allclose(m["mode_kl"], np.log(4), atol=0.01)   # 2 of 8 modes
    one = CENTRES[[3] * 1000] + STD * r.normal(size=(1000, 2))
    m1 = gan_toy.mode_metrics(one, CENTRES, std=STD)
    assert m1["modes_covered"] == 1
    np.testing.assert_allclose(m1["mode_kl"], np.log(8), rtol=1e-9)
    assert m1["mode_share/3"] > 0.98


def test_kl_to_uniform():
    assert gan_toy.kl_to_uniform([5, 5, 5, 5]) == 0.0
    np.testing.assert_allclose(gan_toy.kl_to_uniform([0, 9, 0]), np.log(3))
    np.testing.assert_allclose(gan_toy.kl_to_uniform([1, 3]),
                               0.25 * np.log(0.5) + 0.75 * np.log(1.5))
    np.testing.assert_allclose(gan_toy.kl_to_uniform([0, 0]), np.log(2))


def test_high_quality_counts_only_samples_near_a_mode():
    # 1,000 points spread uniformly over the plane: almost none within 3 std of a mode
    spread = np.random.default_rng(1).uniform(-2.5, 2.5, size=(1000, 2))
    m = gan_toy.mode_metrics(spread, CENTRES, std=STD)
    assert m["high_quality_fraction"] < 0.01 and m["modes_covered"] == 0
    exact = np.concatenate([CENTRES + [[2.9 * STD, 0.0]], CENTRES + [[3.1 * STD, 0.0]],
                            [[np.nan, 0.0]]])
    m = gan_toy.mode_metrics(exact, CENTRES, std=STD, min_fraction=0.05)
    np.testing.assert_allclose(m["high_quality_fraction"], 8 / 17)
    assert m["modes_covered"] == 8
