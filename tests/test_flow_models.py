"""genjax.models.flow: every model is a bijection whose log-determinant is the Jacobian's,
its density integrates to one, and its sampler draws from its own density."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from scipy import stats

from genjax.models import flow as fm


def _perturbed(model, key, scale=0.1):
    """The model with every trained parameter moved by N(0, scale^2): zero-initialised
    last layers (the identity at init) become non-trivial maps."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    leaves = [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
    return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves), rest)


# The spline transformer is tested on its own (test_flow_splines.py, and with MAF in
# test_flow_autoregressive.py); the default suite checks the affine vector models and the
# multi-scale Glow here, every other combination runs with the slow tests.
_SLOW = pytest.mark.slow
VECTOR_CASES = [pytest.param(name, t, marks=() if t == "affine" else _SLOW)
                for name in fm.NAMES for t in fm.TRANSFORMERS]
IMAGE_CASES = [pytest.param(name, t, marks=() if (name, t) == ("glow", "affine") else _SLOW)
               for name in ("realnvp", "glow") for t in fm.TRANSFORMERS]


def _vector_flow(name, transformer, dim=3, seed=0):
    model = fm.VectorFlow((dim,), name=name, num_layers=3, hidden=(16,),
                          transformer=transformer, max_log_scale=2.0, num_bins=5,
                          tail_bound=3.0, rngs=nnx.Rngs(seed))
    model.initialize(1.5 * jax.random.normal(jax.random.key(seed + 1), (64, dim)) + 0.3)
    return _perturbed(model, jax.random.key(seed + 2))


def _image_flow(name, transformer, levels=2):
    model = fm.MultiScaleFlow((4, 4, 1), name=name, levels=levels, steps=2, hidden=8,
                              transformer=transformer, max_log_scale=2.0, num_bins=5,
                              rngs=nnx.Rngs(0))
    model.initialize(jax.random.normal(jax.random.key(1), (32, 4, 4, 1)))
    return _perturbed(model, jax.random.key(2))


def _check_bijection(model, x, flat_dim):
    z, ld = jax.jit(lambda v: model.forward(v))(x)
    x_back, ld_inv = jax.jit(model.inverse)(z)
    np.testing.assert_allclose(x_back, x, atol=2e-4)
    np.testing.assert_allclose(ld_inv, -ld, rtol=1e-4, atol=2e-4)
    # brute force: log|det| of the [D, D] Jacobian of one example's flat map (jacrev: the
    # conv layers have a custom VJP, so no forward mode)
    jac = jax.jit(jax.vmap(jax.jacrev(
        lambda v: model.forward(v[None])[0][0])))(x)
    jac = jac.reshape(x.shape[0], flat_dim, flat_dim)
    np.testing.assert_allclose(jnp.linalg.slogdet(jac)[1], ld, rtol=1e-4, atol=2e-4)
    assert float(jnp.abs(ld).max()) > 1e-2          # not the identity


@pytest.mark.parametrize("name, transformer", VECTOR_CASES)
def test_vector_flows_invert_and_count_their_jacobian(name, transformer):
    model = _vector_flow(name, transformer)
    x = 2.0 * jax.random.normal(jax.random.key(5), (4, 3))
    _check_bijection(model, x, 3)


@pytest.mark.parametrize("name, transformer", IMAGE_CASES)
def test_multiscale_flows_invert_and_count_their_jacobian(name, transformer):
    model = _image_flow(name, transformer)
    x = jax.random.normal(jax.random.key(5), (3, 4, 4, 1))
    _check_bijection(model, x, 16)


@pytest.mark.slow
def test_multiscale_factor_out_sends_each_level_to_the_base():
    """RealNVP at 8x8, 2 levels: half of the 4x4x4 squeezed channels leave after level 0
    (32 numbers), the other 32 continue; z holds all 64, and log_prob is the standard
    normal of z plus the log-determinant."""
    model = _image_flow("realnvp", "affine")
    assert model.kept == [(2, 2, 2), (2, 2, 2)]
    x = jax.random.normal(jax.random.key(3), (2, 4, 4, 1))
    z, ld = model.forward(x)
    assert z.shape == (2, 16)
    want = stats.norm.logpdf(np.asarray(z)).sum(-1) + np.asarray(ld)
    np.testing.assert_allclose(model.log_prob(x), want, rtol=1e-5)


def test_zero_initialised_flows_start_at_the_identity():
    """Zero last layers: RealNVP (no actnorm) is exactly the identity at init, so its
    log-density is the standard normal's."""
    model = fm.MultiScaleFlow((8, 8, 1), name="realnvp", levels=2, steps=2, hidden=8,
                              rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    np.testing.assert_allclose(model.log_prob(x),
                               stats.norm.logpdf(np.asarray(x)).sum((1, 2, 3)), rtol=1e-5)


def test_actnorm_initialisation_standardises_its_input_and_rejects_constant_channels():
    model = fm.VectorFlow((2,), name="glow", num_layers=1, hidden=(8,), rngs=nnx.Rngs(0))
    x = jnp.stack([3.0 + 2.0 * jax.random.normal(jax.random.key(0), (500,)),
                   -1.0 + 0.5 * jax.random.normal(jax.random.key(1), (500,))], -1)
    model.initialize(x)
    h, _ = model.layers[0].forward(x)                  # the first actnorm
    np.testing.assert_allclose(h.mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(h.std(0), 1.0, atol=1e-4)
    constant = x.at[:, 1].set(4.0)
    with pytest.raises(ValueError, match=r"channels \[1\] are constant"):
        fm.VectorFlow((2,), name="glow", num_layers=1, hidden=(8,),
                      rngs=nnx.Rngs(0)).initialize(constant)


def _grid(half_width, n):
    g = np.linspace(-half_width, half_width, n)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    return g[1] - g[0], np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)


@pytest.mark.parametrize("name, transformer", [
    ("realnvp", "affine"), pytest.param("realnvp", "spline", marks=_SLOW), ("maf", "affine"),
    ("glow", "affine")])
def test_a_2d_flow_density_integrates_to_one(name, transformer):
    """Quadrature of exp(log p) on a 500 x 500 grid over [-10, 10]^2 (the base's tails
    beyond hold < 1e-20 of the mass; the bounded log-scales keep the flow's within)."""
    model = _vector_flow(name, transformer, dim=2, seed=3)
    h, pts = _grid(10.0, 500)
    log_p = jax.jit(model.log_prob)(pts)
    total = float(np.exp(np.asarray(log_p, np.float64)).sum() * h * h)
    assert abs(total - 1.0) < 2e-3, total


def _chi_square_p(model, samples, edges):
    """p-value of the chi-square test that ``samples`` [N, 2] follow the model's density:
    cell probabilities from quadrature of exp(log_prob) (a 12x12 grid of cells over the
    box, plus one cell for everything outside), counts from the samples."""
    n_cells = len(edges) - 1
    fine = 40                                            # quadrature points per cell side
    h = (edges[1] - edges[0]) / fine
    g = edges[0] + h * (np.arange(n_cells * fine) + 0.5)
    gx, gy = np.meshgrid(g, g, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], -1).astype(np.float32)
    dens = np.exp(np.asarray(jax.jit(model.log_prob)(pts), np.float64)) * h * h
    probs = dens.reshape(n_cells, fine, n_cells, fine).sum((1, 3)).ravel()
    probs = np.append(probs, max(1.0 - probs.sum(), 0.0))
    s = np.asarray(samples, np.float64)
    inside = np.all((s >= edges[0]) & (s < edges[-1]), -1)
    ix = np.clip(np.searchsorted(edges, s[:, 0], side="right") - 1, 0, n_cells - 1)
    iy = np.clip(np.searchsorted(edges, s[:, 1], side="right") - 1, 0, n_cells - 1)
    counts = np.bincount((ix * n_cells + iy)[inside], minlength=n_cells ** 2)
    counts = np.append(counts, np.sum(~inside)).astype(np.float64)
    expected = probs * len(s)
    keep = expected > 5
    stat = np.sum((counts[keep] - expected[keep]) ** 2 / expected[keep])
    return stats.chi2.sf(stat, keep.sum() - 1)


@pytest.mark.parametrize("name, transformer", [("realnvp", "spline"), ("maf", "affine"),
                                               ("iaf", "affine")])
def test_samples_follow_log_prob(name, transformer):
    """Goodness of fit of 20,000 samples (the inverse map) against the density (the
    forward map and its log-determinant) on 145 cells, at significance 1e-3. Power: the
    same test rejects samples drawn at temperature 1.1 instead of 1 (p < 1e-6), a 10%
    error in scale."""
    model = _vector_flow(name, transformer, dim=2, seed=7)
    edges = np.linspace(-6.0, 6.0, 13)
    draw = jax.jit(model.sample, static_argnums=1)
    p_right = _chi_square_p(model, draw(jax.random.key(0), 20_000), edges)
    p_wrong = _chi_square_p(model, draw(jax.random.key(0), 20_000, 1.1), edges)
    assert p_right > 1e-3, p_right
    assert p_wrong < 1e-6, p_wrong


def test_a_linear_glow_step_fits_a_gaussian_by_maximum_likelihood():
    """A 'glow' vector flow whose coupling is frozen at the identity is affine: actnorm
    and an LU-parameterised linear map. Fitted by Adam to correlated 2-D Gaussian data,
    its density is N(m, C) with m and C the sample mean and covariance (the MLE)."""
    import optax
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([1.0, -2.0], [[2.0, 1.2], [1.2, 1.0]], 2000).astype(np.float32)
    model = fm.VectorFlow((2,), name="glow", num_layers=1, hidden=(4,), rngs=nnx.Rngs(0))
    model.initialize(jnp.asarray(x))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    labels = jax.tree.map(lambda _: "frozen", params)
    for i in (0, 1):                                    # actnorm, the linear map
        labels["layers"][i] = jax.tree.map(lambda _: "fit", params["layers"][i])
    lr = optax.cosine_decay_schedule(3e-2, 1500)
    tx = optax.multi_transform({"fit": optax.adam(lr), "frozen": optax.set_to_zero()},
                               labels)

    def loss(p):
        return -jnp.mean(nnx.merge(graphdef, p, rest).log_prob(jnp.asarray(x)))

    @jax.jit
    def fit(p):
        def step(carry, _):
            p, s = carry
            g = jax.grad(loss)(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        return jax.lax.scan(step, (p, tx.init(p)), None, length=1500)[0][0]

    fitted = nnx.merge(graphdef, fit(params), rest)
    mean, cov = x.mean(0), np.cov(x.T, bias=True)
    want = stats.multivariate_normal(mean, cov).logpdf(x)
    np.testing.assert_allclose(fitted.log_prob(jnp.asarray(x)), want, atol=2e-3)
    assert math.isclose(float(loss(fit(params))), -want.mean(), abs_tol=1e-3)
