"""genjax.losses.flow: the dequantised, logit-space NLL counts every Jacobian."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.losses import flow as fl


def test_logit_transform_log_determinant_against_the_jacobian():
    u = jax.random.uniform(jax.random.key(0), (2, 5))
    y, ld = fl.logit_transform(u, alpha=0.05)
    for i in range(2):
        jac = jax.jacfwd(lambda v: fl.logit_transform(v[None], alpha=0.05)[0][0])(u[i])
        np.testing.assert_allclose(ld[i], jnp.linalg.slogdet(jac)[1], rtol=1e-5)


def _uniform_in_u(alpha):
    """log p_Y(y) of the model under which u is uniform on (0, 1)^D: p = sigmoid(y) is
    uniform on (alpha, 1 - alpha)."""
    def log_prob(y):
        terms = jax.nn.log_sigmoid(y) + jax.nn.log_sigmoid(-y) - math.log(1 - 2 * alpha)
        return terms.reshape(y.shape[0], -1).sum(-1)
    return log_prob


def test_a_uniform_model_costs_exactly_8_bits_per_dim():
    """If the flow makes u uniform on the unit cube, x + v is uniform on [0, 256)^D: 8
    bits per pixel, whatever the images; a dropped Jacobian would move this."""
    x = jax.random.randint(jax.random.key(1), (4, 3, 3, 1), 0, 256).astype(jnp.uint8)
    for alpha in (0.05, 1e-3):
        loss, m = fl.flow_nll(x, jax.random.key(2), log_prob_fn=_uniform_in_u(alpha),
                              alpha=alpha)
        np.testing.assert_allclose(m["bits_per_dim"], 8.0, atol=1e-4)
        np.testing.assert_allclose(loss, 9 * math.log(256), rtol=1e-5)


def test_a_sharper_model_on_constant_images_costs_fewer_bits():
    """Images all 128: a narrow Gaussian at logit(0.05 + 0.9 * 128.5 / 256) in y-space
    puts its mass where the dequantised pixels fall, so below 8 bits/dim; a Gaussian far
    away, above."""
    x = jnp.full((8, 2, 2, 1), 128, jnp.uint8)
    centre = math.log(0.05 + 0.9 * 128.5 / 256) - math.log1p(-(0.05 + 0.9 * 128.5 / 256))

    def gauss(mu, sd):
        return lambda y: jnp.sum(-0.5 * ((y - mu) / sd) ** 2 - math.log(sd)
                                 - 0.5 * math.log(2 * math.pi), axis=(1, 2, 3))

    near = fl.flow_nll(x, jax.random.key(3), log_prob_fn=gauss(centre, 0.01))[1]
    far = fl.flow_nll(x, jax.random.key(3), log_prob_fn=gauss(centre + 3.0, 0.01))[1]
    assert near["bits_per_dim"] < 8.0 < far["bits_per_dim"]


@pytest.mark.parametrize("bad, match", [
    (np.array([[0, 256]]), "outside 0..255"), (np.array([[-1.0, 3.0]]), "outside 0..255"),
    (np.array([[np.nan, 3.0]]), "NaN"), (np.array([[0.5, 3.0]]), "not integers")])
def test_images_outside_the_8_bit_support_are_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        fl.check_images_u8(bad)
    fl.check_images_u8(np.array([[0, 255]], np.uint8))
    fl.check_images_u8(np.array([[0.0, 255.0]]))
