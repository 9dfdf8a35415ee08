"""genjax.xla: which XLA options the compiled programs get, and what they change."""

import re

import jax
import jax.numpy as jnp
import ml_collections
import pytest

from genjax import xla
from genjax.nn import loop_conv
from genjax.train import config as cfglib

CONV_ARGS = (jnp.ones((64, 14, 14, 32)), jnp.ones((3, 3, 32, 32)))


def _conv(x, w):
    return loop_conv._lax_conv(x, w, (1, 1), ((1, 1), (1, 1)))


@pytest.fixture(autouse=True)
def _reset(monkeypatch):
    monkeypatch.delenv(xla.ENV, raising=False)
    yield
    xla.configure(None)


def _hlo(fn, *args) -> str:
    return xla.jit(fn).lower(*args).compile().as_text()


def test_parse_accepts_the_three_forms_and_names_the_fix_otherwise():
    assert xla.parse("auto") is None
    assert xla.parse("none") == {} and xla.parse("") == {}
    assert xla.parse(f" {xla.YNN}=LIBRARY_FUSION_TYPE_REDUCE; xla_cpu_foo= ") == {
        xla.YNN: "LIBRARY_FUSION_TYPE_REDUCE", "xla_cpu_foo": ""}
    for bad in ("fast", "ynn=reduce", f"{xla.YNN}=A;oops"):
        with pytest.raises(ValueError, match="NAME=VALUE"):
            xla.parse(bad)


def test_auto_applies_only_on_cpus_and_explicit_options_everywhere(monkeypatch):
    assert xla.compiler_options("cpu") == xla.CPU_DEFAULT
    assert xla.compiler_options("gpu") == {} and xla.compiler_options("tpu") == {}
    monkeypatch.setenv(xla.ENV, "none")
    assert xla.compiler_options("cpu") == {}
    monkeypatch.setenv(xla.ENV, f"{xla.YNN}=")
    assert xla.compiler_options("gpu") == {xla.YNN: ""}
    xla.configure("auto")                          # the config wins over the environment
    assert xla.compiler_options("cpu") == xla.CPU_DEFAULT
    xla.configure(None)
    monkeypatch.setenv(xla.ENV, "fast")
    with pytest.raises(ValueError, match=f"^\\${xla.ENV}: .*NAME=VALUE"):
        xla.compiler_options()
    with pytest.raises(ValueError):
        xla.configure("bogus")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU options")
def test_auto_takes_convolutions_from_ynnpack_and_nothing_else():
    """The default sends this convolution to a YNNPACK fusion and `auto` does not (if a
    future jaxlib stops doing the former, the choice needs measuring again); a program
    without convolutions compiles to the same code under both."""
    xla.configure("none")
    assert "ynn_fusion" in _hlo(_conv, *CONV_ARGS)
    xla.configure("auto")
    assert "ynn_fusion" not in _hlo(_conv, *CONV_ARGS)

    def no_conv(a, b):
        return jnp.sum(jnp.tanh(a @ b), 0), jnp.max(a, 1), jax.nn.logsumexp(a @ b.T, 1)

    args = (jnp.ones((128, 256)), jnp.ones((256, 256)))
    strip = lambda t: re.sub(r", metadata=\{[^}]*\}", "", t)   # noqa: E731
    xla.configure("none")
    default = strip(_hlo(no_conv, *args))
    xla.configure("auto")
    assert "ynn_fusion" in default and strip(_hlo(no_conv, *args)) == default


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="auto is XLA's default off CPUs")
def test_loop_conv_picks_the_weight_gradient_by_where_convolutions_run():
    xla.configure("none")
    assert loop_conv.weight_grad_path(8, (1, 1)) == "rows"
    assert loop_conv.weight_grad_path(1, (1, 1)) == "im2col"
    assert loop_conv.weight_grad_path(32, (2, 2)) == "im2col"
    xla.configure("auto")
    assert not loop_conv.convolutions_on_ynnpack()
    assert loop_conv.weight_grad_path(32, (2, 2)) == "swapped"
    with loop_conv.forced_weight_grad("products"):
        assert loop_conv.weight_grad_path(32, (1, 1)) == "rows"
    with pytest.raises(ValueError, match="one of"):
        with loop_conv.forced_weight_grad("fast"):
            pass


def _config(spec):
    return ml_collections.ConfigDict({"train": {"xla_options": spec}})


def test_config_rejects_bad_options_in_one_line():
    cfglib.validate_xla_options(_config("auto"))
    with pytest.raises(cfglib.ConfigError, match="^--config.train.xla_options='turbo'.*"
                                                 "expected.*NAME=VALUE"):
        cfglib.validate_xla_options(_config("turbo"))
    with pytest.raises(cfglib.ConfigError, match="XLA rejected.*not a valid enum value"):
        cfglib.validate_xla_options(_config(f"{xla.YNN}=LIBRARY_FUSION_TYPE_WARP"))


WG_CASES = [((3, 8, 8, 3), (3, 3), (1, 1), "SAME", 5),
            ((3, 8, 8, 9), (3, 3), (1, 1), "SAME", 4),      # rows (Cin >= 8)
            ((2, 9, 9, 5), (4, 4), (2, 2), "SAME", 6),      # odd size, stride 2
            ((2, 7, 7, 4), (3, 3), (2, 2), "VALID", 3),
            ((2, 6, 6, 4), (1, 1), (1, 1), "SAME", 3)]


@pytest.mark.parametrize("shape, kernel, strides, pad, cout", WG_CASES)
def test_every_weight_gradient_path_equals_jaxs_own(shape, kernel, strides, pad, cout):
    """Each path's dW against jax.vjp of lax.conv_general_dilated, also as the body of a
    lax.scan (where XLA:CPU compiles convolutions differently), under genjax's options."""
    x = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), kernel + (shape[-1], cout))
    pads = loop_conv.conv_padding(pad, kernel, strides, shape[1:3])
    y, vjp = jax.vjp(lambda w: loop_conv._lax_conv(x, w, strides, pads), w)
    dy = jax.random.normal(jax.random.key(2), y.shape)
    ref = vjp(dy)[0]
    for name, fn in loop_conv.WEIGHT_GRAD_PATHS.items():
        if name == "rows" and strides != (1, 1):
            with pytest.raises(ValueError, match="stride 1"):
                fn(x, dy, kernel, strides, pads)
            continue

        def scanned(x, dy, fn=fn):
            def body(c, _):
                return c + fn(x + c[0, 0, 0, 0], dy, kernel, strides, pads), None
            return jax.lax.scan(body, jnp.zeros_like(ref), None, length=2)[0]

        got = xla.jit(lambda x, dy, fn=fn: fn(x, dy, kernel, strides, pads))(x, dy)
        assert got.shape == ref.shape
        assert jnp.allclose(got, ref, atol=1e-4, rtol=1e-4), name
        # two steps: the second sees x shifted by the first's dW[0,0,0,0]
        shifted = jax.vjp(lambda w: loop_conv._lax_conv(x + ref[0, 0, 0, 0], w, strides,
                                                        pads), w)[1](dy)[0]
        assert jnp.allclose(xla.jit(scanned)(x, dy), ref + shifted, atol=1e-3, rtol=1e-4), name


@pytest.mark.parametrize("path", ["products", "swapped"])
def test_conv_layer_gradients_match_jax_on_either_path(path):
    """The whole custom VJP (weight and input gradients) of a stride-2 layer, each weight
    path forced, against JAX differentiating lax.conv_general_dilated."""
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    w = jax.random.normal(jax.random.key(1), (4, 4, 3, 5))
    pads = loop_conv.conv_padding("SAME", (4, 4), (2, 2), (8, 8))

    def loss(conv):
        return lambda x, w: jnp.sum(jnp.sin(conv(x, w, (2, 2), pads)))

    ref = jax.grad(loss(loop_conv._lax_conv), (0, 1))(x, w)
    with loop_conv.forced_weight_grad(path):
        got = xla.jit(jax.grad(loss(loop_conv.conv2d), (0, 1)))(x, w)
    for a, b in zip(got, ref):
        assert jnp.allclose(a, b, atol=1e-4, rtol=1e-4)
