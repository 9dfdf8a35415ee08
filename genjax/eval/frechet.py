"""The Fréchet distance between two feature sets, each summarised by a Gaussian.

    d^2 = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})

is the squared 2-Wasserstein distance between N(mu_a, S_a) and N(mu_b, S_b); with
Inception features it is FID, with the penultimate layer of genjax's digit classifier it
is the classifier Fréchet distance of `genjax.eval.sample_quality`. Computed on the host
in float64 numpy: the matrix square roots come from symmetric eigendecompositions, which
stay accurate where float32 would not for feature dimensions in the hundreds.
"""

from __future__ import annotations

import numpy as np


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """features [N, F] -> (mean [F], covariance [F, F]) in float64, with the unbiased
    (N - 1) normalisation, as FID implementations use. Needs N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or len(f) < 2:
        raise ValueError(f"features must be [N >= 2, F], got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("features contain NaN or inf (were the generated images finite?)")
    return f.mean(0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    """Symmetric square root of a positive semi-definite matrix (negative round-off
    eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((s + s.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance_from_stats(mu_a, cov_a, mu_b, cov_b) -> float:
    """Squared Fréchet distance between N(mu_a, cov_a) and N(mu_b, cov_b): a float >= 0,
    in squared feature units. mu [F], cov [F, F]."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    root_a = _sqrt_psd(cov_a)
    middle = root_a @ cov_b @ root_a                      # symmetric PSD
    w = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_sqrt = np.sum(np.sqrt(np.clip(w, 0.0, None)))      # tr (S_a^1/2 S_b S_a^1/2)^1/2
    d2 = np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * tr_sqrt
    return float(max(d2, 0.0))


def frechet_distance(features_a, features_b) -> float:
    """Squared Fréchet distance between Gaussians fitted to two feature sets [N_a, F] and
    [N_b, F]. Symmetric, zero for identical sets; biased upwards for small N, so compare
    numbers computed with the same N."""
    return frechet_distance_from_stats(*gaussian_stats(features_a),
                                       *gaussian_stats(features_b))
