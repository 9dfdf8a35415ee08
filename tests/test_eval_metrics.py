"""The evaluation metrics of genjax.eval against mathematics: the Fréchet distance
(closed form, scipy's matrix square root), the AUROC (direct pairwise count, sklearn),
the latent-space numbers and the anomaly scores' shapes and signs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
from sklearn.metrics import roc_auc_score

from genjax.eval import anomaly, frechet, latent
from genjax.eval.auroc import auroc as auroc_fn


def _random_spd(rng, f):
    a = rng.normal(size=(f, f))
    return a @ a.T / f + 0.1 * np.eye(f)


# ---------------------------------------------------------------- Fréchet distance

def test_frechet_equals_the_closed_form_for_commuting_covariances():
    # diagonal covariances commute: d^2 = |mu_a - mu_b|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    mu_a, mu_b = rng.normal(size=6), rng.normal(size=6)
    var_a, var_b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
    got = frechet.frechet_distance_from_stats(mu_a, np.diag(var_a), mu_b, np.diag(var_b))
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # and for 1-D Gaussians the familiar (m1 - m2)^2 + (s1 - s2)^2
    np.testing.assert_allclose(frechet.frechet_distance_from_stats(
        [1.0], [[4.0]], [-2.0], [[0.25]]), 9.0 + 1.5 ** 2, rtol=1e-12)


@pytest.mark.parametrize("f", [3, 32, 128])
def test_frechet_equals_the_scipy_sqrtm_formula(f):
    rng = np.random.default_rng(f)
    mu_a, mu_b = rng.normal(size=f), rng.normal(size=f)
    cov_a, cov_b = _random_spd(rng, f), _random_spd(rng, f)
    covmean = scipy.linalg.sqrtm(cov_a @ cov_b).real           # the usual FID code path
    expected = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * covmean)
    got = frechet.frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b)
    np.testing.assert_allclose(got, expected, rtol=1e-7, atol=1e-8)


def test_frechet_of_feature_sets_is_a_distance_between_fitted_gaussians():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8)) @ rng.normal(size=(8, 8))
    y = rng.normal(size=(400, 8)) * 2 + 1
    assert frechet.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(frechet.frechet_distance(x, y), frechet.frechet_distance(y, x),
                               rtol=1e-9)
    # translating one set by c changes only the mean term: + |c|^2 exactly
    c = rng.normal(size=8)
    base = frechet.frechet_distance(x, y)
    np.testing.assert_allclose(frechet.frechet_distance(x, y + c),
                               base + np.sum((y.mean(0) + c - x.mean(0)) ** 2)
                               - np.sum((y.mean(0) - x.mean(0)) ** 2), rtol=1e-8)
    mu, cov = frechet.gaussian_stats(x)
    np.testing.assert_allclose(cov, np.cov(x, rowvar=False), rtol=1e-12)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)


def test_frechet_from_large_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    f = 4
    mu_a, mu_b = np.zeros(f), np.full(f, 0.5)
    cov_a, cov_b = _random_spd(rng, f), _random_spd(rng, f)
    exact = frechet.frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b)
    xa = rng.multivariate_normal(mu_a, cov_a, 200_000)
    xb = rng.multivariate_normal(mu_b, cov_b, 200_000)
    np.testing.assert_allclose(frechet.frechet_distance(xa, xb), exact, rtol=0.03)


def test_frechet_rejects_bad_features():
    with pytest.raises(ValueError, match="NaN"):
        frechet.frechet_distance(np.array([[0.0, 1.0], [np.nan, 2.0]]), np.ones((3, 2)))
    with pytest.raises(ValueError, match="N >= 2"):
        frechet.gaussian_stats(np.ones((1, 3)))


# ------------------------------------------------------------------------ AUROC

def _pairwise_auroc(a, b):
    """P(b > a) + P(b == a) / 2 over all N*M pairs: the definition, O(NM)."""
    a, b = np.asarray(a)[:, None], np.asarray(b)[None, :]
    return float(np.mean((b > a) + 0.5 * (b == a)))


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_the_direct_pairwise_count_with_ties(seed):
    rng = np.random.default_rng(seed)
    n, m = rng.integers(1, 300, size=2)
    # integer scores on a small range: many ties within and across the two sets
    a = rng.integers(0, 12, n).astype(float)
    b = rng.integers(2, 14, m).astype(float)
    assert auroc_fn(a, b) == pytest.approx(_pairwise_auroc(a, b), abs=1e-12)
    # continuous scores: also equals scikit-learn's roc_auc_score
    a, b = rng.normal(size=n), rng.normal(0.7, 1.3, size=m)
    y = np.r_[np.zeros(n), np.ones(m)]
    assert auroc_fn(a, b) == pytest.approx(roc_auc_score(y, np.r_[a, b]), abs=1e-12)
    assert auroc_fn(a, b) == pytest.approx(_pairwise_auroc(a, b), abs=1e-12)


def test_auroc_extremes_and_errors():
    assert auroc_fn([0, 1, 2], [3, 4]) == 1.0
    assert auroc_fn([3, 4], [0, 1, 2]) == 0.0
    assert auroc_fn([1, 1], [1, 1, 1]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        auroc_fn([], [1.0])
    with pytest.raises(ValueError, match="NaN"):
        auroc_fn([np.nan], [1.0])


# ------------------------------------------------------------------ latent space

def test_knn_accuracy_finds_class_structure_and_only_that():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10, size=(10, 2))
    y_tr, y_te = rng.integers(0, 10, 2000), rng.integers(0, 10, 500)
    z_tr = centres[y_tr] + rng.normal(size=(2000, 2)) * 0.1
    z_te = centres[y_te] + rng.normal(size=(500, 2)) * 0.1
    assert latent.knn_accuracy(z_tr, y_tr, z_te, y_te) == 1.0
    # codes that carry no label information: chance level (0.1 for 10 classes)
    noise_tr, noise_te = rng.normal(size=(2000, 2)), rng.normal(size=(500, 2))
    assert abs(latent.knn_accuracy(noise_tr, y_tr, noise_te, y_te) - 0.1) < 0.06


def test_max_jump_fraction_of_even_and_of_abrupt_paths():
    s, p = 9, 3
    t = np.linspace(0, 1, s)[:, None, None]
    start, end = np.zeros((p, 5)), np.ones((p, 5)) * np.arange(1, p + 1)[:, None]
    even = start + t * (end - start)                                     # [S, P, 5]
    assert latent.max_jump_fraction(even) == pytest.approx(1 / (s - 1))
    abrupt = np.where(t < 0.5, start, end)                               # one jump
    assert latent.max_jump_fraction(abrupt) == pytest.approx(1.0)


# -------------------------------------------------------------- anomaly scores

D, Z = 12, 3


def _tiny_vae(seed=0):
    """A fixed random Gaussian-encoder / Bernoulli-decoder pair on D binary pixels."""
    k = jax.random.split(jax.random.key(seed), 3)
    w_enc = jax.random.normal(k[0], (D, 2 * Z)) * 0.3
    w_dec = jax.random.normal(k[1], (Z, D))
    b_dec = jax.random.normal(k[2], (D,))

    def encode(x):
        h = x.reshape(x.shape[0], -1) @ w_enc
        return h[:, :Z], h[:, Z:] - 1.0

    def decode(z):
        return (z @ w_dec + b_dec).reshape(z.shape[0], D)

    return encode, decode, lambda z: jax.nn.sigmoid(decode(z))


def test_anomaly_scores_have_one_value_per_example_and_the_right_signs():
    encode, decode, decode_mean = _tiny_vae()
    x = jax.random.bernoulli(jax.random.key(1), 0.4, (64, D)).astype(jnp.float32)
    rec = anomaly.reconstruction_error(x, encode=encode, decode_mean=decode_mean)
    nelbo = anomaly.negative_elbo(x, jax.random.key(2), encode=encode, decode=decode)
    niw = anomaly.negative_iw_log_likelihood(x, jax.random.key(3), encode=encode,
                                             decode=decode, num_samples=256)
    for s in (rec, nelbo, niw):
        assert s.shape == (64,) and np.all(np.isfinite(s))
    assert np.all(rec >= 0)
    # Bernoulli data: log p(x|z) <= 0 and KL >= 0, so -ELBO >= 0 for every example
    assert np.all(nelbo >= 0)
    # the IW estimate is a tighter bound: -log p_IW <= -ELBO on average
    assert float(jnp.mean(niw)) < float(jnp.mean(nelbo))
    # a perfect reconstruction scores 0 and a worse one more
    identity = lambda x: (x, jnp.zeros_like(x))                       # noqa: E731
    assert np.all(anomaly.reconstruction_error(x, encode=identity,
                                               decode_mean=lambda z: z) == 0)
    assert np.all(anomaly.reconstruction_error(x, encode=identity,
                                               decode_mean=lambda z: 1 - z) == D)


def test_negative_iw_log_likelihood_matches_exact_marginal_by_enumeration():
    """With a 1-D latent, -log p(x) by quadrature over z; the K=2000 estimate is close."""
    k = jax.random.split(jax.random.key(4), 2)
    w = jax.random.normal(k[0], (1, D))
    b = jax.random.normal(k[1], (D,))
    decode = lambda z: z @ w + b                                      # noqa: E731
    encode = lambda x: (x.reshape(x.shape[0], -1)[:, :1] * 0.5 - 0.2,  # noqa: E731
                        jnp.full((x.shape[0], 1), -0.5))
    x = jax.random.bernoulli(jax.random.key(5), 0.5, (8, D)).astype(jnp.float32)
    zs = jnp.linspace(-8, 8, 4001)[:, None]
    logits = decode(zs)                                               # [G, D]
    log_px_z = (x[:, None] * logits[None] - jax.nn.softplus(logits)[None]).sum(-1)
    log_pz = jax.scipy.stats.norm.logpdf(zs[:, 0])
    exact = jax.scipy.special.logsumexp(log_px_z + log_pz, axis=1) + jnp.log(zs[1, 0] - zs[0, 0])
    est = anomaly.negative_iw_log_likelihood(x, jax.random.key(6), encode=encode,
                                             decode=decode, num_samples=2000)
    np.testing.assert_allclose(np.asarray(est), -np.asarray(exact), rtol=0.02, atol=0.05)


def test_shifted_sets_are_the_named_shifts():
    rng = np.random.default_rng(0)
    normal = rng.integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    held = rng.integers(0, 256, (3, 4, 4, 1), dtype=np.uint8)
    sets = anomaly.shifted_sets(held, normal)
    assert tuple(sets) == anomaly.SHIFTS
    np.testing.assert_array_equal(sets["held_out_classes"], held)
    np.testing.assert_array_equal(sets["inverted"], 255 - normal)
    np.testing.assert_array_equal(sets["upside_down"][:, ::-1], normal)
    assert sets["uniform_noise"].shape == normal.shape and sets["uniform_noise"].dtype == np.uint8
