"""EASE (genjax.models.ease) against an independent solution of its constrained least
squares problem, and the popularity baseline."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp

from genjax.models.ease import ease_scores, ease_weights, popularity_scores


def _clicks(seed, U=40, I=12):
    X = (np.random.default_rng(seed).random((U, I)) < 0.3).astype(np.float64)
    X[:, 5] = 0.0                                      # an item nobody clicked
    return X


def column_by_column(X, l2):
    """min ||X - X B||^2 + l2 ||B||^2 subject to B_jj = 0, one column at a time: column j
    is the ridge regression of X[:, j] on the other columns (row and column j dropped)."""
    n = X.shape[1]
    B = np.zeros((n, n))
    for j in range(n):
        others = [i for i in range(n) if i != j]
        A = X[:, others]
        B[others, j] = np.linalg.solve(A.T @ A + l2 * np.eye(n - 1), A.T @ X[:, j])
    return B


@pytest.mark.parametrize("l2", [0.5, 20.0])
def test_ease_solves_the_zero_diagonal_ridge_regression(l2):
    X = _clicks(0)
    B = ease_weights(X, l2=l2)
    assert B.shape == (12, 12) and B.dtype == np.float64
    np.testing.assert_array_equal(np.diag(B), 0.0)
    np.testing.assert_allclose(B, column_by_column(X, l2), rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(B[5], 0.0)           # an unclicked item predicts nothing


def test_sparse_dense_and_jax_inputs_give_the_same_weights_and_scores():
    X = _clicks(1)
    B = ease_weights(X, l2=3.0)
    for other in (sp.csr_matrix(X), sp.csc_matrix(X), sp.csr_array(X)):
        np.testing.assert_allclose(ease_weights(other, l2=3.0), B, rtol=1e-12, atol=1e-15)
    B32 = ease_weights(jnp.asarray(X, jnp.float32), l2=3.0, dtype=np.float32)
    assert B32.dtype == np.float32
    np.testing.assert_allclose(B32, B, rtol=1e-3, atol=1e-5)
    X_foldin = _clicks(2, U=7)
    S = ease_scores(B, X_foldin)
    assert S.shape == (7, 12)
    np.testing.assert_allclose(S, X_foldin @ B, rtol=1e-12)
    np.testing.assert_allclose(ease_scores(B, sp.csr_matrix(X_foldin)), S, rtol=1e-12)
    with pytest.raises(ValueError, match="X_foldin"):
        ease_scores(B, X_foldin[:, :5])
    with pytest.raises(ValueError, match="l2"):
        ease_weights(X, l2=0.0)


def test_popularity_counts_the_users_of_each_item():
    X = np.array([[1, 0, 2, 0],
                  [1, 0, 1, 0],
                  [0, 0, 3, 1]], np.float32)          # counts > 1 count once per user
    want = np.array([2.0, 0.0, 3.0, 1.0])
    np.testing.assert_array_equal(popularity_scores(X), want)
    np.testing.assert_array_equal(popularity_scores(sp.csr_matrix(X)), want)
    np.testing.assert_array_equal(popularity_scores(jnp.asarray(X)), want)
    assert popularity_scores(X).dtype == np.float64
