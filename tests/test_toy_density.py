"""The toys' true log-densities (`genjax.data.toy_density`) against mathematics and samples.

Each density is evaluated once on a midpoint grid over a box holding all its mass
(>= 7 noise stds beyond the support). For these smooth densities the midpoint rule is
spectrally accurate (error ~ exp(-2 pi^2 s^2 / h^2) for the narrowest Gaussian std s
and step h, below 1e-11 here), and it is exact for the checkerboard, whose cells the
grid lines follow. Blocks of grid cells then give the probabilities of coarse cells,
which the 20,000 training points must match.
"""

import functools
import math

import numpy as np
import pytest
from scipy import stats
from scipy.special import logsumexp

from genjax.data import embedded
from genjax.data import toy_density

# name -> (half-width of the box, grid step h, grid steps per chi-square cell, panels).
# The grids use half the default quadrature panels: that is still exact to < 1e-7
# wherever log p > -30 (test_quadrature_converged checks the defaults), and the
# integrals below do not see the rest.
GRIDS = {
    "two_moons": (3.0, 0.05, 5, toy_density.TWO_MOONS_PANELS // 2),
    "eight_gaussians": (2.5, 0.01, 5, None),
    "checkerboard": (3.0, 0.05, 10, None),
    "two_spirals": (4.2, 0.05, 6, toy_density.TWO_SPIRALS_PANELS // 2),
}


@functools.lru_cache(maxsize=None)
def _grid(name):
    """(density [G, G] at the midpoints, log-density [G, G], step h) on the box."""
    half, h, _, panels = GRIDS[name]
    g = np.arange(-half + h / 2, half, h)                          # [G] midpoints
    xx, yy = np.meshgrid(g, g, indexing="ij")
    log_p = toy_density.log_density(name, np.stack([xx.ravel(), yy.ravel()], -1),
                                    panels=panels)
    log_p = log_p.reshape(xx.shape)
    return np.exp(log_p), log_p, h


@functools.lru_cache(maxsize=None)
def _test_log_density(name):
    return toy_density.log_density(name, embedded.toy(name).test)          # [5000]


@pytest.mark.parametrize("name", toy_density.TOYS)
def test_integrates_to_one(name):
    p, _, h = _grid(name)
    total = p.sum() * h * h
    # Checkerboard: 8 dark unit cells of (1/h)^2 grid cells, each with mass h^2 / 8.
    tol = 1e-12 if name == "checkerboard" else 1e-6       # measured: < 1e-12
    assert abs(total - 1.0) < tol, total


@pytest.mark.parametrize("name", toy_density.TOYS)
def test_cell_probabilities_match_training_samples(name):
    """Chi-square of the 20,000 training points' counts in coarse cells (p > 1e-3)."""
    p, _, h = _grid(name)
    half, _, block, _ = GRIDS[name]
    side = p.shape[0] // block
    cell_prob = (p[:side * block, :side * block] * h * h).reshape(
        side, block, side, block).sum((1, 3)).ravel()             # [side^2]
    x = embedded.toy(name).train.astype(np.float64)
    width = block * h
    idx = np.floor((x + half) / width).astype(int)                 # [N, 2]
    inside = np.all((idx >= 0) & (idx < side), axis=1)
    counts = np.bincount(idx[inside, 0] * side + idx[inside, 1], minlength=side * side)
    n = len(x)
    expected = n * cell_prob
    # No point may fall where the density is (numerically) zero.
    assert counts[expected < 1e-9].sum() == 0
    # Cells expecting >= 5 points are tested one by one; the others, and anything
    # outside the box, pooled into one bin.
    big = expected >= 5
    obs = np.append(counts[big], n - counts[big].sum())
    exp = np.append(expected[big], n - expected[big].sum())
    chi2 = ((obs - exp) ** 2 / exp).sum()
    p_value = stats.chi2.sf(chi2, df=len(obs) - 1)
    assert big.sum() >= 8
    print(f"{name}: chi2 {chi2:.1f}, {len(obs) - 1} dof, p = {p_value:.3g}")
    assert p_value > 1e-3, (name, chi2, len(obs), p_value)


@pytest.mark.parametrize("name", toy_density.TOYS)
def test_test_set_mean_matches_negative_entropy(name):
    """Mean log p over the 5,000 test points ~ int p log p (grid), within 4 std errors."""
    p, log_p, h = _grid(name)
    neg_entropy = np.sum(p * np.where(p > 0, log_p, 0.0)) * h * h
    log_p_test = _test_log_density(name)
    assert np.all(np.isfinite(log_p_test))
    se = log_p_test.std() / math.sqrt(len(log_p_test))
    mean = log_p_test.mean()
    if name == "checkerboard":                                    # constant density
        assert mean == pytest.approx(-math.log(8), abs=1e-12)
        assert neg_entropy == pytest.approx(-math.log(8), abs=1e-12)
    else:
        assert abs(mean - neg_entropy) < 4 * se, (mean, neg_entropy, se)


def test_eight_gaussians_matches_scipy_mixture():
    centres = embedded.eight_gaussians_centres().astype(np.float64)
    s = embedded.EIGHT_GAUSSIANS_STD
    x = np.concatenate([
        embedded.toy("eight_gaussians").test[:500].astype(np.float64),
        np.random.default_rng(0).uniform(-3, 3, (200, 2)),          # far from modes
    ])
    comps = np.stack([stats.multivariate_normal(c, s * s * np.eye(2)).logpdf(x)
                      for c in centres], -1)                       # [N, 8]
    want = logsumexp(comps, axis=1) - math.log(8)
    np.testing.assert_allclose(toy_density.log_density("eight_gaussians", x), want,
                               rtol=1e-12, atol=1e-9)


def test_eight_gaussians_expectation_is_2_907():
    """E[log p] = -log(2 pi e s^2) - log 8 = 2.9067 (modes 100 std apart: no overlap),
    the README's figure; seed 0's 5,000 test points give 2.9285, 1.5 std errors above."""
    s = embedded.EIGHT_GAUSSIANS_STD
    exact = -math.log(2 * math.pi * math.e * s * s) - math.log(8)
    assert exact == pytest.approx(2.907, abs=5e-4)
    p, log_p, h = _grid("eight_gaussians")
    assert np.sum(p * log_p) * h * h == pytest.approx(exact, abs=1e-6)
    test = embedded.toy("eight_gaussians").test
    mean = toy_density.expected_log_density("eight_gaussians", test)
    assert mean == pytest.approx(_test_log_density("eight_gaussians").mean(), abs=1e-12)
    assert abs(mean - 2.907) < 0.05                                # 4 std errors (1/sqrt(5000))
    assert mean == pytest.approx(2.9285, abs=1e-3)


def test_checkerboard_cells():
    # Cell (i, j) counted from (-2, -2) is dark when i + j is even; half-open cells.
    centres = np.array([[i - 1.5, j - 1.5] for i in range(4) for j in range(4)])
    dark = np.array([(i + j) % 2 == 0 for i in range(4) for j in range(4)])
    log_p = toy_density.log_density("checkerboard", centres)
    np.testing.assert_array_equal(log_p, np.where(dark, -math.log(8), -np.inf))
    edges = np.array([[-2.0, -2.0], [1.999, 1.999], [2.0, 1.5], [-2.001, -1.5], [0.0, 0.0]])
    np.testing.assert_array_equal(
        np.isfinite(toy_density.log_density("checkerboard", edges)),
        [True, True, False, False, True])
    assert np.all(np.isfinite(toy_density.log_density(
        "checkerboard", embedded.toy("checkerboard").train)))


@pytest.mark.parametrize("name,default", [
    ("two_moons", toy_density.TWO_MOONS_PANELS),
    ("two_spirals", toy_density.TWO_SPIRALS_PANELS),
])
def test_quadrature_converged(name, default):
    """Doubling the Gauss-Legendre panels moves the log-density by < 1e-6."""
    x = np.concatenate([
        embedded.toy(name).test[:1000].astype(np.float64),
        np.random.default_rng(1).uniform(-3, 3, (200, 2)),          # off the data too
    ])
    coarse = toy_density.log_density(name, x)
    fine = toy_density.log_density(name, x, panels=2 * default)
    assert np.all(np.isfinite(coarse))
    np.testing.assert_allclose(coarse, fine, rtol=0, atol=1e-6)


def test_far_points_are_finite_and_symmetric():
    far = np.array([[8.0, 8.0], [-20.0, 3.0], [0.0, 40.0]])
    for name in ("two_moons", "eight_gaussians", "two_spirals"):
        log_p = toy_density.log_density(name, far)
        assert np.all(np.isfinite(log_p)) and np.all(log_p < -100), (name, log_p)
    # The two spiral arms are each other's negation: p(x) = p(-x).
    x = embedded.toy("two_spirals").test[:300]
    np.testing.assert_allclose(toy_density.log_density("two_spirals", x),
                               toy_density.log_density("two_spirals", -x), rtol=1e-12)


def test_errors():
    with pytest.raises(ValueError, match="Unknown toy density"):
        toy_density.log_density("three_moons", np.zeros((1, 2)))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        toy_density.log_density("two_moons", np.zeros((3,)))
    with pytest.raises(ValueError, match="closed-form"):
        toy_density.log_density("checkerboard", np.zeros((1, 2)), panels=10)
    with pytest.raises(ValueError, match="positive integer"):
        toy_density.log_density("two_spirals", np.zeros((1, 2)), panels=0)
