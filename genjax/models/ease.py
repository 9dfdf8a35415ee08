"""EASE (Steck, 2019, "Embarrassingly Shallow Autoencoders for Sparse Data") and the
popularity baseline: closed-form item-item recommenders, on the host with NumPy.

EASE learns an item-item matrix B [I, I] with a zero diagonal (an item may not predict
itself) minimising ||X - X B||_F^2 + l2 ||B||_F^2, whose solution is

  G = X^T X + l2 I,  P = G^{-1},  B_ij = -P_ij / P_jj (i != j),  B_jj = 0,

and scores a user's fold-in row x [I] by x B. Both functions accept a dense array
(NumPy or JAX) or a ``scipy.sparse`` matrix (CSR, CSC, ...) for X; the result is a dense
NumPy array. The cost is one I x I inverse (O(I^3) time, I^2 floats of memory): fine for
the ML-20M subset's 20k items in float32, heavy in float64 (3.2 GB per I x I matrix).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def _check_2d(name: str, X) -> None:
    if len(np.shape(X)) != 2:
        raise ValueError(f"models.ease: {name} has shape {np.shape(X)} but expected "
                         "[U, I] (users x items)")


def _gram(X, dtype) -> np.ndarray:
    """X^T X [I, I] as a dense ``dtype`` array, for dense or scipy.sparse X [U, I]."""
    if sp.issparse(X):
        X = sp.csr_matrix(X, dtype=dtype)
        return np.asarray((X.T @ X).toarray(), dtype=dtype)
    X = np.asarray(X, dtype=dtype)
    return X.T @ X


def ease_weights(X, *, l2: float, dtype=np.float64) -> np.ndarray:
    """The EASE item-item weights B [I, I] (zero diagonal) for the training clicks X [U, I]
    (dense or scipy.sparse, 0/1 or counts) and the ridge weight l2 > 0 (Steck: 500 on
    ML-20M). Computed in ``dtype`` (float64 by default; float32 halves the memory) with
    Steck's closed form (module docstring); returns a NumPy array of that dtype."""
    _check_2d("X", X)
    if not l2 > 0:
        raise ValueError(f"models.ease.ease_weights: l2 = {l2!r} must be > 0 (G = X^T X "
                         "is singular without it when an item has no clicks)")
    G = _gram(X, dtype)                                                  # [I, I]
    G[np.diag_indices_from(G)] += l2
    P = np.linalg.inv(G)                                                 # [I, I]
    B = P / (-np.diag(P))                 # column j divided by -P_jj (broadcast on rows)
    B[np.diag_indices_from(B)] = 0.0
    return B


def ease_scores(B, X_foldin) -> np.ndarray:
    """EASE's scores X_foldin B: B [I, I] from `ease_weights`, X_foldin [U, I] (dense or
    scipy.sparse) -> [U, I] dense NumPy, in B's dtype. Mask the fold-in items
    (`genjax.eval.ranking.mask_seen`) before ranking."""
    _check_2d("B", B)
    _check_2d("X_foldin", X_foldin)
    B = np.asarray(B)
    if B.shape[0] != B.shape[1] or np.shape(X_foldin)[1] != B.shape[0]:
        raise ValueError(f"models.ease.ease_scores: B has shape {B.shape} and X_foldin "
                         f"{np.shape(X_foldin)}; expected B [I, I] and X_foldin [U, I]")
    if sp.issparse(X_foldin):
        return np.asarray(sp.csr_matrix(X_foldin, dtype=B.dtype) @ B)
    return np.asarray(X_foldin, dtype=B.dtype) @ B


def popularity_scores(X_train) -> np.ndarray:
    """The popularity baseline's item scores [I]: for each item, the number of training
    users who clicked it (entries > 0 of X_train [U, I], dense or scipy.sparse), as
    float64. Every user gets the same ranking by count (ties: lower item index first, as
    everywhere in `genjax.eval.ranking`); broadcast to [U, I] and mask the fold-in items
    before ranking."""
    _check_2d("X_train", X_train)
    if sp.issparse(X_train):
        X = sp.csr_matrix(X_train)
        return np.asarray((X > 0).sum(axis=0), dtype=np.float64).ravel()
    return np.sum(np.asarray(X_train) > 0, axis=0).astype(np.float64)
