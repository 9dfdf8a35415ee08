"""genjax.flows.bijectors against mathematics: each bijector inverts exactly and its
log-determinant equals slogdet of the Jacobian jax.jacfwd computes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax import flows



def _conditioner(key, shape):
    """A small nonlinear (shift, log_scale) network on one example's shape: a random
    dense map of the masked input (tanh-bounded log-scale)."""
    d = int(np.prod(shape))
    k1, k2 = jax.random.split(key)
    params = {"w": 0.3 * jax.random.normal(k1, (d, 2 * d)),
              "b": 0.1 * jax.random.normal(k2, (2 * d,))}

    def conditioner(p, xm):
        h = jnp.tanh(xm.reshape(xm.shape[0], -1) @ p["w"] + p["b"])        # [B, 2D]
        shift, raw = jnp.split(h, 2, -1)
        return shift.reshape(xm.shape), jnp.tanh(raw).reshape(xm.shape)
    return conditioner, params


def _cases():
    key = jax.random.key(0)
    img = (2, 4, 4, 2)
    cond_img, p_img = _conditioner(jax.random.fold_in(key, 1), img[1:])
    cond_vec, p_vec = _conditioner(jax.random.fold_in(key, 2), (6,))
    x_img = jax.random.normal(jax.random.fold_in(key, 3), img)
    an = flows.actnorm_init(x_img * 3.0 + 1.0)
    return {
        "coupling_checkerboard": (flows.affine_coupling(
            flows.checkerboard_mask(4, 4, 2), cond_img), p_img, img),
        "coupling_channel": (flows.affine_coupling(flows.channel_mask(2, parity=1), cond_img),
                             p_img, img),
        "coupling_vector": (flows.affine_coupling(flows.channel_mask(6), cond_vec), p_vec,
                            (3, 6)),
        "actnorm": (flows.actnorm(), an, img),
        "conv1x1": (flows.conv1x1(), flows.conv1x1_init(jax.random.fold_in(key, 4), 2), img),
        "permute": (flows.permute([2, 0, 1, 5, 4, 3]), None, (3, 6)),
        "squeeze": (flows.squeeze(), None, img),
        "chain": (flows.chain([flows.actnorm(), flows.conv1x1(), flows.affine_coupling(
            flows.checkerboard_mask(4, 4, 2, parity=1), cond_img), flows.squeeze()]),
            [an, flows.conv1x1_init(jax.random.fold_in(key, 5), 2), p_img, None], img),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_inverse_and_log_determinant_against_the_jacobian(name):
    (forward, inverse), params, shape = CASES[name]
    x = jax.random.normal(jax.random.key(7), shape)
    y, ld = forward(params, x)
    back, ld_inv = inverse(params, y)
    assert ld.shape == ld_inv.shape == (shape[0],)
    np.testing.assert_allclose(back, x, atol=2e-5)
    np.testing.assert_allclose(ld_inv, -ld, atol=1e-4)
    for i in range(shape[0]):
        def one(v, i=i):                    # one example's flat input -> flat output
            return forward(params, v.reshape((1,) + shape[1:]))[0].reshape(-1)
        jac = jax.jacfwd(one)(x[i].reshape(-1))
        sign, logabs = jnp.linalg.slogdet(jac)
        assert sign != 0
        np.testing.assert_allclose(ld[i], logabs, atol=2e-4, rtol=1e-5)
    if name not in ("permute", "squeeze"):
        assert not np.allclose(ld, 0)        # the test would see a dropped log-det


def test_actnorm_init_whitens_the_batch_and_conv1x1_is_a_rotation_at_init():
    x = 3.0 * jax.random.normal(jax.random.key(1), (64, 4, 4, 3)) + 2.0
    y, _ = flows.actnorm()[0](flows.actnorm_init(x), x)
    np.testing.assert_allclose(jnp.mean(y, (0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(jnp.std(y, (0, 1, 2)), 1, atol=1e-4)
    p = flows.conv1x1_init(jax.random.key(2), 5)
    w = flows.conv1x1_weight(p)
    np.testing.assert_allclose(w.T @ w, np.eye(5), atol=1e-5)
    np.testing.assert_allclose(jnp.sum(p["log_s"]), 0, atol=1e-5)   # |det| of a rotation


def test_masks_split_the_input_in_halves():
    m = flows.checkerboard_mask(4, 6, 3)
    assert m.shape == (4, 6, 3) and float(m.mean()) == 0.5
    np.testing.assert_array_equal(m + flows.checkerboard_mask(4, 6, 3, parity=1), 1)
    np.testing.assert_array_equal(flows.channel_mask(4), [1, 1, 0, 0])
    np.testing.assert_array_equal(flows.channel_mask(4, parity=1), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="even sides"):
        flows.squeeze()[0](None, jnp.zeros((1, 3, 4, 1)))


def test_a_linear_flow_fitted_by_maximum_likelihood_recovers_mean_and_covariance():
    """actnorm then a 1x1 "convolution" on 2-D vectors is the affine map z = (x + b) M
    (M = diag(e^s) W); under z ~ N(0, I) its maximum-likelihood fit must put the model's
    mean -b and covariance M^-T M^-1 at the sample mean and (1/N) covariance."""
    import optax

    key = jax.random.key(3)
    a = jnp.array([[1.5, 0.0], [0.9, 0.4]])
    x = jax.random.normal(key, (2000, 2)) @ a + jnp.array([2.0, -1.0])
    forward, _ = flows.chain([flows.actnorm(), flows.conv1x1()])
    params = [{"bias": jnp.zeros(2), "log_scale": jnp.zeros(2)},
              flows.conv1x1_init(jax.random.key(4), 2)]
    fixed = {k: params[1][k] for k in ("p", "sign")}       # the permutation and signs stay

    def nll(t):
        z, ld = forward([t[0], {**t[1], **fixed}], x)
        return -jnp.mean(-0.5 * jnp.sum(z ** 2, -1) - jnp.log(2 * jnp.pi) + ld)

    tx = optax.adam(0.05)
    t0 = [params[0], {k: v for k, v in params[1].items() if k not in fixed}]

    def step(carry, _):
        t, s = carry
        g = jax.grad(nll)(t)
        u, s = tx.update(g, s, t)
        return (optax.apply_updates(t, u), s), None

    t, _ = jax.jit(lambda t: jax.lax.scan(step, (t, tx.init(t)), None, length=1500)[0])(t0)
    m = jnp.diag(jnp.exp(t[0]["log_scale"])) @ flows.conv1x1_weight({**t[1], **fixed})
    m_inv = jnp.linalg.inv(m)
    np.testing.assert_allclose(-t[0]["bias"], x.mean(0), atol=2e-3)
    np.testing.assert_allclose(m_inv.T @ m_inv, jnp.cov(x.T, bias=True), rtol=2e-3, atol=2e-3)
