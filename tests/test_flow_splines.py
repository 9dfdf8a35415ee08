"""genjax.flows.splines against mathematics: the rational-quadratic spline inverts, its
log-derivative is jax.grad's, it is strictly increasing for extreme parameters, it is the
identity on the tails and at theta = 0, it matches a plain-loop numpy transcription of
Durkan et al.'s eq. 4-5, and the spline coupling's log-determinant is slogdet of the
jacfwd Jacobian. Exact checks run in float64 (jax.enable_x64) with tight tolerances."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from genjax.flows import splines

K, BOUND = 5, 2.0

_spline = jax.jit(splines.rational_quadratic_spline, static_argnames=("bound", "inverse"))


def _raw(key, batch_shape, scale=1.0, k=K, dtype=jnp.float64):
    kw, kh, kd = jax.random.split(key, 3)
    return (scale * jax.random.normal(kw, batch_shape + (k,), dtype),
            scale * jax.random.normal(kh, batch_shape + (k,), dtype),
            scale * jax.random.normal(kd, batch_shape + (k - 1,), dtype))


def _points(key, n, dtype=jnp.float64):
    """n points, about a third of them in each tail region |x| > BOUND."""
    return jax.random.uniform(key, (n,), dtype, -2.5 * BOUND, 2.5 * BOUND)


@pytest.mark.parametrize("scale", [1.0, 4.0])
def test_inverse_undoes_forward_inside_and_outside_the_interval(scale):
    with jax.enable_x64(True):
        p = _raw(jax.random.key(0), (400,), scale)
        x = _points(jax.random.key(1), 400)
        assert np.mean(np.abs(x) > BOUND) > 0.3
        y, ld = _spline(x, *p, bound=BOUND)
        back, ld_inv = _spline(y, *p, bound=BOUND, inverse=True)
        np.testing.assert_allclose(back, x, atol=1e-10)
        np.testing.assert_allclose(ld_inv, -ld, atol=1e-9)
        # and the other way round, from points y
        x2, _ = _spline(x, *p, bound=BOUND, inverse=True)
        np.testing.assert_allclose(_spline(x2, *p, bound=BOUND)[0], x, atol=1e-10)
    # float32 at the default settings, through the Transformer
    t = splines.rq_spline(8)
    theta = 2.0 * jax.random.normal(jax.random.key(2), (256, t.num_params))
    x = jax.random.uniform(jax.random.key(3), (256,), jnp.float32, -6.0, 6.0)
    y, ld = jax.jit(t.forward)(x, theta)
    back, ld_inv = jax.jit(t.inverse)(y, theta)
    assert y.dtype == ld.dtype == jnp.float32
    # where the spline is nearly flat (slope ~1e-4) float32 cannot pin x down: compare
    # the error in y-space, |x' - x| f'(x), and x itself where the slope is not small
    slope = np.exp(ld)
    assert np.all(np.abs(back - x) * slope < 2e-5)
    ok = slope > 0.05
    assert ok.mean() > 0.8
    np.testing.assert_allclose(back[ok], x[ok], atol=5e-5)
    np.testing.assert_allclose(ld_inv[ok], -ld[ok], atol=5e-4)


def test_log_derivative_is_jax_grad_of_the_map():
    with jax.enable_x64(True):
        p = _raw(jax.random.key(4), (300,), 2.0)
        x = _points(jax.random.key(5), 300)
        xk, _, _ = splines.spline_knots(*p, bound=BOUND)
        x = x.at[:3].set(xk[:3, 2]).at[3].set(-BOUND).at[4].set(BOUND)   # knots and ends
        y, ld = _spline(x, *p, bound=BOUND)

        def scalar(xi, wi, hi, di):
            return splines.rational_quadratic_spline(xi, wi, hi, di, bound=BOUND)[0]
        deriv = jax.jit(jax.vmap(jax.grad(scalar)))(x, *p)
        assert np.all(deriv > 0)
        np.testing.assert_allclose(ld, np.log(deriv), atol=1e-10)

        def scalar_inv(yi, wi, hi, di):
            return splines.rational_quadratic_spline(yi, wi, hi, di, bound=BOUND,
                                                     inverse=True)[0]
        deriv_inv = jax.jit(jax.vmap(jax.grad(scalar_inv)))(y, *p)
        np.testing.assert_allclose(_spline(y, *p, bound=BOUND, inverse=True)[1],
                                   np.log(deriv_inv), atol=1e-9)
        np.testing.assert_allclose(np.log(deriv_inv), -ld, atol=1e-9)


def test_strictly_increasing_for_many_draws_including_extreme_parameters():
    with jax.enable_x64(True):
        n = 64
        p = list(_raw(jax.random.key(6), (n,), 3.0))
        signs = [jnp.sign(jax.random.normal(jax.random.key(7 + i), a.shape))
                 for i, a in enumerate(p)]
        for i in range(3):                   # the last 32 draws: raw values exactly +-10
            p[i] = p[i].at[n // 2:].set(10.0 * signs[i][n // 2:])
        p[2] = p[2].at[-1].set(-10.0).at[-2].set(10.0)   # all derivatives at min / max
        grid = jnp.linspace(-2 * BOUND, 2 * BOUND, 4001)                     # [G]
        xs = jnp.broadcast_to(grid, (n, grid.size))                          # [n, G]
        wide = [jnp.broadcast_to(a[:, None, :], (n, grid.size, a.shape[-1])) for a in p]
        y, ld = _spline(xs, *wide, bound=BOUND)
        assert np.all(np.isfinite(y)) and np.all(np.isfinite(ld))
        assert np.all(np.diff(np.asarray(y), axis=-1) > 0)
        back, _ = _spline(y, *wide, bound=BOUND, inverse=True)
        np.testing.assert_allclose(back, xs, atol=1e-8)


def test_identity_tails_endpoints_and_slope_continuity():
    p32 = _raw(jax.random.key(8), (50,), 3.0, dtype=jnp.float32)
    tails = jnp.concatenate([jnp.linspace(-50, -BOUND - 1e-3, 25),
                             jnp.linspace(BOUND + 1e-3, 50, 25)]).astype(jnp.float32)
    for inverse in (False, True):
        y, ld = _spline(tails, *p32, bound=BOUND, inverse=inverse)
        assert np.array_equal(y, tails) and np.array_equal(ld, np.zeros(50))
    with jax.enable_x64(True):
        p = _raw(jax.random.key(8), (50,), 3.0)
        xk, yk, dk = jax.jit(splines.spline_knots, static_argnames="bound")(*p, bound=BOUND)
        assert xk.shape == yk.shape == dk.shape == (50, K + 1)
        for knots in (xk, yk):
            assert np.all(knots[:, 0] == -BOUND) and np.all(knots[:, -1] == BOUND)
            assert np.all(np.diff(knots, axis=-1) > 0)
        assert np.all(dk[:, 0] == 1) and np.all(dk[:, -1] == 1)
        # the knots, and points at distance eps inside each end, in one call
        eps = np.array([1e-7, 1e-10, 1e-7, 1e-10])
        near = np.array([-BOUND, -BOUND, BOUND, BOUND]) + np.array([1, 1, -1, -1]) * eps
        pts = jnp.concatenate([xk, jnp.broadcast_to(jnp.asarray(near), (50, 4))], axis=1)
        y, ld = _spline(pts, *[jnp.broadcast_to(a[:, None], (50, K + 5, a.shape[-1]))
                               for a in p], bound=BOUND)
        # knots go to knots, f(x_k) = y_k with slope d_k: f(+-B) = +-B with slope 1
        np.testing.assert_allclose(y[:, :K + 1], yk, atol=1e-12)
        np.testing.assert_allclose(ld[:, :K + 1], np.log(dk), atol=1e-9)
        # from inside, f(x) -> x and log f'(x) -> 0 linearly in the distance eps to +-B
        y, ld = np.asarray(y[:, K + 1:]), np.asarray(ld[:, K + 1:])
        assert np.all(np.abs(y - near) <= 0.1 * eps + 1e-14)
        for far, close in [(0, 1), (2, 3)]:
            assert np.all(np.abs(ld[:, close]) <= 2e-3 * np.abs(ld[:, far]) + 1e-12)
            assert np.abs(ld[:, far]).max() > 1e-6          # the check above is not empty


def test_zero_parameters_are_the_identity():
    x = jnp.linspace(-8, 8, 1001)
    for k, bound in [(1, 1.0), (8, 3.0)]:
        t = splines.rq_spline(k, bound=bound)
        theta = jnp.zeros(x.shape + (t.num_params,))
        for fn in (t.forward, t.inverse):
            y, ld = jax.jit(fn)(x, theta)
            np.testing.assert_allclose(y, x, atol=2e-6)
            np.testing.assert_allclose(ld, 0, atol=1e-6)
    with jax.enable_x64(True):
        t = splines.rq_spline(8)
        y, ld = jax.jit(t.forward)(jnp.linspace(-8, 8, 1001), jnp.zeros((1001, 23)))
        np.testing.assert_allclose(y, jnp.linspace(-8, 8, 1001), atol=1e-14)
        np.testing.assert_allclose(ld, 0, atol=1e-14)
    assert splines.num_spline_params(8) == t.num_params == 23


def _numpy_spline(x, raw_w, raw_h, raw_d, bound, min_w=1e-3, min_h=1e-3, min_d=1e-3):
    """Durkan et al. (2019) eq. 4 and 5 with plain loops, for one parameter set."""
    k = len(raw_w)

    def bins(raw, minimum):
        e = np.exp(raw - raw.max())
        frac = minimum + (1 - minimum * k) * e / e.sum()
        knots = [-bound]
        for f in frac:
            knots.append(knots[-1] + 2 * bound * f)
        knots[-1] = bound
        return knots

    xk, yk = bins(raw_w, min_w), bins(raw_h, min_h)
    c = np.log(np.exp(1 - min_d) - 1)
    d = [1.0] + [min_d + np.log1p(np.exp(r + c)) for r in raw_d] + [1.0]
    ys, lds = [], []
    for xv in x:
        if xv < -bound or xv > bound:
            ys.append(xv)
            lds.append(0.0)
            continue
        b = 0
        while b < k - 1 and xv >= xk[b + 1]:
            b += 1
        w, h = xk[b + 1] - xk[b], yk[b + 1] - yk[b]
        s, xi = h / w, (xv - xk[b]) / w
        den = s + (d[b + 1] + d[b] - 2 * s) * xi * (1 - xi)
        ys.append(yk[b] + h * (s * xi ** 2 + d[b] * xi * (1 - xi)) / den)
        lds.append(np.log(s ** 2 * (d[b + 1] * xi ** 2 + 2 * s * xi * (1 - xi)
                                    + d[b] * (1 - xi) ** 2) / den ** 2))
    return np.array(ys), np.array(lds)


def test_matches_a_plain_numpy_transcription_of_the_paper():
    rng = np.random.default_rng(0)
    k = 7
    raw_w, raw_h, raw_d = (2 * rng.standard_normal(k), 2 * rng.standard_normal(k),
                           2 * rng.standard_normal(k - 1))
    x = np.concatenate([rng.uniform(-4, 4, 300), [-3.0, 3.0, 0.0]])
    want_y, want_ld = _numpy_spline(x, raw_w, raw_h, raw_d, 3.0)
    with jax.enable_x64(True):
        theta = jnp.broadcast_to(jnp.asarray(np.concatenate([raw_w, raw_h, raw_d])),
                                 (x.size, 3 * k - 1))
        t = splines.rq_spline(k, bound=3.0)
        y, ld = jax.jit(t.forward)(jnp.asarray(x), theta)
        back, _ = jax.jit(t.inverse)(jnp.asarray(want_y), theta)
    np.testing.assert_allclose(y, want_y, atol=1e-12)
    np.testing.assert_allclose(ld, want_ld, atol=1e-10)
    np.testing.assert_allclose(back, x, atol=1e-10)
    assert np.abs(want_y - x).max() > 0.3          # a visibly non-identity spline


def _mlp_conditioner(key, d, num_params, hidden=8):
    k1, k2, k3 = jax.random.split(key, 3)
    params = {"w1": jax.random.normal(k1, (d, hidden)) / np.sqrt(d),
              "b1": jnp.zeros((hidden,)),
              "w2": 1.5 * jax.random.normal(k2, (hidden, d * num_params)) / np.sqrt(hidden),
              "b2": 0.5 * jax.random.normal(k3, (d * num_params,))}

    def conditioner(p, xm):
        h = jnp.tanh(xm.reshape(xm.shape[0], -1) @ p["w1"] + p["b1"])    # [B, H]
        return (h @ p["w2"] + p["b2"]).reshape(xm.shape + (num_params,))  # [B, D, P]
    return conditioner, params


def test_spline_coupling_passes_the_mask_inverts_and_has_the_jacobian_log_det():
    with jax.enable_x64(True):
        b, d, k = 3, 4, 6
        mask = jnp.array([1.0, 0.0, 1.0, 0.0])
        cond, params = _mlp_conditioner(jax.random.key(9), d, splines.num_spline_params(k))
        params = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        forward, inverse = splines.spline_coupling(mask, cond, num_bins=k, bound=3.0)
        x = 2.5 * jax.random.normal(jax.random.key(10), (b, d), jnp.float64)
        x = x.at[0, 1].set(4.0)                  # one transformed element on a tail
        y, ld = jax.jit(forward)(params, x)
        back, ld_inv = jax.jit(inverse)(params, y)
        assert ld.shape == ld_inv.shape == (b,)
        assert np.array_equal(y[:, ::2], x[:, ::2])           # mask = 1 passes exactly
        assert y[0, 1] == 4.0
        assert not np.allclose(y[:, 1::2], x[:, 1::2], atol=1e-2)
        np.testing.assert_allclose(back, x, atol=1e-10)
        np.testing.assert_allclose(ld_inv, -ld, atol=1e-10)
        jac = jax.jit(jax.vmap(jax.jacfwd(lambda v: forward(params, v[None])[0][0])))(x)
        sign, logabs = np.linalg.slogdet(np.asarray(jac))               # jac [B, D, D]
        assert np.all(sign > 0)
        np.testing.assert_allclose(ld, logabs, atol=1e-10)
        # the transformed half depends on the masked half (a real coupling Jacobian)
        assert np.abs(np.asarray(jac)[:, 1::2, ::2]).max() > 1e-3
        assert not np.allclose(ld, 0)


def test_coupling_with_affine_is_realnvps_formula_and_checks_shapes():
    from genjax.flows.bijectors import affine_coupling, coupling
    from genjax.flows.transformers import affine
    mask = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0])
    cond, params = _mlp_conditioner(jax.random.key(11), 5, 2)
    x = jax.random.normal(jax.random.key(12), (4, 5))
    fwd, inv = coupling(mask, cond, affine())
    theta = cond(params, x * mask)                          # RealNVP, written out
    t, s = theta[..., 0], theta[..., 1]
    want_y = mask * x + (1 - mask) * (x * jnp.exp(s) + t)
    want_ld = jnp.sum((1 - mask) * s, -1)
    y, ld = jax.jit(fwd)(params, x)
    np.testing.assert_allclose(y, want_y, atol=1e-6)
    np.testing.assert_allclose(ld, want_ld, atol=1e-5)
    y_a, ld_a = affine_coupling(mask, lambda p, xm: (cond(p, xm)[..., 0],
                                                     cond(p, xm)[..., 1]))[0](params, x)
    np.testing.assert_allclose(y_a, want_y, atol=1e-6)
    np.testing.assert_allclose(ld_a, want_ld, atol=1e-5)
    bad_fwd, _ = splines.spline_coupling(mask, cond, num_bins=4)
    with pytest.raises(ValueError, match="conditioner must return shape"):
        bad_fwd(params, x)
    with pytest.raises(ValueError, match="interior derivatives"):
        splines.rational_quadratic_spline(x[0], jnp.zeros((5, 3)), jnp.zeros((5, 3)),
                                          jnp.zeros((5, 3)))


def test_gradients_are_finite_on_knots_at_the_boundary_and_in_the_tails():
    t = splines.rq_spline(K, bound=BOUND)
    theta = 3.0 * jax.random.normal(jax.random.key(13), (4, t.num_params))
    xk, yk, _ = splines.spline_knots(theta[:, :K], theta[:, K:2 * K], theta[:, 2 * K:],
                                     bound=BOUND)                           # [4, K+1]
    tails = jnp.broadcast_to(jnp.array([-1e4, -BOUND - 1e-6, BOUND + 1e-6, 1e4]), (4, 4))
    v = jnp.concatenate([xk, yk, tails], axis=1)            # [4, 2(K+1) + 4], ends incl.
    in_tail = np.abs(np.asarray(v)) > BOUND

    @functools.partial(jax.jit, static_argnums=0)
    def grads(inverse, v, th):
        fn = t.inverse if inverse else t.forward

        def loss(v, th):
            out, ld = fn(v, jnp.broadcast_to(th[:, None], v.shape + th.shape[-1:]))
            return jnp.sum(out ** 2) + jnp.sum(ld)
        gx, gth = jax.grad(loss, argnums=(0, 1))(v, th)
        gx_tail, gth_tail = jax.grad(loss, argnums=(0, 1))(v[:, -4:], th)
        return gx, gth, gx_tail, gth_tail

    for inverse in (False, True):
        gx, gth, gx_tail, gth_tail = grads(inverse, v, theta)
        assert np.all(np.isfinite(gx)) and np.all(np.isfinite(gth)), inverse
        assert np.abs(gth).max() > 0
        assert np.all(np.isfinite(gx[~in_tail])) and np.all(gx[~in_tail] != 0)
        np.testing.assert_allclose(gx[in_tail], 2 * v[in_tail], rtol=1e-6)
        assert np.all(gth_tail == 0)                    # the tails do not see theta
        np.testing.assert_allclose(gx_tail, 2 * tails, rtol=1e-6)
