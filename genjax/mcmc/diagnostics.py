"""Convergence diagnostics of multi-chain MCMC output, in NumPy (they run on the host,
after sampling).

`effective_sample_size` is the estimator of Stan (reference manual, "Effective sample
size"; Geyer 1992; Gelman et al., BDA3 section 11.5) without chain splitting or rank
normalisation:

    rho_t = 1 - (W - mean_c acov_c(t)) / var_plus,   var_plus = (S - 1)/S W + B/S
    tau   = -1 + 2 sum_{k=0}^{K} P_k,                P_k = rho_{2k} + rho_{2k+1}
    ESS   = C S / tau

with acov_c(t) the autocovariance of chain c at lag t (FFT, divided by S), W the mean
within-chain variance, B/S the variance of the chain means, K the last k before the first
negative pair sum P_k (Geyer's initial positive sequence), and the P_k made
non-increasing (Geyer's initial monotone sequence). tau is floored at 1 / log10(C S)
(as Stan), so anticorrelated chains report more than C S effective samples but a bounded
number.
"""

from __future__ import annotations

import numpy as np


def autocovariance(x, axis: int = 0):
    """The biased autocovariance (divided by n, as Stan) of x along ``axis`` at lags
    0 .. n - 1, by FFT with zero padding: same shape as x, float64."""
    x = np.moveaxis(np.asarray(x, np.float64), axis, 0)
    n = x.shape[0]
    x = x - x.mean(0)
    size = 1 << (2 * n - 1).bit_length()
    f = np.fft.rfft(x, n=size, axis=0)
    acov = np.fft.irfft(f * np.conj(f), n=size, axis=0)[:n] / n
    return np.moveaxis(acov, 0, axis)


def effective_sample_size(samples):
    """ESS of each coordinate of ``samples`` [S, C, *E] (S draws of C chains; numpy or
    jax, any float dtype): returns [*E] float64 (effective draws in total over the chains).
    S >= 4 draws per chain; one chain (C = 1) works (B is then zero)."""
    x = np.asarray(samples, np.float64)
    if x.ndim < 2:
        raise ValueError(f"effective_sample_size: samples has shape {x.shape} but "
                         "expected [S, C, *E] (draws, chains, event axes)")
    s, c = x.shape[:2]
    if s < 4:
        raise ValueError(f"effective_sample_size: {s} draws per chain; need at least 4")
    event = x.shape[2:]
    x = x.reshape(s, c, -1)                                       # [S, C, D]
    acov = autocovariance(x, axis=0)                              # [S, C, D]
    w = acov[0].mean(0) * s / (s - 1.0)                           # within, [D]
    var_plus = w * (s - 1.0) / s
    if c > 1:
        var_plus = var_plus + x.mean(0).var(0, ddof=1)            # + B / S
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = 1.0 - (w - acov.mean(1)) / var_plus                 # [S, D]
    m = (s - 2) // 2 * 2                                          # whole pairs, lags < S-1
    pairs = rho[:m:2] + rho[1:m:2]                                # [M, D]
    positive = np.cumprod(pairs > 0, axis=0).astype(bool)         # initial positive seq.
    monotone = np.minimum.accumulate(np.where(positive, pairs, np.inf), axis=0)
    tau = -1.0 + 2.0 * np.where(positive, monotone, 0.0).sum(0)
    tau = np.maximum(tau, 1.0 / np.log10(s * c))
    ess = np.where(np.isfinite(tau) & (var_plus > 0), s * c / tau, np.nan)
    return ess.reshape(event)
