"""genjax.flows.autoregressive (MAF, IAF) and genjax.nn.masked_mlp against mathematics:
the MADE conditioner is autoregressive (by its Jacobian) in every ordering, the maps
invert exactly, the log-determinants equal slogdet of the jax.jacfwd Jacobian, the
sampling scan equals an independent fixed-point solve, a MAF density integrates to one,
and a trained MAF reaches the true Gaussian's test NLL."""

import importlib.util
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from genjax.flows import transformers
from genjax.flows.autoregressive import (inverse_autoregressive, invert,
                                         masked_autoregressive)
from genjax.nn.masked_mlp import MaskedMLP, as_conditioner

D = 5
HIDDEN = (16, 16)
AFFINE = transformers.affine(max_log_scale=2.0)


def _made(dim=D, ordering="random", *, num_params=2, random=True, seed=0, scale=1.0):
    """(conditioner, params, order) of a MaskedMLP; ``random`` also draws the output
    layer and every bias (N(0, 0.3^2)) so that no connection is trivially zero."""
    model = MaskedMLP(dim, HIDDEN, num_params, ordering=ordering, mask_seed=seed,
                      zero_init=not random, rngs=nnx.Rngs(seed))
    conditioner, params, order = as_conditioner(model)
    if random:
        leaves, tree = jax.tree.flatten(params)
        keys = jax.random.split(jax.random.key(100 + seed), len(leaves))
        params = jax.tree.unflatten(tree, [
            scale * (a if a.ndim == 2 else 0.3 * jax.random.normal(k, a.shape))
            for a, k in zip(leaves, keys)])
    return conditioner, params, order


def _rank(order):
    rank = np.empty(len(order), np.int64)
    rank[np.asarray(order)] = np.arange(len(order))
    return rank


def _fixed_point_inverse(conditioner, transformer, params, z, dim):
    """An independent inverse of z = tau(x; c(x)): iterate x <- tau^-1(z; c(x)) on every
    dimension at once; after D sweeps each dimension is exact (its conditioner inputs
    were exact one sweep earlier), whatever the ordering."""
    x = jnp.zeros_like(z)
    for _ in range(dim):
        x, ld = transformer.inverse(z, conditioner(params, x))
    return x, ld.sum(-1)


@pytest.mark.parametrize("ordering", ["natural", "reverse", "random"])
def test_conditioner_and_maf_jacobians_respect_the_ordering(ordering):
    conditioner, params, order = _made(ordering=ordering, seed=3)
    if ordering == "natural":
        np.testing.assert_array_equal(order, np.arange(D))
    if ordering == "reverse":
        np.testing.assert_array_equal(order, np.arange(D)[::-1])
    rank = _rank(order)
    forward, _ = masked_autoregressive(conditioner, AFFINE, D, order)
    x = jax.random.normal(jax.random.key(1), (4, D))

    @jax.jit
    def jacobians(x):
        jt = jax.vmap(jax.jacfwd(lambda v: conditioner(params, v[None])[0]))(x)  # [B,D,P,D]
        jz = jax.vmap(jax.jacfwd(lambda v: forward(params, v[None])[0][0]))(x)   # [B,D,D]
        return jt, jz

    jt, jz = jacobians(x)
    before = rank[None, :] < rank[:, None]              # [d, d']: d' strictly before d
    np.testing.assert_array_equal(jt.transpose(0, 2, 1, 3)[:, :, ~before], 0.0)
    assert np.count_nonzero(np.abs(jt).sum((0, 2)) * before) > before.sum() // 2
    np.testing.assert_array_equal(jz[:, ~(before | np.eye(D, dtype=bool))], 0.0)
    assert np.all(np.abs(jnp.diagonal(jz, axis1=1, axis2=2)) > 1e-3)


def _flows(conditioner, params, order, transformer=AFFINE, dim=D):
    return {"maf": masked_autoregressive(conditioner, transformer, dim, order),
            "iaf": inverse_autoregressive(conditioner, transformer, dim, order)}


def _check_bijector(bijector, params, x, *, atol=2e-5, ld_atol=2e-4):
    """inverse(forward(x)) = x, forward(inverse(x)) = x, and both log-determinants equal
    slogdet of the jacfwd Jacobian, per example."""
    forward, inverse = bijector

    @jax.jit
    def run(x):
        y, ld = forward(params, x)
        back, ld_back = inverse(params, y)
        u, ld_u = inverse(params, x)
        again, ld_again = forward(params, u)
        jf = jax.vmap(jax.jacfwd(lambda v: forward(params, v[None])[0][0]))(x)
        ji = jax.vmap(jax.jacfwd(lambda v: inverse(params, v[None])[0][0]))(x)
        return (y, ld, back, ld_back, ld_u, again, ld_again,
                jnp.linalg.slogdet(jf), jnp.linalg.slogdet(ji))

    y, ld, back, ld_back, ld_u, again, ld_again, (sf, lf), (si, li) = run(x)
    assert ld.shape == ld_u.shape == (x.shape[0],)
    np.testing.assert_allclose(back, x, atol=atol)
    np.testing.assert_allclose(again, x, atol=atol)
    np.testing.assert_allclose(ld_back, -ld, atol=ld_atol)
    np.testing.assert_allclose(ld_again, -ld_u, atol=ld_atol)
    assert np.all(sf != 0) and np.all(si != 0)
    np.testing.assert_allclose(ld, lf, atol=ld_atol)
    np.testing.assert_allclose(ld_u, li, atol=ld_atol)
    assert np.abs(ld).max() > 0.1                       # a non-trivial map


@pytest.mark.parametrize("kind", ["maf", "iaf"])
def test_inverse_and_log_determinant_against_the_jacobian(kind):
    conditioner, params, order = _made(seed=1)
    x = jax.random.normal(jax.random.key(2), (3, D))
    _check_bijector(_flows(conditioner, params, order)[kind], params, x)


def test_the_sampling_scan_equals_a_fixed_point_solve():
    conditioner, params, order = _made(seed=2)
    maf_f, maf_i = masked_autoregressive(conditioner, AFFINE, D, order)
    iaf_f, iaf_i = inverse_autoregressive(conditioner, AFFINE, D, order)
    z = jax.random.normal(jax.random.key(3), (6, D))

    @jax.jit
    def run(z):
        return (maf_i(params, z), _fixed_point_inverse(conditioner, AFFINE, params, z, D),
                iaf_f(params, z), iaf_i(params, z), maf_f(params, z))

    (x_scan, ld_scan), (x_ref, ld_ref), iaf_fwd, iaf_inv, maf_fwd = run(z)
    np.testing.assert_allclose(x_scan, x_ref, atol=1e-5)
    np.testing.assert_allclose(ld_scan, ld_ref, atol=1e-5)
    # IAF's forward is MAF's scan, its inverse MAF's single pass
    np.testing.assert_allclose(iaf_fwd[0], x_ref, atol=1e-5)
    np.testing.assert_allclose(iaf_fwd[1], ld_ref, atol=1e-5)
    np.testing.assert_allclose(iaf_inv[0], maf_fwd[0], atol=1e-6)
    np.testing.assert_allclose(iaf_inv[1], maf_fwd[1], atol=1e-6)
    f, i = invert(invert((maf_f, maf_i)))
    assert f is maf_f and i is maf_i


def test_zero_initialised_flows_are_the_identity():
    conditioner, params, order = _made(random=False, ordering="random", seed=4)
    x = jax.random.normal(jax.random.key(4), (3, D))
    for forward, inverse in _flows(conditioner, params, order).values():
        for fn in (forward, inverse):
            y, ld = jax.jit(fn)(params, x)
            np.testing.assert_array_equal(y, x)
            np.testing.assert_array_equal(ld, 0.0)


def test_bad_order_and_conditioner_shapes_are_errors():
    conditioner, params, _ = _made(seed=0)
    with pytest.raises(ValueError, match="permutation"):
        masked_autoregressive(conditioner, AFFINE, D, [0, 1, 2, 3, 3])
    forward, _ = masked_autoregressive(conditioner, transformers.Transformer(
        3, AFFINE.forward, AFFINE.inverse), D)
    with pytest.raises(ValueError, match="num_params"):
        forward(params, jnp.zeros((2, D)))


def test_maf_density_integrates_to_one():
    conditioner, params, order = _made(2, "natural", seed=5)
    forward, _ = masked_autoregressive(conditioner, AFFINE, 2, order)
    grid = jnp.linspace(-8.0, 8.0, 400)
    xs = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)

    @jax.jit
    def density(x):
        z, ld = forward(params, x)
        return jnp.exp(-0.5 * jnp.sum(z ** 2, -1) - math.log(2 * math.pi) + ld)

    p = np.asarray(density(xs), np.float64).reshape(400, 400)
    assert np.abs(np.asarray(forward(params, xs)[1])).max() > 0.5     # not near identity
    total = np.trapezoid(np.trapezoid(p, np.asarray(grid), axis=1), np.asarray(grid))
    assert abs(total - 1.0) < 1e-3, total


def test_maf_fits_a_correlated_gaussian():
    key = jax.random.key(6)
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])

    def draw(k, n):
        a, b = jax.random.normal(k, (2, n))
        return jnp.stack([a, 0.8 * a + 0.6 * b], -1)                  # [n, 2]

    train, test = draw(jax.random.fold_in(key, 0), 2000), draw(jax.random.fold_in(key, 1), 2000)
    conditioner, params, order = _made(2, "natural", random=False, seed=6)
    forward, _ = masked_autoregressive(conditioner, transformers.affine(), 2, order)

    def nll(params, x):                                   # mean nats per example
        z, ld = forward(params, x)
        return jnp.mean(0.5 * jnp.sum(z ** 2, -1) + math.log(2 * math.pi) - ld)

    tx = optax.adam(2e-2)

    @jax.jit
    def fit(params):
        def step(carry, _):
            params, opt = carry
            loss, grads = jax.value_and_grad(nll)(params, train)
            updates, opt = tx.update(grads, opt, params)
            return (optax.apply_updates(params, updates), opt), loss
        (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), None, 400)
        return params, losses

    params, _ = fit(params)
    prec = np.linalg.inv(cov)
    t = np.asarray(test, np.float64)
    true_nll = np.mean(0.5 * np.einsum("bi,ij,bj->b", t, prec, t)
                       + 0.5 * np.log(np.linalg.det(2 * np.pi * cov)))
    model_nll = float(nll(params, test))
    assert model_nll - true_nll < 0.05, (model_nll, true_nll)


def test_maf_with_the_rq_spline():
    if importlib.util.find_spec("genjax.flows.splines") is None:
        pytest.skip("genjax.flows.splines is not written yet")
    from genjax.flows.splines import rq_spline
    spline = rq_spline(num_bins=4, bound=3.0)
    conditioner, params, order = _made(num_params=spline.num_params, seed=7)
    x = 1.5 * jax.random.normal(jax.random.key(8), (3, D))    # some outside the bound
    maf = masked_autoregressive(conditioner, spline, D, order)
    _check_bijector(maf, params, x, atol=1e-4, ld_atol=1e-3)
