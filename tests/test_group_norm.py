"""genjax.nn.GroupNorm against flax.nnx.GroupNorm: values, gradients, parameters."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from genjax.nn import GroupNorm


@pytest.mark.parametrize("shape,groups", [((3, 6, 5, 16), 8), ((2, 7, 32), 4), ((4, 3, 3, 8), 1),
                                          ((2, 4, 4, 6), 6)])
def test_group_norm_equals_flax_with_gradients(shape, groups):
    c = shape[-1]
    kx, ks, kb, kg = jax.random.split(jax.random.key(0), 4)
    x = 3.0 * jax.random.normal(kx, shape) + 2.0
    ours, theirs = GroupNorm(c, num_groups=groups), nnx.GroupNorm(c, num_groups=groups,
                                                                 rngs=nnx.Rngs(0))
    assert jax.tree_util.tree_structure(nnx.state(ours, nnx.Param)) == \
        jax.tree_util.tree_structure(nnx.state(theirs, nnx.Param))
    scale, bias = 1.0 + 0.5 * jax.random.normal(ks, (c,)), jax.random.normal(kb, (c,))
    for m in (ours, theirs):
        m.scale[...], m.bias[...] = scale, bias
    g = jax.random.normal(kg, shape)

    def apply_and_grads(m):          # jitted: eager Flax modules dispatch op by op
        gd, p = nnx.split(m)
        f = lambda x, p: jnp.sum(nnx.merge(gd, p)(x) * g)               # noqa: E731
        return (jax.jit(lambda x, p: nnx.merge(gd, p)(x))(x, p),
                jax.jit(jax.grad(f, argnums=(0, 1)))(x, p))

    (y_o, (gx_o, gp_o)), (y_t, (gx_t, gp_t)) = apply_and_grads(ours), apply_and_grads(theirs)
    np.testing.assert_allclose(y_o, y_t, atol=2e-5, rtol=1e-5)

    np.testing.assert_allclose(gx_o, gx_t, atol=2e-5, rtol=1e-4)
    for a, b in zip(jax.tree_util.tree_leaves(gp_o), jax.tree_util.tree_leaves(gp_t)):
        np.testing.assert_allclose(a, b, atol=2e-4, rtol=1e-4)


def test_group_norm_output_has_zero_mean_unit_variance_per_group():
    x = 5.0 * jax.random.normal(jax.random.key(1), (2, 9, 9, 12)) - 3.0
    y = np.asarray(GroupNorm(12, num_groups=3)(x)).reshape(2, 81, 3, 4)
    np.testing.assert_allclose(y.mean((1, 3)), 0.0, atol=1e-5)
    np.testing.assert_allclose(y.var((1, 3)), 1.0, atol=1e-3)


def test_group_norm_rejects_channels_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="do not split"):
        GroupNorm(10, num_groups=4)
